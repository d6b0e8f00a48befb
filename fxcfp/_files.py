"""Writing result files safely: whole or not at all.

Every file fxcfp writes (GraphML, JSON, saved pyramids, reports, manifests) goes through
:func:`atomic_write`: the content is written to a temporary file beside the target and renamed
over it only once complete, so a write that fails half way (a full disk, an exception while
serialising, an interrupt) leaves the previous file, or none, never a truncated one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "dump_json", "strict_json"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], *, binary: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; rename it to ``path`` on success.

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_write(target) as file:
        ...     _ = file.write("whole")
        >>> target.read_text()
        'whole'
    """
    target = Path(path)
    # same folder, so the rename is atomic (one file system)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp",
                                         dir=target.parent if str(target.parent) else ".")
    try:
        # mkstemp makes the file private (0600); a result file gets the usual mode instead
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        file: IO[Any] = (os.fdopen(handle, "wb") if binary
                         else os.fdopen(handle, "w", encoding="utf-8"))
        with file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def strict_json(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN or Infinity;
    strict parsers reject Python's ``NaN`` token)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(item) for item in value]
    return value


def dump_json(value: Any, path: str | os.PathLike[str], *, indent: int | None = 1) -> None:
    """Write ``value`` as strict JSON (``allow_nan=False``), atomically."""
    with atomic_write(path) as file:
        json.dump(strict_json(value), file, indent=indent, allow_nan=False)
