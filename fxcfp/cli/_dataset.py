"""``fxcfp explain-dataset DIR_OR_CSV --out DIR``: the command line of :mod:`fxcfp.dataset`.

It takes the model, clip and analysis options of ``fxcfp explain`` (one shared argument group)
and runs the same on one process or, under ``torchrun --nproc-per-node N -m fxcfp
explain-dataset ...``, on N (each rank its shard; rank 0 merges the aggregates).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from .._errors import FxcfpError
from ._options import (
    _at_least,
    add_analysis_options,
    add_clip_options,
    add_model_options,
    add_run_options,
)

__all__ = ["register"]

_BATCH = 4
_WORKERS = 2
_SHARE = 0.5


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 1]")
    return value


def register(commands: Any) -> None:
    """Add ``explain-dataset`` to the ``fxcfp`` sub-commands."""
    parser = commands.add_parser(
        "explain-dataset",
        allow_abbrev=False,
        help="explain every clip of a folder or CSV and aggregate per class",
        description="Explain every clip of a folder of videos (labels from class sub-folders) "
        "or a CSV with path,label columns: one saved pyramid per clip, a resumable manifest, "
        "and per class the kernels it relies on (Parquet tables, class pyramids as GraphML, a "
        "report with heat maps). Rerun with the same --out to resume; under torchrun each "
        "process takes its shard.",
    )
    parser.add_argument("source", metavar="DIR_OR_CSV", help="a folder of videos or a CSV file")
    parser.add_argument("--out", metavar="DIR", required=True, help="the output folder")
    add_model_options(parser)
    add_analysis_options(parser)
    add_clip_options(parser)
    parser.add_argument("--batch", type=_at_least(1), default=_BATCH, metavar="N",
                        help=f"clips per forward pass (default {_BATCH})")
    parser.add_argument("--workers", type=_at_least(0), default=_WORKERS, metavar="N",
                        help=f"decode processes per rank (default {_WORKERS}; 0 decodes in "
                        "the analysing process)")
    parser.add_argument("--share", type=_share, default=_SHARE, metavar="S",
                        help="a class pyramid keeps the kernels selected in at least this share "
                        f"of the class's clips (default {_SHARE})")
    parser.add_argument("--maps", metavar="MODE",
                        help="save each pyramid with its layer maps in this mode (e.g. paper)")
    parser.add_argument("--no-labels", action="store_true",
                        help="explain each clip's top class, ignoring labels")
    add_run_options(parser)
    parser.set_defaults(handler=_explain_dataset)


def _explain_dataset(args: argparse.Namespace) -> int:
    import torch  # here, not at import: the parser is built without torch

    from ..dataset._run import DatasetOptions, run_dataset
    from ._spec import load_model

    try:
        import pyarrow  # noqa: F401
    except ImportError as err:
        raise FxcfpError(f"explain-dataset writes Parquet tables and needs pyarrow ({err}). "
                         "Hint: pip install 'fxcfp[dataset]'") from err
    with torch.random.fork_rng(devices=[]):
        # a model with random weights is the same on every rank and every rerun
        torch.manual_seed(0)
        loaded = load_model(args.model, weights=args.weights)
    device = None
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        loaded.model.to(device)
    options = DatasetOptions(
        frames=args.frames if args.frames is not None else loaded.frames,
        size=args.size if args.size is not None else loaded.size, start=args.start,
        normalization=args.normalization or loaded.normalization, threshold=args.threshold,
        max_depth=args.depth, top_k=args.top_k, share=args.share, maps=args.maps,
        use_labels=not args.no_labels)
    started = time.perf_counter()
    result = run_dataset(loaded, args.source, args.out, options, batch_size=args.batch,
                         workers=args.workers, device=device, progress=not args.quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # rank 0 speaks for the run
    print("\n".join([
        f"model      {loaded.name}",
        f"clips      {result.clips}: {result.analysed} analysed now, {result.resumed} finished "
        f"before, {result.skipped} skipped (undecodable)",
        f"speed      {result.clips_per_second:.2f} clips/s over {result.seconds:.1f} s"
        + (f" ({result.steady_clips_per_second:.2f} clips/s after the first batch)"
           if result.steady_clips_per_second > 0 else ""),
        f"wrote      pyramids/, manifest/ and aggregate/ to {args.out} in "
        f"{time.perf_counter() - started:.1f} s",
        f"report     {result.report if result.report else 'none (no clip was analysed)'}",
    ]))
    sys.stdout.flush()
    return 0
