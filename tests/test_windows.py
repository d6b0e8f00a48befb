"""Long videos: windows over the whole video, each explained as one clip would be."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fxcfp
from fxcfp.cli import main
from fxcfp.video import read_clip
from fxcfp.windows import _windows, explain_windows
from tests.dataset_models import tiny
from tests.videos import write_video


@pytest.mark.parametrize(("stride", "starts"), [(4, [0, 4, 8]), (2, [0, 2, 4, 6, 8]),
                                                 (5, [0, 5]), (9, [0, 9])])
def test_windows_start_stride_frames_apart_and_hold_the_right_frames(stride, starts):
    frames = (np.full((1, 1, 3), i, np.uint8) for i in range(13))
    found = list(_windows(frames, 4, stride))
    assert [first for first, _ in found] == starts
    for first, window in found:
        assert window[:, 0, 0, 0].tolist() == list(range(first, first + 4))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("long") / "long.mp4", frames=12, seed=4)


def test_each_window_is_explained_as_its_own_clip(video):
    model = tiny()
    result = explain_windows(model, video, frames=4, size=16, stride=4, batch_size=2,
                             threshold=0.5, levels=None)
    whole = read_clip(video, frames=12, size=16)  # every frame, cropped as the windows are
    assert result.frame_count == 12 and len(result.windows) == 3
    assert result.fps == pytest.approx(8.0)
    for window in result.windows:
        clip = whole.tensor[:, window.first_frame: window.first_frame + 4]
        pyramid = fxcfp.analyze(model, clip, threshold=0.5)
        assert window.target == pyramid.target
        assert window.probability == pytest.approx(pyramid.probability, rel=1e-5)
        assert window.start_s == pytest.approx(window.first_frame / 8.0)
        for level in result.levels:
            np.testing.assert_allclose(window.profiles[level],
                                       pyramid.temporal_profile(level).numpy(), atol=1e-5)
    values, times = result.timeline()
    assert values.shape == (len(result.levels), 12)
    assert times[4] == pytest.approx(0.5)
    conv = list(result.levels).index("conv1")
    # a flat share is 1: each window's row sums to its frame count
    assert values[conv, :4].sum() == pytest.approx(4.0, rel=1e-5)


def test_overlapping_windows_average_where_they_meet(video):
    result = explain_windows(tiny(), video, frames=4, size=16, stride=2, threshold=0.5)
    assert [w.first_frame for w in result.windows] == [0, 2, 4, 6, 8]
    values, _ = result.timeline()
    level = result.levels[-1]
    row = list(result.levels).index(level)
    a, b = result.windows[0].profiles[level], result.windows[1].profiles[level]
    assert values[row, 2] == pytest.approx((a[2] + b[0]) * 4 / 2, rel=1e-5)


def test_a_video_shorter_than_a_window_is_a_clear_error(video):
    with pytest.raises(fxcfp.FxcfpError, match="fewer than one window of frames=16"):
        explain_windows(tiny(), video, frames=16, size=16)
    with pytest.raises(fxcfp.InvalidArgumentError, match="stride must be"):
        explain_windows(tiny(), video, frames=4, size=16, stride=0)


def test_cli_windows_writes_the_timeline(video, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["explain", str(video), "--windows", "--model", "tests.dataset_models:tiny",
                 "--frames", "4", "--size", "16", "--threshold", "0.5", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "3 windows of 4 frames, stride 4" in printed
    data = json.loads((out / "windows.json").read_text())
    assert [w["first_frame"] for w in data["windows"]] == [0, 4, 8]
    report = (out / "report.html").read_text()
    assert "Timeline" in report and "data:image/png;base64," in report
    best = max(data["windows"], key=lambda w: w["probability"])
    saved = fxcfp.load_pyramid(out / "pyramid.fxcfp")
    assert saved.target == best["target"]
    assert saved.probability == pytest.approx(best["probability"])
    code = main(["explain", str(video), "--stride", "2", "--model", "tests.dataset_models:tiny",
                 "--frames", "4", "--size", "16", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "--stride needs --windows" in err


def test_windows_keep_the_model_unchanged(video):
    from tests.models import assert_unchanged, snapshot

    model = tiny().train()
    snap = snapshot(model)
    explain_windows(model, video, frames=4, size=16)
    assert_unchanged(model, snap)
    assert torch.is_grad_enabled()
