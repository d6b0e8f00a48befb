"""The command line end to end: real models on the bundled clip, and every way input can be bad.

Runs ``fxcfp.cli.main`` in-process (fast: torch is imported once) and twice as ``python -m fxcfp``
to prove the entry point. Bad input must end with one line on stderr, ``fxcfp: error: ...``, exit
status 2 and no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

from fxcfp.cli import main
from fxcfp.cli._explain import _clear_levels, _resolve_class
from fxcfp.cli._spec import LoadedModel, load_model
from fxcfp.data import sample_video

VIDEO = str(sample_video())


class TinyNet(nn.Module):
    """Two 3D convolutions and a classifier: the smallest model the CLI can explain."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv3d(6, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(x.mean((2, 3, 4)))


def tiny_net() -> nn.Module:
    """The factory ``--model test_cli:tiny_net`` names."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return TinyNet().eval()


TINY = f"{__name__}:tiny_net"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_error(code: int, out: str, err: str, words: str) -> None:
    assert code == 2, (out, err)
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("fxcfp: error: "), err
    assert "Traceback" not in err
    assert words in err, err


def export_tiny(path: Path, frames: int, size: int) -> Path:
    program = torch.export.export(tiny_net(), (torch.zeros(1, 3, frames, size, size),))
    torch.export.save(program, str(path))
    return path


# --- end to end ----------------------------------------------------------------------------------


def test_torchvision_model_writes_the_report_graph_and_overlays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(
        ["explain", VIDEO, "--model", "torchvision:r3d_18", "--frames", "4", "--size", "64",
         "--class", "Abseiling", "--depth", "2", "--top-k", "all", "--levels", "3",
         "--kernels", "2", "--out", str(out)], capsys)
    assert code == 0, stderr
    assert stderr == ""  # no progress bars when stderr is not a terminal
    lines = stdout.splitlines()
    assert lines[0] == "model      torchvision:r3d_18 (random weights: pass --weights FILE for " \
                       "trained ones)"
    assert "4 frames spread over 0.00-3.97 s (frames 0..119), 64 x 64, normalization " \
           "kinetics" in lines[1]
    assert lines[3].startswith("explained  abseiling (class 0), p=")
    assert "as asked; threshold 0.6, depth 2, top-k all" in lines[3]
    # the pyramid's summary, then where everything went
    assert any(line.startswith("class 0 (p=") and "max_depth 2" in line for line in lines)
    assert any(line.startswith("fc ") and "1/400" in line for line in lines)
    assert lines[-1] == f"report     {out / 'report.html'}"
    # at most 3 levels; one whose kernels all lie at max_depth has no map to draw
    overlays = len(list((out / "levels").glob("*.mp4")))
    assert 1 <= overlays <= 3 and f"{overlays} level overlays" in lines[-2]

    html = (out / "report.html").read_text(encoding="utf-8")
    assert "abseiling" in html and "Class Feature Pyramid" in html
    for name in ("pyramid.png", "contact_sheet.png"):
        assert (out / name).stat().st_size > 0
    assert len(list((out / "levels").glob("*.webp"))) == overlays
    graph = nx.read_graphml(out / "pyramid.graphml")
    data = json.loads((out / "pyramid.json").read_text(encoding="utf-8"))
    assert graph.graph["target"] == 0 and graph.graph["max_depth"] == 2
    assert graph.number_of_nodes() == len(data["nodes"]) > 1
    assert graph.number_of_edges() == len(data["edges"])
    # what the files explain travels with them: the report's header and pyramid.json agree
    about = data["fxcfp"]
    assert about["model"] == {"spec": "torchvision:r3d_18", "name": "torchvision:r3d_18",
                              "class": "torchvision.models.video.resnet.VideoResNet",
                              "kind": "torchvision", "dims": 3}
    assert about["weights"] == {"trained": False, "source": "random (seed 0)"}
    assert about["input"]["file"] == "carphone_pristine.mp4" and about["input"]["frames"] == [
        0, 40, 79, 119]
    assert about["input"]["seconds"] == [0.0, round(119 / about["input"]["fps"], 3)]
    # the weights' own transforms (resize 128 x 171, crop 112), scaled to --size 64
    assert about["preprocessing"]["resize"] == [73, 98] and about["preprocessing"]["crop"] == 64
    assert "R3D_18_Weights.KINETICS400_V1.transforms()" in about["preprocessing"]["source"]
    assert about["options"]["threshold"] == 0.6 and about["options"]["depth"] == 2
    assert about["versions"]["torch"] == torch.__version__ and about["device"] == "cpu"
    assert set(about["timings"]) == {"load", "read", "analyze", "render", "total"}
    assert "random weights — not an explanation of a trained model" in html
    assert "torchvision.models.video.resnet.VideoResNet" in html


def test_default_model_explains_the_bundled_clip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default --out is relative: fxcfp-out/<video stem>
    code, stdout, stderr = run(
        ["explain", "--frames", "4", "--size", "64", "--class", "windsor TIE", "--levels", "2",
         "--kernels", "2"], capsys)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == "model      EfficientNet-Lite0 (ImageNet) inflated to 3D"
    assert lines[1].startswith("clip       carphone_pristine.mp4, 4 frames")
    assert lines[1].endswith("normalization efficientnet_lite")
    assert lines[2].startswith("top 5      ")  # ImageNet names, not indices
    assert not lines[2].split()[2][0].isdigit()
    assert lines[3].startswith("explained  Windsor tie (class 906), p=")
    # the whole depth, down to the clip
    assert any(line.startswith("_conv_stem ") for line in lines)
    assert any(line.startswith("input ") and "3/3" in line for line in lines)
    report = Path("fxcfp-out") / "carphone_pristine" / "report.html"
    assert lines[-1] == f"report     {report}"
    assert report.is_file() and (report.parent / "pyramid.graphml").is_file()
    html = report.read_text(encoding="utf-8")
    assert "Windsor tie" in html and "random weights" not in html
    # the default's weights file, named and hashed
    about = json.loads((report.parent / "pyramid.json").read_text(encoding="utf-8"))["fxcfp"]
    assert about["weights"]["file"] == "efficientnet-lite0-57934424.pth"
    assert len(about["weights"]["sha256"]) == 64 and about["weights"]["sha256"] in html


def test_contrast_and_map_mode_are_said_in_the_output_and_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = run(
        ["explain", VIDEO, "--model", TINY, "--frames", "4", "--size", "32", "--class", "2",
         "--contrast", "runner-up", "--maps", "paper", "--levels", "2", "--kernels", "2",
         "--out", str(out)], capsys)
    assert code == 0, stderr
    lines = stdout.splitlines()
    contrast = next(line for line in lines if line.startswith("contrast   "))
    assert contrast.startswith("contrast   and not class ")
    assert "maps       paper (SPEC's maps; --maps evidence weights them by the score)" in lines
    assert any(line.startswith("class 2 and not class ") for line in lines)
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "drawn: <strong>paper maps</strong>" in html and 'id="contrast"' in html
    code, stdout, _ = run(
        ["explain", VIDEO, "--model", TINY, "--frames", "4", "--size", "32", "--levels", "2",
         "--kernels", "2", "--out", str(out)], capsys)
    assert code == 0
    assert "maps       evidence (--maps paper draws SPEC's maps)" in stdout.splitlines()
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "drawn: <strong>evidence maps</strong>" in html and 'id="contrast"' not in html


def test_import_spec_reads_consecutive_frames_with_a_chosen_normalization(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, stdout, stderr = run(
        ["explain", VIDEO, "--model", TINY, "--frames", "3", "--size", "16", "--start", "1",
         "--normalization", "imagenet", "--class", "2", "--out", str(tmp_path)], capsys)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[0] == f"model      {TINY}"  # a factory's weights: trained or not, unknown
    assert "3 frames from 1.00 s (frames 30..32), 16 x 16, normalization imagenet" in lines[1]
    assert lines[3].startswith("explained  class 2, p=")  # no class names: indices
    assert (tmp_path / "report.html").is_file()


def test_python_m_fxcfp_runs_an_exported_program(tmp_path: Path) -> None:
    model = export_tiny(tmp_path / "tiny.pt2", frames=2, size=16)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "fxcfp", "explain", VIDEO, "--model", str(model), "--out",
         str(out)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # frames and size default to the shape the program was exported with
    assert "2 frames spread over" in lines[1] and "16 x 16" in lines[1]
    assert lines[-1] == f"report     {out / 'report.html'}"
    assert (out / "report.html").is_file() and (out / "pyramid.json").is_file()


def test_python_m_fxcfp_reports_bad_input_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fxcfp", "explain", str(tmp_path / "missing.mp4"), "--model",
         "pytorchvideo:x3d_s"], capture_output=True, text=True, timeout=300, check=False)
    # the zoo's import-time deprecation warnings must not reach the person either
    assert_error(done.returncode, done.stdout, done.stderr, "VIDEO")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["explain", "{tmp}/missing.mp4", "--model", "torchvision:r3d_18"],
         "VIDEO '{tmp}/missing.mp4': no such file. Hint: pass the path of a video"),
        (["explain", "{tmp}", "--model", "torchvision:r3d_18"], "VIDEO '{tmp}' is a folder"),
        (["explain", VIDEO, "--model", "torchvision:r3d_18", "--weights", "{tmp}/w.pth"],
         "--weights '{tmp}/w.pth': no such file. Hint: pass a state dict"),
        (["explain", VIDEO, "--model", "torchvision:r3d_18", "--weights", "{tmp}"],
         "--weights '{tmp}' is a folder, not a file"),
        (["explain", VIDEO, "--model", "{tmp}/net.pt2"], "--model '{tmp}/net.pt2': no such file"),
        (["explain", VIDEO, "--model", "torchvision:r3d_18", "--out", "{tmp}/file.txt"],
         "--out '{tmp}/file.txt' is a file, not a folder"),
        (["explain", VIDEO, "--model", "torchvision:r3d_18", "--out", "{tmp}/file.txt/sub"],
         "--out '{tmp}/file.txt/sub' cannot be written"),
    ],
)
def test_bad_paths_fail_in_two_seconds_before_any_model_is_built(
    argv: list[str], words: str, tmp_path: Path
) -> None:
    (tmp_path / "file.txt").write_text("a file where a folder should be\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    probe = ("import sys, time; from fxcfp.cli import main; start = time.perf_counter(); "
             f"code = main({argv!r}); "
             "print(code, 'torch' in sys.modules, round(time.perf_counter() - start, 3))")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, check=False)
    seconds = time.perf_counter() - started
    assert done.stderr.startswith("fxcfp: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert words.replace("{tmp}", str(tmp_path)) in done.stderr
    code, torch_loaded, _ = done.stdout.split()
    # no model was built: torch itself was never imported
    assert code == "2" and torch_loaded == "False"
    assert seconds < 2.0, f"{seconds:.2f} s for a bad path"
    assert not (tmp_path / "file.txt" / "sub").exists()


def test_a_failed_run_leaves_no_empty_out_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "new" / "out"
    assert_error(*run(["explain", VIDEO, "--model", "torchvision:r3d_19", "--out", str(out)],
                      capsys), "did you mean r3d_18")
    assert not (tmp_path / "new").exists()


def test_options_are_never_abbreviated(capsys: pytest.CaptureFixture[str]) -> None:
    # --frame is not --frames: argparse's abbreviations would take it silently
    assert_error(*run(["explain", "--frame", "8"], capsys), "unrecognized arguments: --frame")
    assert_error(*run(["expl"], capsys), "invalid choice: 'expl'")


def test_an_image_model_explains_a_png_and_a_still_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    from fxcfp.video import read_clip

    picture = tmp_path / "carphone.png"
    Image.fromarray(read_clip(VIDEO, frames=1, size=96).frames[0]).save(picture)
    code, stdout, stderr = run(
        ["explain", str(picture), "--model", "torchvision:resnet18", "--size", "32", "--depth",
         "3", "--levels", "2", "--kernels", "2", "--out", str(tmp_path / "png")], capsys)
    assert code == 0, stderr
    lines = stdout.splitlines()
    assert lines[1] == "image      carphone.png, a still image, 32 x 32, normalization imagenet"
    assert lines[3].startswith("explained  ")  # ImageNet names from the weights' enum
    html = (tmp_path / "png" / "report.html").read_text(encoding="utf-8")
    assert "(image model)" in html and "<video" not in html and "a still image" in html
    about = json.loads((tmp_path / "png" / "pyramid.json").read_text())["fxcfp"]
    assert about["model"]["dims"] == 2 and about["input"]["kind"] == "image"
    # resize 256 then crop 224 (ResNet18_Weights.IMAGENET1K_V1.transforms()), scaled to 32
    assert about["preprocessing"]["resize"] == 37
    # a timm model on a video reads one still frame
    code, stdout, stderr = run(
        ["explain", VIDEO, "--model", "timm:resnet18", "--size", "32", "--start", "1", "--depth",
         "2", "--levels", "1", "--kernels", "2", "--out", str(tmp_path / "still")], capsys)
    assert code == 0, stderr
    assert stdout.splitlines()[1].startswith(
        "image      carphone_pristine.mp4, frame 30 at 1.00 s, 32 x 32")
    assert_error(*run(["explain", VIDEO, "--model", "timm:resnet18", "--frames", "4"], capsys),
                 "--frames 4: timm:resnet18 is an image model and reads one frame")
    assert_error(*run(["explain", str(picture), "--start", "1"], capsys),
                 "--start and --frames do not apply to the image 'carphone.png'")


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ([], "choose a command: explain"),
        (["explain", "--bogus"], "unrecognized arguments: --bogus"),
        (["explain", "--threshold", "1.5"], "argument --threshold: 1.5 is outside [0, 1]"),
        (["explain", "--threshold", "-0.1"], "argument --threshold: -0.1 is outside [0, 1]"),
        (["explain", "--threshold", "nan"], "argument --threshold: nan is not a finite number"),
        (["explain", "--start", "inf"], "argument --start: inf is not a finite number"),
        (["explain", "--threshold", "high"], "'high' is not a number"),
        (["explain", "--depth", "-1"], "argument --depth: -1 is below 0 (use 'none'"),
        (["explain", "--top-k", "0"], "argument --top-k: 0 is below 1 (use 'all'"),
        (["explain", "--frames", "0"], "argument --frames: 0 is below 1"),
        (["explain", "--size", "2.5"], "'2.5' is not an integer"),
        (["explain", "--start", "-1"], "argument --start: -1 is below 0"),
        (["explain", "--model", "torchvision:r3d_19"], "did you mean r3d_18"),
        (["explain", "--model", "pytorchvideo:x3d_q"], "has no model 'x3d_q'; did you mean x3d_s"),
        (["explain", "--model", "no_such_package_xyz.models:build"],
         "cannot import 'no_such_package_xyz.models'"),
        (["explain", "--model", "fxcfp.zoo:nothing"], "fxcfp.zoo has no attribute 'nothing'"),
        (["explain", "--model", "fxcfp.data:sample_video_names"],
         "returned a list, not a torch.nn.Module"),
        (["explain", "--model", "not a spec"], "unknown model spec 'not a spec'"),
        (["explain", "--model", "missing.pt2"], "--model 'missing.pt2': no such file"),
        (["explain", "--class", "1000"], "--class 1000 is out of range; the model has 1000 "
         "classes (0..999)"),
        (["explain", "--class", "-1"], "--class -1 is out of range"),
        (["explain", "--class", "windsor tye"], "did you mean 'Windsor tie'"),
        (["explain", "--class", "qwertyuiop"], "pass a class index 0..999 or an exact name"),
        (["explain", "--model", TINY, "--class", "cat"], "this model has no class names"),
        (["explain", "--maps", "gradcam"], "argument --maps: invalid choice: 'gradcam'"),
        (["explain", "--contrast", "1000"], "--contrast 1000 is out of range; the model has "
         "1000 classes"),
        (["explain", "--model", TINY, "--contrast", "dog"],
         "--contrast 'dog': this model has no class names"),
        (["explain", "--model", TINY, "--frames", "2", "--size", "16", "--class", "1",
          "--contrast", "1"], "contrast=1 is the class explained (cls=1)"),
        (["explain", "--model", "torchvision:r3d_18", "--weights", "missing.pth"],
         "--weights 'missing.pth': no such file"),
        (["explain", "--start", "100", "--frames", "1", "--size", "16"], "past the end"),
        (["explain", "--normalization", "sepia", "--frames", "1", "--size", "16"],
         "unknown normalization 'sepia'"),
    ],
)
def test_bad_arguments_end_in_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_error(*run(argv, capsys), words)


def test_bad_files_end_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    assert_error(*run(["explain", str(tmp_path / "missing.mp4")], capsys),
                 "VIDEO '" + str(tmp_path / "missing.mp4") + "': no such file")
    assert_error(*run(["explain", str(text)], capsys), "cannot decode")
    assert_error(*run(["explain", "--model", str(text)], capsys),
                 "as a TorchScript model")
    garbage = tmp_path / "garbage.pt2"
    garbage.write_bytes(b"\x00" * 64)
    assert_error(*run(["explain", "--model", str(garbage)], capsys),
                 "as a torch.export program")
    assert_error(*run(["explain", "--model", "torchvision:r3d_18", "--weights", str(text)],
                      capsys), "cannot read")


def test_weights_that_do_not_fit_end_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "tiny.pth"
    torch.save(tiny_net().state_dict(), weights)
    assert_error(*run(["explain", "--model", "torchvision:r3d_18", "--weights", str(weights)],
                      capsys), "does not fit torchvision:r3d_18: keys")
    model = export_tiny(tmp_path / "tiny.pt2", frames=2, size=16)
    assert_error(*run(["explain", "--model", str(model), "--weights", str(weights)], capsys),
                 "--weights does not apply")


def test_weights_load_into_a_builder(tmp_path: Path) -> None:
    weights = tmp_path / "tiny.pth"
    state = {k: torch.full_like(v, 0.5) for k, v in tiny_net().state_dict().items()}
    # a training checkpoint saved from DataParallel
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, weights)
    loaded = load_model(TINY, weights=weights)
    assert loaded.trained is True
    assert all(torch.equal(v, state[k]) for k, v in loaded.model.state_dict().items())


def test_models_fail_in_one_line_on_what_they_cannot_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = export_tiny(tmp_path / "tiny.pt2", frames=2, size=16)
    assert_error(*run(["explain", "--model", str(model), "--frames", "3", "--out",
                       str(tmp_path / "a")], capsys), "failed on 3 frames of 16 x 16")
    script = tmp_path / "tiny.ts"
    with warnings.catch_warnings():  # torch deprecates scripting; users still have such files
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(tiny_net()).save(str(script))
    assert_error(*run(["explain", "--model", str(script), "--frames", "2", "--size", "16",
                       "--out", str(tmp_path / "b")], capsys),
                 "cannot explain the TorchScript model")
    assert_error(*run(["explain", "--model", TINY, "--class", "7", "--frames", "2", "--size",
                       "16", "--out", str(tmp_path / "c")], capsys),
                 "cls=7 is out of range; the model has 5 classes")


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("fxcfp ")
    code, out, _ = run(["explain", "--help"], capsys)
    assert code == 0 and "--model SPEC" in out and "torchvision:NAME" in out


# --- pieces ------------------------------------------------------------------------------------


def test_class_names_match_without_case_or_underscores() -> None:
    labels = ("abseiling", "air drumming", "crane", "Crane", "Windsor tie")
    assert _resolve_class(None, labels) is None
    assert _resolve_class("AIR_drumming", labels) == 1
    assert _resolve_class(" windsor  tie ", labels) == 4
    assert _resolve_class("4", labels) == 4
    assert _resolve_class("17", None) == 17  # range checked by fxcfp.analyze
    with pytest.raises(ValueError, match=r"names 2 classes \(2, 3\); pass the index"):
        _resolve_class("crane", labels)
    with pytest.raises(ValueError, match="did you mean 'air drumming'"):
        _resolve_class("air drums", labels)


def test_preprocessing_follows_the_weights_own_transforms() -> None:
    r3d = load_model("torchvision:r3d_18")
    # R3D_18_Weights.KINETICS400_V1.transforms(): resize to 128 x 171, centre crop 112
    assert (r3d.resize, r3d.size, r3d.normalization, r3d.dims) == ((128, 171), 112, "kinetics", 3)
    assert r3d.resize_for(64) == (73, 98)
    resnet = load_model("torchvision:resnet50")
    # ResNet50_Weights.IMAGENET1K_V2: short side 232, crop 224
    assert (resnet.resize, resnet.size, resnet.dims, resnet.frames) == (232, 224, 2, 1)
    assert resnet.labels is not None and resnet.labels[0] == "tench"
    vit = load_model("timm:resnet18")
    # timm's data config: crop_pct 0.95, bicubic
    assert (vit.resize, vit.size, vit.interpolation, vit.kind) == (235, 224, "bicubic", "timm")
    with pytest.raises(ValueError, match="timm has no model 'resnet19'; did you mean"):
        load_model("timm:resnet19")


def test_model_specs_say_what_their_family_reads() -> None:
    default = load_model(None)
    assert (default.kind, default.normalization, default.frames, default.size) == (
        "default", "efficientnet_lite", 16, 160)
    assert default.labels is not None and default.labels[906] == "Windsor tie"
    assert not default.model.training
    x3d = load_model("pytorchvideo:x3d_s")
    assert (x3d.normalization, x3d.frames, x3d.size, len(x3d.labels)) == (
        "pytorchvideo", 13, 160, 400)
    # random weights, but the same on every run
    again = load_model("pytorchvideo:x3d_s")
    assert all(torch.equal(a, b) for a, b in zip(x3d.model.state_dict().values(),
                                                 again.model.state_dict().values()))


def test_slowfast_reads_two_pathways() -> None:
    loaded = LoadedModel(nn.Identity(), "slowfast", "pytorchvideo", "pytorchvideo", None, 32,
                         224, trained=False, slowfast_alpha=4)
    clip = torch.arange(16.0).view(1, 16, 1, 1).expand(3, 16, 2, 2)
    slow, fast = loaded.inputs(clip)
    assert fast is clip and slow[0, :, 0, 0].tolist() == [0.0, 5.0, 10.0, 15.0]
    frames = np.arange(16, dtype=np.uint8)[:, None, None, None] * np.ones((16, 2, 2, 3), np.uint8)
    slow_frames, fast_frames = loaded.pictures(frames)
    assert slow_frames[:, 0, 0, 0].tolist() == [0, 5, 10, 15] and fast_frames is frames


def test_a_rerun_replaces_the_level_overlays_and_keeps_other_files(tmp_path: Path) -> None:
    levels = tmp_path / "levels"
    (levels / "03_layer1.conv").mkdir(parents=True)
    (levels / "03_layer1.conv" / "frame_000.png").write_bytes(b"png")
    (levels / "notes").mkdir()
    (levels / "notes" / "frame_000.png").write_bytes(b"png")
    for name in ("03_layer1.conv.gif", "03_layer1.conv.mp4", "03_layer1.conv.webp", "mine.gif",
                 "03_x.txt"):
        (levels / name).write_bytes(b"x")
    _clear_levels(levels)
    assert sorted(p.name for p in levels.iterdir()) == ["03_x.txt", "mine.gif", "notes"]
    _clear_levels(tmp_path / "absent")  # nothing to clear


def test_the_parser_default_map_mode_is_the_library_default() -> None:
    from fxcfp._evidence import DEFAULT_MAPS as LIBRARY
    from fxcfp.cli import DEFAULT_MAPS

    assert DEFAULT_MAPS == LIBRARY
