"""Hypothesis strategies: random small CNNs built from composable blocks.

:func:`architectures` draws a network of rank 1, 2 or 3 (``N x C x L``, images, videos) as a
list of blocks — conv units (plain, grouped, depth-wise; kernel 1–3 per dim, stride 1–2,
padding, dilation), residual blocks with identity or projection shortcuts, concatenated
branches of uneven depth with a pooling branch, squeeze-and-excitation gates, channel shuffles,
channel splits, pooling — and a head (flatten→Linear, pooled→Linear or MLP, or a 1x1 conv
averaged, optionally followed by a softmax / log-softmax). Batch norm, ReLU and dropout are
sprinkled in.

Sizes are bounded so one example runs in milliseconds on two cores: at most 16 channels
anywhere, at most 8 per spatial dim, at most 5 blocks before the head, flatten heads only up
to 256 features, at most 6 classes.

Every block's shape is known while it is drawn, so each forward is straight-line code with
Python constants: the model traces with ``torch.fx.symbolic_trace``. Weights come from a drawn
seed, under :func:`torch.random.fork_rng` so the test's own random state is untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from tests.models import randomize_norms

__all__ = ["MAX_BLOCKS", "MAX_CHANNELS", "MAX_SPATIAL", "architectures"]

MAX_CHANNELS = 16
MAX_SPATIAL = 8
MAX_BLOCKS = 5
MAX_FLAT_FEATURES = 256
MAX_CLASSES = 6

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}

Spatial = tuple[int, ...]


def _spatial_dims(rank: int) -> tuple[int, ...]:
    return tuple(range(2, 2 + rank))


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n + 1) if n % d == 0]


class ConvUnit(nn.Module):
    """conv → [batch norm] → [ReLU] → [dropout]."""

    def __init__(
        self, conv: nn.Module, bn: nn.Module | None, relu: nn.Module | None, drop: nn.Module | None
    ) -> None:
        super().__init__()
        self.conv = conv
        self.post = nn.Sequential(*[m for m in (bn, relu, drop) if m is not None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.conv(x))


class Residual(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``; shortcut is identity or a projection."""

    def __init__(self, body: nn.Module, shortcut: nn.Module | None) -> None:
        super().__init__()
        self.body = body
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.body(x) + s)


