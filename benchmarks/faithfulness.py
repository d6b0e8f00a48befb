"""Faithfulness benchmark: do the pyramid's maps show the class's evidence?

In one run: (1) on the synthetic benchmark of :mod:`fxcfp.eval.synthetic` (held-out clips whose
evidence is known, a small residual 3D CNN trained on it), every weighted layer x method x
metric — energy inside the evidence, pointing game, class sensitivity (runner-up class),
cascading randomisation stage by stage, deletion and insertion — as means with 95% bootstrap
intervals over clips; (2) deletion on the demo clip (EfficientNet-Lite0 3D, ImageNet, on
carphone) at the levels the report draws; (3) which of issue 12's targets hold.

Methods: fxcfp's ``paper`` and ``evidence`` maps (and ``evidence+gate`` when ``fxcfp.analyze``
takes ``gate=``), Grad-CAM, gradient x input, mean activation and random maps, all drawn on the
same tensor per layer and upsampled with fxcfp's own upsampling.

Run: ``python benchmarks/faithfulness.py [--quick] [--clips 64] [--deletion-clips 16]
[--retrain] [--no-demo] [--no-write]``; it prints the tables and writes them into ``benchmarks/RESULTS.md``
(its own section). The trained model is cached (``$XDG_CACHE_HOME/fxcfp/eval``).
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import fxcfp  # noqa: E402
import fxcfp.eval as fe  # noqa: E402
from fxcfp.eval.synthetic import (  # noqa: E402
    SyntheticConfig,
    TrainConfig,
    held_out,
    train_model,
)

RESULTS = Path(__file__).with_name("RESULTS.md")
MARKER = "## Faithfulness:"
BASELINES = ("gradcam", "grad_x_input", "activation", "random")
ORDER = ("energy", "pointing", "sensitivity", "randomization", "deletion", "insertion")
# the demo's forward costs about a second on one core: a coarser grid, dense at the top voxels
DEMO_FRACTIONS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
LABELS = {
    "energy": "energy inside the evidence (higher is better)",
    "pointing": "pointing game per frame (higher is better)",
    "sensitivity": "class sensitivity: Spearman of the maps of the class and the runner-up "
                   "(lower is better)",
    "deletion": "deletion AUC, blurred fill (lower is better)",
    "insertion": "insertion AUC, into the blurred clip (higher is better)",
}


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({cpu})"
    return (f"{device}, {os.cpu_count()} cores, {torch.get_num_threads()} thread(s), torch "
            f"{torch.__version__}, Python {platform.python_version()}")


def methods() -> tuple[object, ...]:
    found: list[object] = ["paper", "evidence"]
    if "gate" in inspect.signature(fxcfp.analyze).parameters:
        found.append(fe.PyramidMethod("evidence+gate", "evidence", (("gate", "evidence"),)))
    return (*found, *BASELINES)


def _label(metric: str) -> str:
    if metric.startswith("randomization:"):
        stage = metric.split(":", 1)[1]
        return (f"cascading randomisation, re-initialised down to `{stage}`: Spearman with the "
                "trained model's map (lower is better)")
    return LABELS.get(metric, metric)


def _tables(result: fe.Comparison) -> list[str]:
    out = []
    metrics = sorted(result.metrics, key=lambda m: (ORDER.index(m.split(":")[0]),
                                                    result.metrics.index(m)))
    for metric in metrics:
        out.append(f"**{_label(metric)}**\n\n{result.to_markdown(metric)}\n")
    return out


def _mean(result: fe.Comparison, layer: str, method: str, metric: str) -> float:
    values = [v for v in result.values(layer, method, metric) if math.isfinite(v)]
    return sum(values) / len(values) if values else math.nan


def _targets(truth: fe.Comparison, cascade: fe.Comparison,
             deletion_rows: list[tuple[str, dict[str, float]]] | None,
             classifier: str, model: torch.nn.Module) -> list[str]:
    """Issue 12's targets, checked for each of fxcfp's map methods."""
    conv = [name for name in truth.layers
            if isinstance(model.get_submodule(name), torch.nn.modules.conv._ConvNd)]
    first_stage = next((m for m in cascade.metrics if m.startswith("randomization:")), None)
    lines = ["| target | " + " | ".join(m for m in truth.methods if m in _ours(truth)) + " |",
             "|---|" + "---|" * len(_ours(truth))]

    def row(name: str, cells: list[str]) -> None:
        lines.append(f"| {name} | " + " | ".join(cells) + " |")

    for metric, label in (("energy", "energy"), ("pointing", "pointing game")):
        cells = []
        for method in _ours(truth):
            ratios = [_mean(truth, layer, method, metric) /
                      max(_mean(truth, layer, "gradcam", metric), 1e-12) for layer in conv]
            worst, average = min(ratios), sum(ratios) / len(ratios)
            ok = worst >= 0.9 and average >= 1.2
            cells.append(f"{'yes' if ok else 'NO'}: min {worst:.2f}x, mean {average:.2f}x")
        row(f"{label} >= 0.9x Grad-CAM at every conv layer and >= 1.2x on average", cells)
    if first_stage:
        cells = []
        for method in _ours(truth):
            worst = max(_mean(cascade, layer, method, first_stage) for layer in conv)
            cells.append(f"{'yes' if worst <= 0.3 else 'NO'}: max {worst:.3f}")
        row(f"randomising only the classifier ({first_stage.split(':')[1]}): rank corr <= 0.3 at "
            "every conv layer", cells)
    if "sensitivity" in truth.metrics:
        cells = []
        for method in _ours(truth):
            values = [_mean(truth, layer, method, "sensitivity") for layer in truth.layers]
            values = [v for v in values if math.isfinite(v)]
            worst = max(values) if values else math.nan
            cells.append(f"{'yes' if worst <= 0.5 else 'NO'}: max {worst:.3f}")
        row("class sensitivity <= 0.5 at every layer", cells)
    if "energy" in truth.metrics:
        cells = []
        for method in _ours(truth):
            values = truth.values(classifier, method, "energy")
            blank = sum(v == 0 for v in values)
            ours, cam = (_mean(truth, classifier, method, "energy"),
                         _mean(truth, classifier, "gradcam", "energy"))
            ok = blank == 0 and ours >= cam
            cells.append(f"{'yes' if ok else 'NO'}: {blank} blank, {ours:.3f} vs CAM {cam:.3f}")
        row(f"class level ({classifier}) never blank, energy >= CAM's", cells)
    if deletion_rows:
        for rival, label in (("random", "better than random"), ("gradcam", ">= Grad-CAM")):
            cells = []
            for method in _ours(truth):
                if method not in deletion_rows[0][1]:
                    cells.append("–")
                    continue
                wins = sum(aucs[method] < aucs[rival] if rival == "random"
                           else aucs[method] <= aucs[rival] for _, aucs in deletion_rows)
                ok = wins > len(deletion_rows) / 2
                cells.append(f"{'yes' if ok else 'NO'}: {wins}/{len(deletion_rows)} levels")
            row(f"demo clip deletion {label} at most levels drawn", cells)
    return lines


def _ours(result: fe.Comparison) -> list[str]:
    return [m for m in result.methods if m not in BASELINES]


def demo_deletion(levels: int, size: int, random_draws: int, chosen: tuple[object, ...]
                  ) -> tuple[str, list[tuple[str, dict[str, float]]]]:
    """Deletion AUC per level the report draws, on the demo clip."""
    from fxcfp._maps import upsample
    from fxcfp.data import imagenet_labels, sample_video
    from fxcfp.render.pyramid_views import pyramid_levels
    from fxcfp.video import read_clip
    from fxcfp.zoo.efficientnet_lite import efficientnet_lite0_3d

    model = efficientnet_lite0_3d(pretrained=True, temporal_padding="replicate").eval()
    clip = read_clip(sample_video("carphone_pristine"), frames=16, size=size,
                     normalization="efficientnet_lite").tensor
    pyramid = fxcfp.analyze(model, clip, threshold=0.6)
    drawn = [level.name for level in pyramid_levels(pyramid, levels, where="benchmark")]
    low = fe.saliency_maps(model, clip, methods=chosen, layers=drawn, pyramid=pyramid,
                           upsample=False)
    size3 = tuple(clip.shape[1:])
    names = [m if isinstance(m, str) else m.name for m in chosen]
    rows = []
    for layer in drawn:
        saliencies = [upsample(low[layer][m], size3) for m in names]
        shape = low[layer]["random"].shape
        extra = [upsample(torch.rand(shape, generator=torch.Generator().manual_seed(draw)), size3)
                 for draw in range(1, random_draws)]
        curves = fe.metrics.curves("benchmark", model, clip, pyramid.target,
                                   saliencies + extra, fractions=DEMO_FRACTIONS,
                                   baseline=None, insert=False, seed=0, batch=4)
        aucs = {m: c.auc for m, c in zip(names, curves)}
        if "random" in aucs:  # the mean of several random maps, so one lucky draw is no verdict
            draws = [curves[names.index("random")]] + curves[len(names):]
            aucs["random"] = sum(c.auc for c in draws) / len(draws)
        rows.append((layer, aucs))
    label = imagenet_labels()[pyramid.target]
    lines = [f"Demo clip: EfficientNet-Lite0 3D (ImageNet) on carphone, 16x{size}x{size}, class "
             f"{label!r} (p={pyramid.probability:.3f}), threshold 0.6, full depth; {len(drawn)} "
             f"levels as the report spreads them; random: mean of {random_draws} draws. "
             f"Deletion AUC over fractions {DEMO_FRACTIONS}, blurred fill, lower is better.", "",
             "| level | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for layer, aucs in rows:
        best = min(aucs.values())
        lines.append(f"| {layer} | " + " | ".join(
            (f"**{aucs[m]:.3f}**" if aucs[m] == best else f"{aucs[m]:.3f}") for m in names) + " |")
    return "\n".join(lines), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="16 clips, 4 for deletion, a 112-pixel demo clip at 4 levels")
    parser.add_argument("--clips", type=int, default=None, help="held-out clips (default 64)")
    parser.add_argument("--deletion-clips", type=int, default=None,
                        help="of them, the clips deletion and insertion run on (default 16)")
    parser.add_argument("--randomization-clips", type=int, default=None,
                        help="of them, the clips cascading randomisation runs on (default 16)")
    parser.add_argument("--demo-size", type=int, default=None,
                        help="side of the demo clip (default 160, as README's example)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--retrain", action="store_true",
                        help="train the model again (and time it) even when it is cached")
    parser.add_argument("--no-demo", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clips = args.clips or (16 if args.quick else 64)
    deletion_clips = min(clips, args.deletion_clips or (4 if args.quick else 16))
    random_clips = min(clips, args.randomization_clips or (4 if args.quick else 16))
    start = time.perf_counter()

    data, train = SyntheticConfig(), TrainConfig()
    trained = train_model(data, train, cache_dir=args.cache_dir, retrain=args.retrain)
    test = held_out(data, train, count=clips)
    chosen = methods()
    kept = test.labels.tolist()
    print(f"model: held-out accuracy {trained.accuracy:.3f} on {train.test_clips} clips, "
          f"trained in {trained.train_seconds:.0f} s wall"
          + (f" / {trained.train_cpu_seconds:.0f} s CPU" if trained.train_cpu_seconds else "")
          + (" (cached)" if trained.cached else ""), flush=True)
    truth = fe.compare(trained.model, test.clips, test.masks, classes=kept, methods=chosen,
                       metrics=("energy", "pointing", "sensitivity"))
    print(f"ground truth and class sensitivity: {time.perf_counter() - start:.0f} s", flush=True)
    cascade = fe.compare(trained.model, test.clips[:random_clips], classes=kept[:random_clips],
                         methods=chosen, metrics=("randomization",))
    print(f"cascading randomisation: {time.perf_counter() - start:.0f} s", flush=True)
    curves = fe.compare(trained.model, test.clips[:deletion_clips], classes=kept[:deletion_clips],
                        methods=chosen, metrics=("deletion", "insertion"))
    print(f"deletion and insertion: {time.perf_counter() - start:.0f} s", flush=True)
    demo, rows = ("", None)
    if not args.no_demo:
        size, levels = (112, 4) if args.quick else (160, 8)
        size = args.demo_size or size
        demo, rows = demo_deletion(levels, size, 1 if args.quick else 3, chosen)
        print(f"demo deletion: {time.perf_counter() - start:.0f} s", flush=True)

    accuracy = (f"held-out accuracy {trained.accuracy:.3f} ({train.test_clips} clips), trained "
                f"in {trained.train_seconds:.0f} s wall"
                + (f", {trained.train_cpu_seconds:.0f} s CPU" if trained.train_cpu_seconds
                   else "") + " on one thread")
    classifier = truth.layers[-1]
    text = "\n".join([
        f"{MARKER} fxcfp's maps against Grad-CAM, gradient x input, mean activation and random",
        "",
        f"Machine: {machine()}. Total {time.perf_counter() - start:.0f} s"
        + (" (quick mode)" if args.quick else "") + ".",
        "",
        f"Synthetic benchmark (`fxcfp.eval.synthetic`): 6 classes = shape (square, plus) x "
        f"motion (right, left, down) of one target among a static square, a static plus and a "
        f"moving bar of the same colour; clips 3x{data.frames}x{data.size}x{data.size}; "
        f"SmallResNet3d (stem, 3 residual blocks, pool, linear), {accuracy}. {clips} held-out "
        f"clips (cascading randomisation: the first {random_clips}; deletion and insertion: the "
        f"first {deletion_clips}), the true class explained; "
        "mean [95% bootstrap interval] over clips; every map drawn on the layer's map node and "
        "upsampled with fxcfp's upsampling. A rank correlation with a flat map is undefined "
        "and left out.",
        "",
        "### Targets of issue 12",
        "",
        *_targets(truth, cascade, rows, classifier, trained.model),
        "",
        "### Synthetic set, layer x method",
        "",
        *_tables(truth),
        *_tables(cascade),
        *_tables(curves),
        *(["### Demo clip, deletion per level", "", demo, ""] if demo else []),
    ])
    print()
    print(text)
    if not args.no_write:
        _write_section(RESULTS, MARKER, text + "\n")


def _write_section(path: Path, marker: str, text: str) -> None:
    """Replace the section starting with ``marker`` (up to the next ``## ``) or append it."""
    old = path.read_text() if path.exists() else "# Benchmark results\n\n"
    begin = old.find(marker)
    if begin < 0:
        new = old.rstrip() + "\n\n" + text
    else:
        end = old.find("\n## ", begin + 1)
        new = old[:begin] + text + ("" if end < 0 else old[end:])
    path.write_text(new)


if __name__ == "__main__":
    main()
