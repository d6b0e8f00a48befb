"""A synthetic video benchmark whose evidence is known, and a small 3D CNN trained on it.

Every clip holds one *target* object whose shape (a filled square or a plus) and motion (right,
left or down) make its class — six classes, so two classes differ by motion only, by
appearance only, or by both. Beside it, in the same colour: a static square and a static plus
(shape alone does not find the target), and a moving bar in a random direction (motion alone
does not either). The background is smooth random texture plus per-voxel noise. The evidence
mask marks the target's voxels in every frame: the only part of the clip that tells its class.

Generation is a pure function of ``(config, seed, index)``; the model is trained with a fixed
seed, one thread and a fixed order, and cached on disk under a hash of the whole configuration.

Example:
    >>> from fxcfp.eval.synthetic import SyntheticConfig, make_clips
    >>> data = make_clips(SyntheticConfig(), 4, seed=1)
    >>> tuple(data.clips.shape), tuple(data.masks.shape), data.labels.tolist()[:2]
    ((4, 3, 16, 32, 32), (4, 16, 32, 32), [1, 3])
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from .._files import atomic_write, dump_json

__all__ = [
    "CLASS_NAMES",
    "SyntheticConfig",
    "TrainConfig",
    "SyntheticClips",
    "TrainedModel",
    "make_clips",
    "SmallResNet3d",
    "train_model",
    "default_cache_dir",
    "held_out",
]

SHAPES = ("square", "plus", "bar")
DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}
# the class is (target shape, target direction); the bar is only ever a distractor
CLASS_NAMES = tuple(f"{shape}-{direction}" for shape in SHAPES[:2]
                    for direction in ("right", "left", "down"))
_GENERATOR_VERSION = 1  # bump when the drawing changes: it keys the model cache


@dataclass(frozen=True)
class SyntheticConfig:
    """How clips are drawn.

    Attributes:
        frames: ``T``.
        size: ``H = W``.
        object_size: side of the square, the plus and the bar's long side, in pixels.
        speed: pixels per frame of every moving object.
        noise: standard deviation of the per-voxel noise.
        texture: amplitude of the smooth background texture.
    """

    frames: int = 16
    size: int = 32
    object_size: int = 6
    speed: float = 1.0
    noise: float = 0.15
    texture: float = 0.5


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained (all of it keys the cache)."""

    train_clips: int = 1024
    test_clips: int = 256
    epochs: int = 7
    batch: int = 32
    lr: float = 4e-3
    width: int = 12
    seed: int = 0


@dataclass(frozen=True)
class SyntheticClips:
    """Clips with their classes and evidence.

    Attributes:
        clips: ``N x 3 x T x H x W`` float32.
        labels: ``N`` int64 classes (see :data:`CLASS_NAMES`).
        masks: ``N x T x H x W`` bool, the target object's voxels.
    """

    clips: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor


