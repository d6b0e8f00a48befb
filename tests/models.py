"""Small hand-written networks shared by the tests, and a snapshot helper.

Each ``make_<name>()`` returns ``(model, input_shape)``: a tiny model with random weights, in
eval mode, and the batched shape ``(1, C, ...)`` of the clip it reads. Each one isolates one
wiring pattern the analysis must map through weight-free operations (a residual add, a concat of
uneven branches, a gate, a shuffle, a split), so a failure names the pattern that broke.

Weights are seeded inside :func:`torch.random.fork_rng`, so building a model never moves the
global random state of the test that builds it. Batch-norm statistics and affine parameters are
randomised (with positive scales) so normalisation is not the identity a fresh layer would be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MODELS",
    "Snapshot",
    "assert_unchanged",
    "make_chain3d",
    "make_chunk",
    "make_conv1d",
    "make_conv2d",
    "make_functional_conv",
    "make_grouped",
    "make_inception",
    "make_resnet3d",
    "make_se",
    "make_shuffle",
    "make_softmax",
    "make_two_stream",
    "randomize_norms",
    "snapshot",
]

Shape = tuple[int, ...]


def randomize_norms(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Give every batch norm random running statistics and a random positive affine.

    A fresh batch norm in eval mode is the identity, which would hide a wrong channel rule for
    it. The scale stays positive so a ReLU after it keeps the sign pattern of its input: the
    reference's perturbations then reach gated products (see ``tests/reference.py``).
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            c = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                    module.bias.copy_(torch.randn(c, generator=generator) * 0.1)
    return model


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a model under its own seed without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build()
        randomize_norms(model)
    return model.eval()


class TinyNet3d(nn.Module):
    """Two 3D convolutions and a classifier: the smallest model every entry point can explain
    (the command line and the dataset runs name it through a factory)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv3d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3, 4)))


def make_tiny_net3d(cls: type[TinyNet3d] = TinyNet3d, *, classes: int = 3) -> nn.Module:
    """``cls(classes)`` under seed 0, in eval mode, the caller's random state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return cls(classes).eval()


def _bn_relu(c: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm3d(c), nn.ReLU())


class Chain3d(nn.Module):
    """Plain conv chain whose head flattens the whole ``C x T x H x W`` volume.

    The flatten is not pooled on purpose: each Linear input feature belongs to channel
    ``f // (T*H*W)``, and several features of one channel collapse into one edge.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 6, 3, padding=1)
        self.act1 = _bn_relu(6)
        self.conv2 = nn.Conv3d(6, 8, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.act2 = _bn_relu(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8 * 2 * 2 * 2, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.conv1(x))
        x = self.act2(self.conv2(x))
        return self.fc(self.drop(torch.flatten(x, 1)))


def make_chain3d() -> tuple[nn.Module, Shape]:
    """Conv3d chain with a flatten→Linear head."""
    return _seeded(Chain3d, 0), (1, 3, 2, 4, 4)


class BasicBlock3d(nn.Module):
    """ResNet basic block; a projection shortcut when the shape changes, identity otherwise."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm3d(cout)
        self.conv2 = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv3d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm3d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class ResNet3d(nn.Module):
    """Stem, one identity-shortcut block, one projection-shortcut block, pooled Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(4)
        self.layer1 = BasicBlock3d(4, 4, 1)
        self.layer2 = BasicBlock3d(4, 8, 2)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean(dim=(2, 3, 4)))


def make_resnet3d() -> tuple[nn.Module, Shape]:
    """3D ResNet-ish: identity and projection shortcuts."""
    return _seeded(ResNet3d, 1), (1, 3, 2, 4, 4)


