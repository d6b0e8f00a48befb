"""A stand-in for ``fxcfp.Pyramid`` with synthetic maps, shared by the render and report tests.

The render package reads a pyramid only through ``fxcfp.render._common.PyramidLike`` (a
``typing.Protocol`` that mypy holds the real ``Pyramid`` to), so a small fake with moving
Gaussian blobs exercises it without tracing a network. ``tests/test_render_common.py`` holds
the fake to the same protocol, so it cannot drift into testing something else.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch

from fxcfp._errors import InvalidArgumentError
from fxcfp._maps import temporal_profile


@dataclass(frozen=True)
class FakeLayer:
    name: str
    kernels: tuple[int, ...]
    total: int
    depth: int
    edges: int
    pathway: int = 0


class FakePyramid:
    """``levels`` layers of ``kernels`` kernels each, deepest first, with a blob per kernel.

    Like ``fxcfp.Pyramid``: with ``classifier`` the top level is the linear layer (``fc``) whose
    one kernel is the target class, a root with a map that has no location (all zeros); the last
    ``unexpanded`` levels lie at ``max_depth``, so asking for their maps raises. ``shapes`` gives
    each input's clip size ``(T, H, W)``, levels alternating between inputs when there are
    several; ``image`` makes a 2D model, whose maps are ``H x W``.
    """

    def __init__(
        self,
        *,
        levels: int = 4,
        kernels: int = 3,
        total: int = 16,
        shapes: tuple[tuple[int, int, int], ...] = ((8, 32, 32),),
        num_classes: int = 10,
        target: int = 3,
        classifier: bool = False,
        unexpanded: int = 0,
        image: bool = False,
        seed: int = 0,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.target = target
        self.contrast: int | None = None
        self.top_k: int | None = None
        self.threshold = 0.6
        self.max_depth = None if unexpanded == 0 else levels + classifier - unexpanded
        self.logits = torch.from_numpy(rng.normal(size=num_classes).astype(np.float32))
        self.logits[target] = self.logits.max() + 2.0
        self.probability = float(torch.softmax(self.logits, 0)[target])
        self.shapes = shapes
        self.image = image
        layers = [FakeLayer("fc", (target,), num_classes, 0, kernels, 0)] if classifier else []
        for level in range(levels):
            chosen = tuple(sorted(rng.choice(total, size=kernels, replace=False).tolist()))
            name = f"blocks.{levels - level}.conv" if level % 2 == 0 else f"layer_{level}"
            layers.append(
                FakeLayer(name, chosen, total, level + 1, kernels * 2, level % len(shapes))
            )
        self.layers = tuple(layers)
        self._unexpanded = {layer.name for layer in layers[len(layers) - unexpanded :]}
        self._centres = {
            (layer.name, k): rng.uniform(0.2, 0.8, size=2)
            for layer in layers
            for k in layer.kernels
        }
        self._cache: dict[tuple[str, int | None, bool], torch.Tensor] = {}
        self.modes_asked: set[str] = set()  # the map modes a renderer asked for
        self.prefetched: list[tuple[tuple[str, ...], str]] = []  # prefetch_maps calls
        graph = nx.DiGraph(target=target, threshold=self.threshold, probability=self.probability)
        for layer in layers:
            for k in layer.kernels:
                score = 1.0 if layer.name == "fc" else float(rng.uniform(0.6, 1.0))
                graph.add_node(
                    f"{layer.name}:{k}", layer=layer.name, channel=k, depth=layer.depth, score=score
                )
        for upper, lower in zip(layers, layers[1:], strict=False):
            for k in upper.kernels:
                for j in lower.kernels[: 1 + k % len(lower.kernels)]:
                    graph.add_edge(
                        f"{upper.name}:{k}", f"{lower.name}:{j}", score=float(rng.uniform(0.6, 1.0))
                    )
        if not unexpanded:
            source = "input" if len(shapes) == 1 else f"input{layers[-1].pathway}"
            for c in range(3):
                graph.add_node(
                    f"{source}:{c}", layer=source, channel=c, depth=len(layers), score=0.9
                )
                for k in layers[-1].kernels:
                    graph.add_edge(f"{layers[-1].name}:{k}", f"{source}:{c}", score=0.9)
        self.graph = graph

    @property
    def num_edges(self) -> int:
        return self.graph.number_of_edges()

    def prefetch_maps(self, layers: list[str] | tuple[str, ...] | None = None, *,
                      mode: str = "paper") -> None:
        """The real pyramid records every asked layer's map in one pass; the fake's maps are
        synthetic, so it only notes what was asked."""
        self.prefetched.append((tuple(layers or ()), mode))

    def _layer(self, name: str) -> FakeLayer:
        found = [layer for layer in self.layers if layer.name == name]
        if not found:
            raise InvalidArgumentError(f"Pyramid: no layer {name!r} in this pyramid")
        if name in self._unexpanded:
            raise InvalidArgumentError(f"Pyramid: layer {name!r} lies at max_depth")
        return found[0]

    def _shape(self, layer: FakeLayer, upsample: bool) -> tuple[int, ...]:
        t, h, w = self.shapes[layer.pathway]
        if not upsample:
            t, h, w = max(t // 4, 1), max(h // 8, 1), max(w // 8, 1)
        return (h, w) if self.image else (t, h, w)

    def kernel_map(self, layer: str, kernel: int, *, upsample: bool = False,
                   mode: str = "paper") -> torch.Tensor:
        self.modes_asked.add(mode)
        key = (layer, kernel, upsample)
        if key not in self._cache:
            self._cache[key] = self._blob(self._layer(layer), kernel, upsample)
        return self._cache[key]

    def _blob(self, layer: FakeLayer, kernel: int, upsample: bool) -> torch.Tensor:
        shape = self._shape(layer, upsample)
        if layer.name == "fc":
            # a classifier with no located tensor upstream: no location, all zeros
            return torch.zeros(shape)
        t, h, w = (1, *shape) if self.image else shape
        cy, cx = self._centres[(layer.name, kernel)]
        # a blob that drifts right and brightens over time
        times = np.linspace(0, 1, t)[:, None, None]
        yy = np.linspace(0, 1, h)[None, :, None]
        xx = np.linspace(0, 1, w)[None, None, :]
        blob = (0.3 + 0.7 * times) * np.exp(-((yy - cy) ** 2 + (xx - cx - 0.2 * times) ** 2) / 0.02)
        span = blob.max() - blob.min()
        # a map of one pixel is constant: all zeros, as the real pyramid scales it
        blob = (blob - blob.min()) / span if span > 0 else np.zeros_like(blob)
        return torch.from_numpy(blob.astype(np.float32).reshape(shape))

    def layer_map(self, layer: str, *, upsample: bool = False,
                  mode: str = "paper") -> torch.Tensor:
        self.modes_asked.add(mode)
        key = (layer, None, upsample)
        if key not in self._cache:
            kernels = self._layer(layer).kernels
            total = sum(self.kernel_map(layer, k, upsample=upsample, mode=mode) for k in kernels)
            span = total.max() - total.min()
            self._cache[key] = (total - total.min()) / span if span > 0 else total * 0
        return self._cache[key]

    def temporal_profile(self, layer: str, *, mode: str = "paper") -> torch.Tensor:
        return temporal_profile(self.layer_map(layer, upsample=True, mode=mode))

    def summary(self) -> str:
        lines = [f"class {self.target}  p={self.probability:.3f}", "layer  kept/total  depth"]
        lines += [f"{x.name}  {len(x.kernels)}/{x.total}  {x.depth}" for x in self.layers]
        return "\n".join(lines)


def frames_for(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Textured ``T x H x W x 3`` uint8 frames that change from frame to frame."""
    t, h, w = shape
    grid = np.add.outer(np.arange(h), np.arange(w))[None] + 9 * np.arange(t)[:, None, None]
    return np.stack([(grid * 3 + seed) % 256, (grid * 5) % 256, np.full_like(grid, 90)], -1).astype(
        np.uint8
    )
