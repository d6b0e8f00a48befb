"""The synthetic benchmark: masks mark the moving target, generation is deterministic, the
trained model is cached under its configuration."""

from __future__ import annotations

import doctest

import numpy as np
import torch

import fxcfp.eval.synthetic as synthetic
from fxcfp.eval.synthetic import (
    CLASS_NAMES,
    DIRECTIONS,
    SyntheticConfig,
    TrainConfig,
    make_clips,
    train_model,
)

CONFIG = SyntheticConfig()


def test_masks_mark_the_target_moving_in_its_class_direction():
    data = make_clips(CONFIG, 24, seed=5)
    for clip, label, mask in zip(data.clips, data.labels.tolist(), data.masks):
        assert bool(mask.reshape(CONFIG.frames, -1).any(1).all()), "a frame without evidence"
        # the evidence is painted in one flat colour, the same in every frame
        colours = clip.permute(1, 2, 3, 0)[mask]
        assert torch.allclose(colours, colours[:1].expand_as(colours))
        ys, xs = [], []
        for frame in mask.numpy():
            y, x = np.nonzero(frame)
            ys.append(y.mean())
            xs.append(x.mean())
        direction = DIRECTIONS[CLASS_NAMES[label].split("-")[1]]
        shift = np.array([ys[-1] - ys[0], xs[-1] - xs[0]])
        expected = np.array(direction) * CONFIG.speed * (CONFIG.frames - 1)
        np.testing.assert_allclose(shift, expected, atol=1.0)
        # the shape names the rest of the class: a square fills its box, a plus does not
        side = CONFIG.object_size
        filled = mask[0].sum().item() == side * side
        assert filled == CLASS_NAMES[label].startswith("square")


def test_masks_are_a_small_share_and_distractors_share_the_colour():
    data = make_clips(CONFIG, 16, seed=2)
    share = data.masks.float().mean().item()
    assert 0.01 < share < 0.05
    clip, mask = data.clips[0], data.masks[0]
    colour = clip[:, 0][:, mask[0]][:, 0]
    same = (clip[:, 0] == colour[:, None, None]).all(0)
    # more pixels than the target's carry its colour: the distractors
    assert same.sum() > mask[0].sum() + 2 * CONFIG.object_size


def test_generation_is_deterministic_and_per_clip():
    a = make_clips(CONFIG, 3, seed=9)
    b = make_clips(CONFIG, 5, seed=9)
    assert torch.equal(a.clips, b.clips[:3])
    assert torch.equal(a.masks, b.masks[:3])
    assert torch.equal(a.labels, b.labels[:3])
    other = make_clips(CONFIG, 3, seed=10)
    assert not torch.equal(a.clips, other.clips)


def test_every_class_is_drawn():
    labels = make_clips(CONFIG, 60, seed=0).labels
    assert set(labels.tolist()) == set(range(len(CLASS_NAMES)))


def test_training_is_deterministic_and_cached(tmp_path):
    tiny_data = SyntheticConfig(frames=4, size=16, object_size=4)
    tiny = TrainConfig(train_clips=8, test_clips=8, epochs=1, batch=4, width=4)
    rng_before = torch.get_rng_state()
    first = train_model(tiny_data, tiny, cache_dir=tmp_path / "a")
    assert torch.equal(torch.get_rng_state(), rng_before), "training moved the global RNG"
    assert not first.cached and first.path.exists()
    again = train_model(tiny_data, tiny, cache_dir=tmp_path / "a")
    assert again.cached and again.accuracy == first.accuracy
    fresh = train_model(tiny_data, tiny, cache_dir=tmp_path / "b")
    for key, value in first.model.state_dict().items():
        assert torch.equal(value, fresh.model.state_dict()[key]), key
        assert torch.equal(value, again.model.state_dict()[key]), key
    # any change of the configuration is another cache entry
    assert synthetic._key(tiny_data, TrainConfig(**{**tiny.__dict__, "seed": 1})) != \
        synthetic._key(tiny_data, tiny)
    assert not first.model.training


def test_doctests():
    assert doctest.testmod(synthetic).failed == 0


def test_the_analysis_does_not_import_the_evaluation():
    import ast
    from pathlib import Path

    package = Path(synthetic.__file__).resolve().parents[1]
    for path in package.rglob("*.py"):
        if "eval" in path.relative_to(package).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [alias.name for alias in node.names]
                relative = node.level > 0
            elif isinstance(node, ast.Import):
                names, relative = [alias.name for alias in node.names], False
            else:
                continue
            for name in names:
                assert not name.startswith("fxcfp.eval"), f"{path} imports {name}"
                assert not (relative and name.split(".")[0] == "eval"), f"{path} imports eval"