class Branches(nn.Module):
    """Concatenated branches along channels; an empty ``nn.Sequential`` is an identity branch."""

    def __init__(self, branches: list[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class SEGate(nn.Module):
    """``x * sigmoid(excite(relu(squeeze(mean(x)))))`` with 1x1 convs or linear layers."""

    def __init__(self, rank: int, channels: int, hidden: int, linear: bool) -> None:
        super().__init__()
        self.dims = _spatial_dims(rank)
        self.ones = (1,) * rank
        self.channels = channels
        self.linear = linear
        if linear:
            self.squeeze: nn.Module = nn.Linear(channels, hidden)
            self.excite: nn.Module = nn.Linear(hidden, channels)
        else:
            self.squeeze = _CONV[rank](channels, hidden, 1)
            self.excite = _CONV[rank](hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean(dim=self.dims, keepdim=not self.linear)
        g = torch.sigmoid(self.excite(F.relu(self.squeeze(g))))
        if self.linear:
            g = g.reshape(-1, self.channels, *self.ones)
        return x * g


class ChannelShuffle(nn.Module):
    """ShuffleNet's shuffle: as view → transpose → view, or as unflatten → transpose → flatten."""

    def __init__(self, channels: int, groups: int, spatial: Spatial, use_view: bool) -> None:
        super().__init__()
        self.channels = channels
        self.groups = groups
        self.spatial = spatial
        self.use_view = use_view

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, per = self.groups, self.channels // self.groups
        if self.use_view:
            n = x.size(0)
            x = x.view(n, g, per, *self.spatial).transpose(1, 2).contiguous()
            return x.view(n, self.channels, *self.spatial)
        return x.unflatten(1, (g, per)).transpose(1, 2).flatten(1, 2)


class Split(nn.Module):
    """``torch.chunk`` channels in two, transform the first half, concatenate (either order)."""

    def __init__(self, unit: nn.Module, first: bool) -> None:
        super().__init__()
        self.unit = unit
        self.first = first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.chunk(x, 2, dim=1)
        a = self.unit(a)
        return torch.cat([a, b] if self.first else [b, a], dim=1)


class FlattenHead(nn.Module):
    """Flatten ``C x S`` (not pooled) into a linear classifier."""

    def __init__(self, features: int, classes: int, dropout: bool) -> None:
        super().__init__()
        self.drop = nn.Dropout(0.3) if dropout else nn.Identity()
        self.fc = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(torch.flatten(x, 1)))


class PooledHead(nn.Module):
    """Global average pool (a mean, or adaptive pool + flatten) into a linear or MLP head."""

    def __init__(self, rank: int, mlp: nn.Module, adaptive: bool) -> None:
        super().__init__()
        self.rank = rank
        self.dims = _spatial_dims(rank)
        self.adaptive = adaptive
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.adaptive:
            pool = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[
                self.rank - 1
            ]
            x = torch.flatten(pool(x, 1), 1)
        else:
            x = x.mean(dim=self.dims)
        return self.mlp(x)


class ConvHead(nn.Module):
    """I3D's logits: a 1x1 conv to the classes, averaged over the spatial dims."""

    def __init__(self, rank: int, channels: int, classes: int) -> None:
        super().__init__()
        self.dims = _spatial_dims(rank)
        self.conv = _CONV[rank](channels, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=self.dims)


class Net(nn.Module):
    """Blocks, then a head, then optionally a softmax or log-softmax over the classes."""

    def __init__(self, blocks: list[nn.Module], head: nn.Module, final: str) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.final = final

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        x = self.head(x)
        if self.final == "softmax":
            x = F.softmax(x, dim=1)
        elif self.final == "log_softmax":
            x = F.log_softmax(x, dim=1)
        return x


def _conv_geometry(draw: st.DrawFn, spatial: Spatial, allow_stride: bool) -> tuple[dict, Spatial]:
    """Per-dim kernel 1–3, padding ≤ kernel//2, stride 1–2, dilation 1–2, all valid for ``spatial``."""
    kernel, padding, stride, dilation, out = [], [], [], [], []
    for size in spatial:
        k = draw(st.integers(1, 3))
        p = draw(st.integers(0, k // 2))
        d = draw(st.sampled_from([1, 1, 2])) if k > 1 else 1
        if d * (k - 1) + 1 > size + 2 * p:
            d = 1
        k = min(k, size + 2 * p)
        p = min(p, k // 2)
        s = draw(st.integers(1, 2)) if allow_stride and size > 1 else 1
        kernel.append(k)
        padding.append(p)
        stride.append(s)
        dilation.append(d)
        out.append(_conv_out(size, k, s, p, d))
    geometry = {
        "kernel_size": tuple(kernel),
        "padding": tuple(padding),
        "stride": tuple(stride),
        "dilation": tuple(dilation),
    }
    return geometry, tuple(out)


def _post(
    draw: st.DrawFn, rank: int, channels: int
) -> tuple[nn.Module | None, nn.Module | None, nn.Module | None]:
    bn = _BN[rank](channels) if draw(st.booleans()) else None
    relu = nn.ReLU(inplace=draw(st.booleans())) if draw(st.booleans()) else None
    drop = nn.Dropout(0.2) if draw(st.integers(0, 4)) == 0 else None
    return bn, relu, drop


def _conv_unit(
    draw: st.DrawFn,
    rank: int,
    c: int,
    spatial: Spatial,
    *,
    allow_stride: bool = True,
    max_out: int = MAX_CHANNELS,
) -> tuple[nn.Module, int, Spatial]:
    """A plain, grouped or depth-wise conv unit."""
    kind = draw(st.sampled_from(["plain", "plain", "grouped", "depthwise"]))
    groups = 1
    cout = draw(st.integers(1, max_out))
    if kind == "grouped" and _divisors(c):
        groups = draw(st.sampled_from(_divisors(c)))
        cout = groups * draw(st.integers(1, max(1, max_out // groups)))
    elif kind == "depthwise" and c <= max_out:
        groups = c
        cout = c * draw(st.integers(1, max(1, max_out // c)))
    geometry, out = _conv_geometry(draw, spatial, allow_stride)
    conv = _CONV[rank](c, cout, groups=groups, bias=draw(st.booleans()), **geometry)
    return ConvUnit(conv, *_post(draw, rank, cout)), cout, out


def _residual(
    draw: st.DrawFn, rank: int, c: int, spatial: Spatial
) -> tuple[nn.Module, int, Spatial]:
    conv = _CONV[rank]
    cout = draw(st.sampled_from([c, c, draw(st.integers(1, MAX_CHANNELS))]))
    stride = tuple(draw(st.integers(1, 2)) if size > 1 else 1 for size in spatial)
    common = _divisors(math.gcd(c, cout))
    groups = draw(st.sampled_from([1, *common])) if common else 1
    body = nn.Sequential(
        conv(c, cout, 3, stride=stride, padding=1, groups=groups, bias=False),
        _BN[rank](cout),
        nn.ReLU(),
        conv(cout, cout, draw(st.sampled_from([1, 3])), padding="same", bias=False),
        _BN[rank](cout),
    )
    out = tuple(_conv_out(size, 3, s, 1, 1) for size, s in zip(spatial, stride))
    shortcut = None
    if stride != (1,) * rank or cout != c or draw(st.integers(0, 3)) == 0:
        shortcut = nn.Sequential(conv(c, cout, 1, stride=stride, bias=False), _BN[rank](cout))
    return Residual(body, shortcut), cout, out


def _branches(
    draw: st.DrawFn, rank: int, c: int, spatial: Spatial
) -> tuple[nn.Module, int, Spatial]:
    """2–3 conv branches of depth 1–2, maybe an identity branch, and a pooling branch."""
    conv = _CONV[rank]
    branches: list[nn.Module] = []
    width = 0
    for _ in range(draw(st.integers(2, 3))):
        layers: list[nn.Module] = []
        cin = c
        for _ in range(draw(st.integers(1, 2))):
            cb = draw(st.integers(1, 4))
            layers += [conv(cin, cb, draw(st.sampled_from([1, 3])), padding="same"), nn.ReLU()]
            cin = cb
        branches.append(nn.Sequential(*layers))
        width += cin
    if width + c < MAX_CHANNELS and draw(st.booleans()):  # leave room for the pool branch
        branches.append(nn.Sequential())
        width += c
    # a kernel larger than the input is an error for avg-pool even with padding
    kernel = tuple(3 if size >= 3 else 1 for size in spatial)
    padding = tuple(k // 2 for k in kernel)
    pool = draw(st.sampled_from([_MAXPOOL, _AVGPOOL]))[rank](kernel, stride=1, padding=padding)
    if width + c <= MAX_CHANNELS and draw(st.booleans()):
        branches.append(nn.Sequential(pool))
        width += c
    else:
        cb = draw(st.integers(1, MAX_CHANNELS - width))
        branches.append(nn.Sequential(pool, conv(c, cb, 1)))
        width += cb
    order = draw(st.permutations(range(len(branches))))
    return Branches([branches[i] for i in order]), width, spatial


def _se(draw: st.DrawFn, rank: int, c: int, spatial: Spatial) -> tuple[nn.Module, int, Spatial]:
    hidden = draw(st.integers(1, max(1, c // 2)))
    return SEGate(rank, c, hidden, linear=draw(st.booleans())), c, spatial


def _shuffle(
    draw: st.DrawFn, rank: int, c: int, spatial: Spatial
) -> tuple[nn.Module, int, Spatial] | None:
    groups = [g for g in _divisors(c) if g < c]
    if not groups:
        return None
    g = draw(st.sampled_from(groups))
    return ChannelShuffle(c, g, spatial, use_view=draw(st.booleans())), c, spatial


def _split(
    draw: st.DrawFn, rank: int, c: int, spatial: Spatial
) -> tuple[nn.Module, int, Spatial] | None:
    if c < 2:
        return None
    half, rest = (c + 1) // 2, c - (c + 1) // 2  # torch.chunk puts the larger part first
    unit, cout, out = _conv_unit(
        draw, rank, half, spatial, allow_stride=False, max_out=MAX_CHANNELS - rest
    )
    if out != spatial:  # a padding smaller than the kernel shrank it; the halves would not cat
        return None
    return Split(unit, first=draw(st.booleans())), cout + rest, spatial


def _pool(
    draw: st.DrawFn, rank: int, c: int, spatial: Spatial
) -> tuple[nn.Module, int, Spatial] | None:
    if max(spatial) < 2:
        return None
    kernel = tuple(2 if size >= 2 else 1 for size in spatial)
    pool = draw(st.sampled_from([_MAXPOOL, _AVGPOOL]))[rank](kernel, stride=kernel)
    return pool, c, tuple(size // k for size, k in zip(spatial, kernel))


def _head(draw: st.DrawFn, rank: int, c: int, spatial: Spatial) -> nn.Module:
    classes = draw(st.integers(2, MAX_CLASSES))
    features = c * math.prod(spatial)
    kinds = ["pooled", "conv"] + (["flatten", "flatten"] if features <= MAX_FLAT_FEATURES else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "flatten":
        return FlattenHead(features, classes, dropout=draw(st.booleans()))
    if kind == "conv":
        return ConvHead(rank, c, classes)
    if draw(st.booleans()):
        hidden = draw(st.integers(1, MAX_CHANNELS))
        mlp: nn.Module = nn.Sequential(
            nn.Linear(c, hidden), nn.ReLU(), nn.Dropout(0.2), nn.Linear(hidden, classes)
        )
    else:
        mlp = nn.Linear(c, classes)
    return PooledHead(rank, mlp, adaptive=draw(st.booleans()))


_BLOCKS = {
    "conv": _conv_unit,
    "residual": _residual,
    "branches": _branches,
    "se": _se,
    "shuffle": _shuffle,
    "split": _split,
    "pool": _pool,
}


@st.composite
def architectures(draw: st.DrawFn) -> tuple[nn.Module, tuple[int, ...]]:
    """A random small CNN in eval mode and the batched shape ``(1, C, *spatial)`` it reads."""
    rank = draw(st.integers(1, 3))
    channels = draw(st.integers(1, 4))
    spatial = tuple(draw(st.integers(1, MAX_SPATIAL)) for _ in range(rank))
    seed = draw(st.integers(0, 2**31 - 1))
    shape = (1, channels, *spatial)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        blocks: list[nn.Module] = []
        c, s = channels, spatial
        for _ in range(draw(st.integers(1, MAX_BLOCKS))):
            name = draw(st.sampled_from(sorted(_BLOCKS)))
            made = _BLOCKS[name](draw, rank, c, s)
            if made is None:  # the block does not fit this shape; draw a conv instead
                made = _conv_unit(draw, rank, c, s)
            block, c, s = made
            blocks.append(block)
        head = _head(draw, rank, c, s)
        final = draw(st.sampled_from(["none", "none", "none", "softmax", "log_softmax"]))
        model = randomize_norms(Net(blocks, head, final))
    return model.eval(), shape
