"""Reliability figures: memory per call with a new model object per call, four threads against
one, and cubic-spline upsampling of long 1-D maps. Run: ``python benchmarks/reliability.py``.

- Memory: resident set size after each of ``--calls`` first calls, each on a new r3d_18 object
  (the model of the previous call released, no ``gc.collect()`` by the caller), with fxcfp's
  release after each new plan (collect freed analyzers, ``malloc_trim``) and without it; each
  variant in its own process. The growth is the slope of a line fitted
  through calls 5..N (the first calls warm caches).
- Threads: the same 16 analyses of four small models, sequentially and from four threads; how
  many differ from the sequential result, how many models changed, and whether torch's
  ``nn.Module.__call__`` is intact afterwards.
- Spline: ``upsample`` of a random 1-D map to 16000 samples, and every layer map of a Conv1d
  audio model on 16000 samples, CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fxcfp and tests
import fxcfp  # noqa: E402

try:
    from core import RESULTS, _write_section, machine
except ImportError:  # pragma: no cover
    from benchmarks.core import RESULTS, _write_section, machine


def _rss_mib() -> float:
    with open("/proc/self/statm") as file:
        return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _memory_child(trim: bool, calls: int) -> list[float]:
    import fxcfp._analyzer as analyzer

    if not trim:
        analyzer._trim_heap = lambda: None  # neither the collect nor malloc_trim
    torch.manual_seed(0)
    clip = torch.randn(3, 4, 32, 32)
    sizes = []
    for _ in range(calls):
        model = torchvision.models.video.r3d_18()
        fxcfp.analyze(model, clip).summary()
        del model
        sizes.append(_rss_mib())
    return sizes


def _memory(calls: int) -> dict[str, tuple[float, float]]:
    out = {}
    for variant in ("trim", "no trim"):
        flag = "1" if variant == "trim" else "0"
        result = subprocess.run(
            [sys.executable, __file__, "--memory-child", flag, "--calls", str(calls)],
            check=True, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(
                Path(__file__).resolve().parents[1])})
        sizes = json.loads(result.stdout.strip().splitlines()[-1])
        tail = np.array(sizes[4:])
        slope = float(np.polyfit(np.arange(tail.size), tail, 1)[0])
        out[variant] = (slope, sizes[-1] - sizes[4])
    return out


def _thread_models() -> list[tuple[nn.Module, torch.Tensor]]:
    from tests.models import make_grouped, make_resnet3d, make_se, make_shuffle

    made = []
    for i, make in enumerate((make_resnet3d, make_se, make_grouped, make_shuffle)):
        model, shape = make()
        model.train(i % 2 == 0)  # half of them in training mode
        torch.manual_seed(i)
        made.append((model, torch.randn(shape)[0]))
    return made


def _threads(repeats: int) -> dict[str, float]:
    from tests.models import snapshot

    def result(pyramid: fxcfp.Pyramid) -> tuple:
        return pyramid.target, sorted(pyramid.graph.edges)

    warm, warm_clip = _thread_models()[0]
    fxcfp.analyze(warm, warm_clip)  # one-time costs (imports, tracer set-up) out of the timing
    sequential_models = _thread_models()
    start = time.perf_counter()
    want = [result(fxcfp.analyze(m, c, threshold=0.3)) for m, c in sequential_models
            for _ in range(repeats)]
    sequential = time.perf_counter() - start

    made = _thread_models()  # new objects: the threads make the first calls
    snaps = [snapshot(m) for m, _ in made]
    got: list[list[tuple]] = [[] for _ in made]
    errors: list[str] = []

    def work(i: int) -> None:
        model, clip = made[i]
        try:
            for _ in range(repeats):
                got[i].append(result(fxcfp.analyze(model, clip, threshold=0.3)))
        except Exception as err:  # noqa: BLE001 - counted
            errors.append(repr(err))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(made))]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    threaded = time.perf_counter() - start
    flat = [r for rows in got for r in rows]
    changed = 0
    for (model, _), snap in zip(made, snaps):
        try:
            from tests.models import assert_unchanged

            assert_unchanged(model, snap)
        except AssertionError:
            changed += 1
    import torch.fx._symbolic_trace as symbolic

    intact = nn.Module.__call__ is symbolic._orig_module_call
    return {"calls": len(want), "mismatches": sum(a != b for a, b in zip(flat, want))
            + abs(len(flat) - len(want)), "errors": len(errors), "changed": changed,
            "intact": intact, "sequential": sequential, "threaded": threaded}


def _spline() -> list[tuple[str, float]]:
    from fxcfp._maps import upsample

    rows = []
    rng = np.random.default_rng(0)
    for length in (250, 1000, 2000, 4000):
        values = torch.from_numpy(rng.random(length))
        start = time.process_time()
        upsample(values, (16000,))
        rows.append((f"upsample {length} -> 16000", time.process_time() - start))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 16, 9, stride=4, padding=4), nn.ReLU(),
                          nn.Conv1d(16, 16, 9, stride=4, padding=4), nn.ReLU(),
                          nn.Conv1d(16, 16, 9, stride=2, padding=4), nn.ReLU(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(16, 5))
    start = time.process_time()
    pyramid = fxcfp.analyze(model, torch.randn(1, 16000))
    for level in pyramid.layers:
        pyramid.layer_map(level.name, upsample=True)
    rows.append((f"Conv1d audio model, 16000 samples: analyze + {len(pyramid.layers)} "
                 "upsampled layer maps", time.process_time() - start))
    return rows


def _hooked(kind: str) -> nn.Module:
    from tests.test_hooks import _net

    model = _net()
    if kind == "root":
        model.register_forward_hook(lambda module, args, out: out * 2)
        model.register_forward_pre_hook(lambda module, args: (args[0] * 3,))
    elif kind == "leaf":
        model.block.conv.register_forward_hook(lambda module, args, out: None)
    else:
        model.block.register_forward_hook(lambda module, args, out: None)
    return model


def _parametrised(name: str) -> nn.Module:
    from torch.nn.utils import parametrizations, prune

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.BatchNorm2d(6), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))
    apply = {"weight_norm": parametrizations.weight_norm,
             "spectral_norm": parametrizations.spectral_norm,
             "old weight_norm": nn.utils.weight_norm,
             "old spectral_norm": nn.utils.spectral_norm,
             "prune": lambda m: prune.l1_unstructured(m, "weight", 0.5)}[name]
    apply(model[0])
    return model.train()


def _cases() -> list[tuple[str, Callable[[], nn.Module], Callable[[], object]]]:
    from tests.models import make_resnet3d
    from tests.test_inplace import Edits, EditsInput, ViewEdit
    from tests.test_messages import Checked, Drops, Where, _net
    from tests.test_trace import DataBranch, ShapeBranch, TwoPathways

    def image() -> torch.Tensor:
        return torch.randn(3, 8, 8)

    def clip() -> torch.Tensor:
        return torch.randn(3, 2, 4, 4)

    cases: list[tuple[str, Callable[[], nn.Module], Callable[[], object]]] = [
        (name, lambda name=name: _parametrised(name), image)
        for name in ("weight_norm", "spectral_norm", "old weight_norm", "old spectral_norm",
                     "prune")]
    cases += [
        ("in-place add_, relu_, mul_", lambda: Edits(("add", "relu", "mul"), (True,) * 3),
         lambda: torch.randn(3, 6, 6)),
        ("model edits its input", EditsInput, image),
        ("in-place edit through a view (refused)", lambda: ViewEdit("view"), image),
        ("root forward hook and pre-hook", lambda: _hooked("root"), image),
        ("leaf hook", lambda: _hooked("leaf"), image),
        ("container hook (refused)", lambda: _hooked("container"), image),
        ("where / zeros_like", Where, image),
        ("in-place dropout, train mode", lambda: Drops().train(), image),
        ("softmax head", lambda: nn.Sequential(_net(), nn.Softmax(1)), image),
        ("model error (refused)", Checked, lambda: torch.full((3, 8, 8), 1e4)),
        ("transposed conv (refused)",
         lambda: nn.Sequential(nn.ConvTranspose2d(3, 4, 2), nn.AdaptiveAvgPool2d(1),
                               nn.Flatten(), nn.Linear(4, 3)), image),
        ("vision transformer (refused)",
         lambda: torchvision.models.VisionTransformer(
             image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=8,
             mlp_dim=16, num_classes=3), lambda: torch.randn(3, 32, 32)),
        ("two pathways given one (refused)", TwoPathways, lambda: [torch.randn(3, 2, 4, 4)]),
        ("two pathways", TwoPathways,
         lambda: [torch.randn(3, 2, 4, 4), torch.randn(3, 4, 4, 4)]),
        ("shape branch (export), train mode", lambda: ShapeBranch().train(),
         lambda: torch.randn(3, 4, 6, 6)),
        ("data-dependent branch (refused)", DataBranch, clip),
        ("resnet3d, train mode", lambda: make_resnet3d()[0].train(), clip),
        ("torch.compile", lambda: torch.compile(make_resnet3d()[0].train()), clip),
        ("DataParallel", lambda: nn.DataParallel(make_resnet3d()[0].train()), clip),
        ("mobilenet_v3_small, train mode",
         lambda: torchvision.models.mobilenet_v3_small(num_classes=5).train(),
         lambda: torch.randn(3, 32, 32)),
    ]
    return cases


def _matrix() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Each case of issue 9, analysed twice: the model, the clip and torch as they were, and a
    refusal an FxcfpError."""
    import warnings

    import torch.fx._symbolic_trace as symbolic

    from tests.models import assert_unchanged, snapshot

    warnings.simplefilter("ignore")
    counts = dict.fromkeys(("explained", "refused", "raw", "changed", "clips", "broken"), 0)
    rows = []
    cases = _cases()
    for name, make, make_clip in cases:
        torch.manual_seed(0)
        model, clip = make(), make_clip()
        tensors = clip if isinstance(clip, list) else [clip]
        kept = [t.clone() for t in tensors]
        snap = snapshot(model)
        try:
            for _ in range(2):
                fxcfp.analyze(model, clip).summary()
            counts["explained"] += 1
            outcome = "explained"
        except fxcfp.FxcfpError as err:
            counts["refused"] += 1
            outcome = f"refused: {type(err).__name__}: {str(err)[:100]}"
        except Exception as err:  # noqa: BLE001 - counted as a raw error
            counts["raw"] += 1
            outcome = f"RAW {type(err).__name__}: {str(err)[:100]}"
        try:
            assert_unchanged(model, snap)
        except AssertionError as err:
            counts["changed"] += 1
            outcome += f"; MODEL CHANGED: {err}"
        counts["clips"] += not all(torch.equal(a, b) for a, b in zip(tensors, kept))
        counts["broken"] += not (nn.Module.__call__ is symbolic._orig_module_call
                                 and nn.Module.__getattr__ is symbolic._orig_module_getattr)
        rows.append((name, outcome))
    counts["cases"] = len(cases)
    return counts, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--memory-child", choices=("0", "1"), default=None)
    args = parser.parse_args()
    if args.memory_child is not None:
        print(json.dumps(_memory_child(args.memory_child == "1", args.calls)))
        return
    torch.set_num_threads(max(1, torch.get_num_threads()))
    memory = _memory(args.calls)
    threads = _threads(args.repeats)
    spline = _spline()
    counts, rows = _matrix()
    lines = [
        "## Reliability: memory per call, threads, long splines",
        "",
        f"Machine: {machine()}.",
        "",
        f"| memory, a new r3d_18 object per call ({args.calls} calls, 3x4x32x32) "
        "| growth per call | growth over calls 5..N |",
        "|---|---|---|",
    ]
    for variant, (slope, total) in memory.items():
        label = ("fxcfp's default: after a new plan, collect freed analyzers' graphs, then "
                 "malloc_trim" if variant == "trim" else "without that release")
        lines.append(f"| {label} | {slope:.2f} MiB | {total:.1f} MiB |")
    lines += [
        "",
        "| threads: 4 models (2 in train mode), first and later calls | calls | differ from "
        "sequential | errors | models changed | torch intact | sequential | 4 threads |",
        "|---|---|---|---|---|---|---|---|",
        f"| resnet3d, se, grouped, shuffle x {args.repeats} | {threads['calls']} | "
        f"{threads['mismatches']} | {threads['errors']} | {threads['changed']} | "
        f"{'yes' if threads['intact'] else 'NO'} | {threads['sequential']:.2f} s | "
        f"{threads['threaded']:.2f} s |",
        "",
        "| matrix: the issue's cases, each analysed twice | cases | explained | refused "
        "(FxcfpError) | raw errors | models changed | clips changed | torch broken |",
        "|---|---|---|---|---|---|---|---|",
        f"| weight_norm, spectral_norm, prune, in-place edits, hooks, export, wrappers... | "
        f"{counts['cases']} | {counts['explained']} | {counts['refused']} | {counts['raw']} | "
        f"{counts['changed']} | {counts['clips']} | {counts['broken']} |",
        "",
        "| spline (CPU time) | time |",
        "|---|---|",
    ]
    lines += [f"| {label} | {seconds:.3f} s |" for label, seconds in spline]
    text = "\n".join(lines) + "\n"
    for name, outcome in rows:
        print(f"{name}: {outcome}")
    print(text)
    _write_section(RESULTS, "## Reliability:", text)


if __name__ == "__main__":
    main()