def _shape(name: str, side: int) -> np.ndarray:
    mask = np.zeros((side, side), bool)
    if name == "square":
        mask[:] = True
    elif name == "plus":
        arm = max(1, side // 3)
        lo = (side - arm) // 2
        mask[lo: lo + arm, :] = True
        mask[:, lo: lo + arm] = True
    else:  # bar: a thin horizontal rectangle, a shape no class has
        arm = max(1, side // 3)
        lo = (side - arm) // 2
        mask[lo: lo + arm, :] = True
    return mask


def _track(rng: np.random.Generator, config: SyntheticConfig, direction: tuple[int, int] | None
           ) -> np.ndarray:
    """``T x 2`` integer top-left corners of an object that stays inside the frame."""
    side, size, frames = config.object_size, config.size, config.frames
    travel = np.zeros(2) if direction is None else np.array(direction) * config.speed
    steps = np.arange(frames)[:, None] * travel[None]
    low = np.maximum(0, -steps.min(0))
    high = size - side - np.maximum(0, steps.max(0))
    start = np.array([rng.uniform(lo, hi) for lo, hi in zip(low, high)])
    return np.rint(start[None] + steps).astype(np.int64)


def _footprint(track: np.ndarray, side: int, size: int) -> np.ndarray:
    box = np.zeros((size, size), bool)
    for y, x in track:
        box[max(0, y - 1): y + side + 1, max(0, x - 1): x + side + 1] = True
    return box


def _clip(config: SyntheticConfig, rng: np.random.Generator
          ) -> tuple[np.ndarray, int, np.ndarray]:
    frames, size, side = config.frames, config.size, config.object_size
    shape_index = int(rng.integers(2))
    direction_index = int(rng.integers(3))
    label = shape_index * 3 + direction_index
    # smooth static texture over the whole clip, per channel, plus fresh noise every frame
    texture = ndimage.gaussian_filter(rng.normal(size=(3, size, size)), sigma=(0, 3, 3))
    texture *= config.texture / max(texture.std(), 1e-8)
    clip = np.broadcast_to(texture[:, None], (3, frames, size, size)).copy()
    clip += rng.normal(scale=config.noise, size=clip.shape)
    colour = rng.uniform(0.8, 1.6, size=3) * rng.choice([-1.0, 1.0])

    target = _track(rng, config, list(DIRECTIONS.values())[direction_index])
    taken = _footprint(target, side, size)
    objects: list[tuple[str, np.ndarray]] = []
    for name, direction in (("square", None), ("plus", None),
                            ("bar", list(DIRECTIONS.values())[int(rng.integers(4))])):
        for _ in range(50):  # distractors keep clear of the target's path when they can
            track = _track(rng, config, direction)
            box = _footprint(track, side, size)
            if not (box & taken).any():
                break
        taken |= box
        objects.append((name, track))
    mask = np.zeros((frames, size, size), bool)
    objects.append((SHAPES[shape_index], target))
    for k, (name, track) in enumerate(objects):
        pixels = _shape(name, side)
        for t, (y, x) in enumerate(track):
            window = clip[:, t, y: y + side, x: x + side]
            window[:, pixels] = colour[:, None]
            if k == len(objects) - 1:  # the target is drawn last, on top
                mask[t, y: y + side, x: x + side] |= pixels
    return clip.astype(np.float32), label, mask


def make_clips(config: SyntheticConfig, count: int, *, seed: int) -> SyntheticClips:
    """``count`` clips; clip ``i`` depends only on ``(config, seed, i)``."""
    clips, labels, masks = [], [], []
    for index in range(count):
        clip, label, mask = _clip(config, np.random.default_rng([seed, index]))
        clips.append(clip)
        labels.append(label)
        masks.append(mask)
    return SyntheticClips(torch.from_numpy(np.stack(clips)), torch.tensor(labels),
                          torch.from_numpy(np.stack(masks)))


class _Block(nn.Module):
    """A basic residual block: two 3x3x3 convolutions, a 1x1x1 projection when the shape
    changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.a = nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.a_bn = nn.BatchNorm3d(cout)
        self.b = nn.Conv3d(cout, cout, 3, padding=1, bias=False)
        self.b_bn = nn.BatchNorm3d(cout)
        self.shortcut = (nn.Sequential(nn.Conv3d(cin, cout, 1, stride=stride, bias=False),
                                       nn.BatchNorm3d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.a_bn(self.a(x)))
        return torch.relu(self.b_bn(self.b(y)) + self.shortcut(x))


class SmallResNet3d(nn.Module):
    """Stem, three residual blocks (the last two halve the resolution), global average pool,
    linear head: the layout of a 3D ResNet at a size a CPU trains in a minute."""

    def __init__(self, classes: int = len(CLASS_NAMES), width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv3d(3, width, (3, 5, 5), stride=2,
                                            padding=(1, 2, 2), bias=False),
                                  nn.BatchNorm3d(width), nn.ReLU())
        self.b1 = _Block(width, width, 1)
        self.b2 = _Block(width, 2 * width, 2)
        self.b3 = _Block(2 * width, 2 * width, 1)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b3(self.b2(self.b1(self.stem(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


@dataclass(frozen=True)
class TrainedModel:
    """A trained :class:`SmallResNet3d` and how well it does.

    Attributes:
        model: the network, in eval mode.
        accuracy: accuracy on the held-out clips (drawn with ``seed + 1``).
        train_seconds: wall time of the training run that made the weights, as recorded.
        train_cpu_seconds: its process CPU time (what a busy machine does not inflate; None
            where not recorded).
        path: the cached state dict.
        cached: whether it was loaded rather than trained now.
    """

    model: SmallResNet3d
    accuracy: float
    train_seconds: float
    train_cpu_seconds: float | None
    path: Path
    cached: bool


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fxcfp/eval`` (``~/.cache/fxcfp/eval`` without it)."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "fxcfp" / "eval"


def _key(data: SyntheticConfig, train: TrainConfig) -> str:
    blob = json.dumps({"generator": _GENERATOR_VERSION, "data": dataclasses.asdict(data),
                       "train": dataclasses.asdict(train), "torch": torch.__version__.split("+")[0]},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a fixed reduction order: the same weights on every run
    try:
        with torch.random.fork_rng(devices=[]):  # the caller's random state is left alone
            yield
    finally:
        torch.set_num_threads(threads)


def _accuracy(model: nn.Module, data: SyntheticClips, batch: int) -> float:
    model.eval()
    with torch.no_grad():
        predicted = torch.cat([model(data.clips[i: i + batch]).argmax(1)
                               for i in range(0, len(data.labels), batch)])
    return float((predicted == data.labels).double().mean())


def train_model(data: SyntheticConfig = SyntheticConfig(), train: TrainConfig = TrainConfig(), *,
                cache_dir: str | os.PathLike[str] | None = None,
                retrain: bool = False) -> TrainedModel:
    """Train (or load from the cache) the benchmark's model.

    Args:
        data: the clip generator's configuration.
        train: the training configuration; with ``data`` it keys the cache.
        cache_dir: where trained weights are kept (default :func:`default_cache_dir`).
        retrain: train even when cached weights exist.

    Returns:
        The model in eval mode, its held-out accuracy and where its weights are.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    key = _key(data, train)
    weights, meta = folder / f"small_resnet3d-{key}.pt", folder / f"small_resnet3d-{key}.json"
    if weights.exists() and meta.exists() and not retrain:
        with torch.random.fork_rng(devices=[]):  # the initialisation is overwritten anyway
            model = SmallResNet3d(width=train.width)
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        info = json.loads(meta.read_text())
        return TrainedModel(model.eval(), info["accuracy"], info["train_seconds"],
                            info.get("train_cpu_seconds"), weights, True)
    start, cpu = time.perf_counter(), time.process_time()
    with _one_thread():
        torch.manual_seed(train.seed)
        model = SmallResNet3d(width=train.width)
        # channels-last convolutions train about 1.3x faster on a CPU
        model = model.to(memory_format=torch.channels_last_3d)
        clips = make_clips(data, train.train_clips, seed=2 * train.seed)
        inputs = clips.clips.contiguous(memory_format=torch.channels_last_3d)
        optimiser = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=1e-4)
        steps = train.epochs * ((train.train_clips + train.batch - 1) // train.batch)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, train.lr, total_steps=steps)
        order = torch.Generator().manual_seed(train.seed)
        for _ in range(train.epochs):
            model.train()
            permutation = torch.randperm(train.train_clips, generator=order)
            for i in range(0, train.train_clips, train.batch):
                chosen = permutation[i: i + train.batch]
                loss = nn.functional.cross_entropy(model(inputs[chosen]),
                                                   clips.labels[chosen])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        model = model.to(memory_format=torch.contiguous_format)
        accuracy = _accuracy(model, held_out(data, train), train.batch)
    with atomic_write(weights, binary=True) as file:
        torch.save(model.state_dict(), file)
    dump_json({"accuracy": accuracy, "train_seconds": seconds, "train_cpu_seconds": cpu,
               "data": dataclasses.asdict(data), "train": dataclasses.asdict(train)}, meta)
    return TrainedModel(model.eval(), accuracy, seconds, cpu, weights, False)


def held_out(data: SyntheticConfig = SyntheticConfig(), train: TrainConfig = TrainConfig(),
             count: int | None = None) -> SyntheticClips:
    """The held-out clips (a seed stream the training never sees)."""
    return make_clips(data, train.test_clips if count is None else count,
                      seed=2 * train.seed + 1)