class Grouped(nn.Module):
    """A grouped conv, a depth-wise conv with channel multiplier 2, then a 1x1x1 conv head.

    The head is a conv averaged over T, H, W (I3D's logits), so the classifier is a conv.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(2, 8, 1)
        self.grouped = nn.Conv3d(8, 8, 3, padding=1, groups=4)
        self.depthwise = nn.Conv3d(8, 16, 3, padding=1, groups=8)
        self.bn = nn.BatchNorm3d(16)
        self.logits = nn.Conv3d(16, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.grouped(x))
        x = F.relu(self.bn(self.depthwise(x)))
        return self.logits(x).mean(dim=(2, 3, 4))


def make_grouped() -> tuple[nn.Module, Shape]:
    """Grouped and depth-wise convs with a conv head."""
    return _seeded(Grouped, 2), (1, 2, 2, 3, 3)


class Inception(nn.Module):
    """Four concatenated branches of uneven depth after a stem, then a pooled head.

    Branches: one conv; two convs; max-pool then a 1x1x1 projection; max-pool alone (no weight,
    so the head reads the stem through it). They check that pooling is a link and that the
    concat offsets are right.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 4, 1)
        self.b1 = nn.Conv3d(4, 2, 1)
        self.b2a = nn.Conv3d(4, 3, 1)
        self.b2b = nn.Conv3d(3, 3, 3, padding=1)
        self.pool = nn.MaxPool3d(3, stride=1, padding=1)
        self.b3 = nn.Conv3d(4, 2, 1)
        self.fc = nn.Linear(2 + 3 + 2 + 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        y1 = self.b1(x)
        y2 = self.b2b(F.relu(self.b2a(x)))
        y3 = self.b3(self.pool(x))
        y4 = F.max_pool3d(x, 3, stride=1, padding=1)
        y = F.relu(torch.cat([y1, y2, y3, y4], dim=1))
        return self.fc(y.mean(dim=(2, 3, 4)))


def make_inception() -> tuple[nn.Module, Shape]:
    """Inception-ish block: uneven concatenated branches with max-pool branches."""
    return _seeded(Inception, 3), (1, 3, 2, 3, 3)


class SE(nn.Module):
    """Squeeze-and-excitation: ``x * sigmoid(conv(relu(conv(mean(x)))))``.

    The gate is applied to the batch-norm output, before the ReLU, as in SE-ResNet.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm3d(6)
        self.squeeze = nn.Conv3d(6, 3, 1)
        self.excite = nn.Conv3d(3, 6, 1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        g = x.mean(dim=(2, 3, 4), keepdim=True)
        g = torch.sigmoid(self.excite(F.relu(self.squeeze(g))))
        x = F.relu(x * g)
        return self.fc(x.mean(dim=(2, 3, 4)))


def make_se() -> tuple[nn.Module, Shape]:
    """Squeeze-and-excitation gate."""
    return _seeded(SE, 4), (1, 3, 2, 3, 3)


class Shuffle(nn.Module):
    """ShuffleNet's channel shuffle written as view → transpose → view between two grouped convs."""

    groups = 2

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(2, 6, 1)
        self.conv2 = nn.Conv3d(6, 6, 1, groups=2)
        self.conv3 = nn.Conv3d(6, 6, 3, padding=1, groups=2)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))
        n, t, h, w = x.size(0), x.size(2), x.size(3), x.size(4)
        x = x.view(n, self.groups, 6 // self.groups, t, h, w)
        x = x.transpose(1, 2).contiguous().view(n, 6, t, h, w)
        x = F.relu(self.conv3(x))
        return self.fc(x.mean(dim=(2, 3, 4)))


def make_shuffle() -> tuple[nn.Module, Shape]:
    """Channel shuffle."""
    return _seeded(Shuffle, 5), (1, 2, 2, 3, 3)


class Chunk(nn.Module):
    """Split channels with ``chunk``, ``split`` and ``narrow``, process the parts, concatenate."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 6, 1)
        self.left = nn.Conv3d(3, 3, 3, padding=1)
        self.right = nn.Conv3d(2, 2, 1)
        self.fc = nn.Linear(3 + 1 + 2 + 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        a, b = torch.chunk(x, 2, dim=1)
        b1, b2 = torch.split(b, [1, 2], dim=1)
        y = torch.cat([self.left(a), b1, self.right(b2), x.narrow(1, 4, 1)], dim=1)
        return self.fc(F.relu(y).mean(dim=(2, 3, 4)))


def make_chunk() -> tuple[nn.Module, Shape]:
    """Chunk / split / narrow along channels."""
    return _seeded(Chunk, 6), (1, 3, 2, 3, 3)


class Conv1dNet(nn.Module):
    """1D convs (audio / time series) with a strided layer and a flatten head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(2, 5, 3, padding=1)
        self.bn = nn.BatchNorm1d(5)
        self.conv2 = nn.Conv1d(5, 4, 3, stride=2, dilation=2, padding=2)
        self.fc = nn.Linear(4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def make_conv1d() -> tuple[nn.Module, Shape]:
    """1D conv net."""
    return _seeded(Conv1dNet, 7), (1, 2, 8)


class Conv2dNet(nn.Module):
    """2D image CNN with avg-pooling, a residual add and an MLP head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, groups=3)
        self.fc1 = nn.Linear(6, 5)
        self.fc2 = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = F.relu(x + self.conv2(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc2(F.relu(self.fc1(x)))


def make_conv2d() -> tuple[nn.Module, Shape]:
    """2D conv net."""
    return _seeded(Conv2dNet, 8), (1, 3, 4, 4)


class FunctionalConv(nn.Module):
    """A functional ``F.conv3d`` with the model's own parameter, between two module layers.

    Its layer name is the FX node name of the call, ``conv3d``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(2, 4, 1)
        self.weight = nn.Parameter(torch.randn(6, 2, 3, 3, 3) * 0.3)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(F.conv3d(x, self.weight, padding=1, groups=2))
        return self.fc(x.mean(dim=(2, 3, 4)))


def make_functional_conv() -> tuple[nn.Module, Shape]:
    """Functional conv3d with an ``nn.Parameter`` weight."""
    return _seeded(FunctionalConv, 9), (1, 2, 2, 3, 3)


class Softmax(nn.Module):
    """Returns class probabilities: softmax over the class dim is channel c to channel c.

    With ``probabilities=False`` the same weights return the logits, so a test can check that
    both explain alike.
    """

    def __init__(self, probabilities: bool = True) -> None:
        super().__init__()
        self.probabilities = probabilities
        self.conv = nn.Conv3d(3, 5, 3, padding=1)
        self.fc = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc(F.relu(self.conv(x)).mean(dim=(2, 3, 4)))
        if self.probabilities:
            x = F.softmax(x, dim=1)
        return x


def make_softmax(probabilities: bool = True) -> tuple[nn.Module, Shape]:
    """Net that ends with a softmax over classes (or, on request, the same net's logits)."""
    return _seeded(lambda: Softmax(probabilities), 10), (1, 3, 2, 3, 3)


class TwoStream(nn.Module):
    """SlowFast-style: ``forward`` takes one list of two clips with different frame rates.

    Each clip gets its own stem; the pooled features are concatenated into one Linear head.
    """

    def __init__(self) -> None:
        super().__init__()
        self.slow = nn.Conv3d(3, 4, (1, 3, 3), padding=(0, 1, 1))
        self.fast = nn.Conv3d(3, 2, (3, 1, 1), padding=(1, 0, 0))
        self.fc = nn.Linear(6, 3)

    def forward(self, clips: list[torch.Tensor]) -> torch.Tensor:
        slow = F.relu(self.slow(clips[0])).mean(dim=(2, 3, 4))
        fast = F.relu(self.fast(clips[1])).mean(dim=(2, 3, 4))
        return self.fc(torch.cat([slow, fast], dim=1))


def make_two_stream() -> tuple[nn.Module, tuple[Shape, Shape]]:
    """Two-input model; returns the two clip shapes (slow: 2 frames, fast: 4 frames)."""
    return _seeded(TwoStream, 11), ((1, 3, 2, 3, 3), (1, 3, 4, 3, 3))


MODELS: dict[str, Callable[[], tuple[nn.Module, Shape]]] = {
    "chain3d": make_chain3d,
    "resnet3d": make_resnet3d,
    "grouped": make_grouped,
    "inception": make_inception,
    "se": make_se,
    "shuffle": make_shuffle,
    "chunk": make_chunk,
    "conv1d": make_conv1d,
    "conv2d": make_conv2d,
    "functional_conv": make_functional_conv,
    "softmax": make_softmax,
}
"""Every single-input hand-written model by name, for ``pytest.mark.parametrize``."""


_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


@dataclass(frozen=True)
class Snapshot:
    """What an analysis must leave as it found it: values, modes, grad flags and hooks."""

    state: dict[str, torch.Tensor]
    training: dict[str, bool]
    requires_grad: dict[str, bool]
    params: dict[str, int]
    hooks: dict[str, dict[str, tuple[int, ...]]]


def snapshot(model: nn.Module) -> Snapshot:
    """Record everything about ``model`` an analysis could change by accident.

    Parameter identities are kept too: an analysis that swaps a parameter for a converted
    copy (``.double()`` on the caller's model) changes the model even if the values agree.
    """
    return Snapshot(
        state={k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        training={name: m.training for name, m in model.named_modules()},
        requires_grad={name: p.requires_grad for name, p in model.named_parameters()},
        params={name: id(p) for name, p in model.named_parameters()},
        hooks={
            name: {attr: tuple(getattr(m, attr, {}).keys()) for attr in _HOOK_DICTS}
            for name, m in model.named_modules()
        },
    )


def assert_unchanged(model: nn.Module, snap: Snapshot) -> None:
    """Fail with the first difference between ``model`` and its earlier snapshot."""
    after = snapshot(model)
    assert after.state.keys() == snap.state.keys(), "state_dict keys changed"
    for key, before in snap.state.items():
        now = after.state[key]
        assert now.dtype == before.dtype, f"{key}: dtype {before.dtype} -> {now.dtype}"
        assert now.device == before.device, f"{key}: device {before.device} -> {now.device}"
        assert torch.equal(now, before), f"{key}: values changed"
    assert after.training == snap.training, "a module's training flag changed"
    assert after.requires_grad == snap.requires_grad, "a parameter's requires_grad changed"
    assert after.params == snap.params, "a parameter object was replaced"
    assert after.hooks == snap.hooks, "hooks were left registered or removed"
