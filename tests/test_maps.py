"""Kernel-wise and layer-wise maps, their upsampling, and the temporal profile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fxcfp
from fxcfp._maps import temporal_profile, upsample


def test_upsample_a_known_map_keeps_shape_range_and_peak():
    feature_map = torch.zeros(4, 7, 7)
    feature_map[2, 5, 1] = 3.0
    feature_map[0, 0, 0] = -1.0
    up = upsample(feature_map, (16, 112, 112))
    assert up.shape == (16, 112, 112) and up.dtype == torch.float32
    assert float(up.min()) == 0.0 and float(up.max()) == 1.0
    t, y, x = np.unravel_index(int(up.argmax()), up.shape)
    # the peak stays where it was, in the clip's coordinates (cell centres of the feature grid)
    assert abs(t - 2 * 15 / 3) <= 1.5 and abs(y - 5 * 111 / 6) <= 2 and abs(x - 1 * 111 / 6) <= 2


def test_upsample_of_a_constant_map_is_zeros_not_nan():
    up = upsample(torch.full((2, 3, 3), 0.7), (8, 16, 16))
    assert torch.equal(up, torch.zeros(8, 16, 16))
    assert torch.equal(upsample(torch.tensor(3.0), (4, 8, 8)), torch.zeros(4, 8, 8))


def test_upsample_handles_odd_factors_and_images():
    assert upsample(torch.rand(3, 5, 5), (7, 33, 17)).shape == (7, 33, 17)
    up = upsample(torch.rand(5, 5), (224, 224))
    assert up.shape == (224, 224) and 0.0 <= float(up.min()) <= float(up.max()) <= 1.0


def test_temporal_profile_sums_to_one_and_finds_the_frame():
    heat = torch.zeros(6, 4, 4)
    heat[4] = 1.0
    profile = temporal_profile(heat)
    assert float(profile.sum()) == pytest.approx(1.0)
    assert int(profile.argmax()) == 4
    assert torch.equal(temporal_profile(torch.zeros(3, 2, 2)), torch.zeros(3))


class Chain(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv3d(3, 6, 3, padding=1)
        self.b = nn.Conv3d(6, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.b(torch.relu(self.a(x)))).mean((2, 3, 4)))


def test_kernel_and_layer_maps_are_made_of_the_passing_channels():
    torch.manual_seed(0)
    model = Chain().eval()
    clip = torch.randn(3, 8, 12, 12)
    pyramid = fxcfp.analyze(model, clip, 1, threshold=0.3)
    with torch.no_grad():
        a_b = torch.relu(model.a(clip[None]))[0]  # the input activation of layer b
    graph = pyramid.graph
    expected_layer = torch.zeros_like(a_b[0])
    for kernel in pyramid.layers[1].kernels:
        assert pyramid.layers[1].name == "b"
        channels = sorted(graph.nodes[c]["channel"] for c in graph.successors(f"b:{kernel}"))
        expected = a_b[channels].mean(0)
        assert torch.allclose(pyramid.kernel_map("b", kernel), expected, atol=1e-6)
        expected_layer += a_b[channels].sum(0)
    assert torch.allclose(pyramid.layer_map("b"), expected_layer, atol=1e-5)
    up = pyramid.kernel_map("b", pyramid.layers[1].kernels[0], upsample=True)
    assert up.shape == (8, 12, 12)
    assert pyramid.temporal_profile("b").shape == (8,)
    # the linear layer's input has no space or time: it is drawn on the tensor before the mean
    with torch.no_grad():
        pre_pool = torch.relu(model.b(a_b[None]))[0]
    fc_channels = sorted(graph.nodes[c]["channel"] for c in graph.successors(pyramid.root))
    assert torch.allclose(pyramid.layer_map("fc"), pre_pool[fc_channels].sum(0), atol=1e-6)


def test_maps_reject_unknown_layers_and_kernels():
    torch.manual_seed(0)
    pyramid = fxcfp.analyze(Chain(), torch.randn(3, 4, 8, 8), 0, threshold=0.5, max_depth=1)
    with pytest.raises(fxcfp.InvalidArgumentError, match="no layer 'layer9'"):
        pyramid.layer_map("layer9")
    with pytest.raises(fxcfp.InvalidArgumentError, match="selected no input channel"):
        pyramid.kernel_map("b", 0)  # depth 1 = max_depth: selected, not expanded


class SharedInput(nn.Module):
    """Two layers read one activation (a block's conv and its shortcut); a channels-last head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv3d(3, 8, 1)
        self.conv = nn.Conv3d(8, 6, 3, padding=1)
        self.shortcut = nn.Conv3d(8, 6, 1)
        self.tokens = nn.Linear(6, 5)
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        y = torch.relu(self.conv(x) + self.shortcut(x)).permute(0, 2, 3, 4, 1)
        return self.fc(torch.relu(self.tokens(y)).mean((1, 2, 3)))


def test_maps_of_layers_that_read_one_activation_and_of_channels_last_layers():
    torch.manual_seed(0)
    model = SharedInput().eval()
    clip = torch.randn(3, 4, 6, 6)
    pyramid = fxcfp.analyze(model, clip, 2, threshold=0.2, top_k=3)
    with torch.no_grad():
        x = torch.relu(model.stem(clip[None]))[0]
        y = torch.relu(model.conv(x[None]) + model.shortcut(x[None]))[0]
    graph = pyramid.graph
    inputs = {"conv": x, "shortcut": x, "tokens": y}
    checked = 0
    for layer, activation in inputs.items():
        for kernel in next(lv for lv in pyramid.layers if lv.name == layer).kernels:
            channels = sorted({graph.nodes[c]["channel"] for c in graph.successors(f"{layer}:{kernel}")})
            if not channels:
                continue
            expected = activation[channels].mean(0)
            assert torch.allclose(pyramid.kernel_map(layer, kernel), expected, atol=1e-6)
            checked += 1
    assert checked >= 6


def test_separable_upsampling_equals_scipy_zoom():
    from scipy import ndimage

    torch.manual_seed(0)
    feature_map = torch.rand(4, 7, 5, dtype=torch.float64)
    size = (16, 28, 20)
    values = ndimage.zoom(feature_map.numpy(), [o / i for o, i in zip(size, feature_map.shape)],
                          order=3, mode="nearest", grid_mode=False)
    values = np.clip(values, float(feature_map.min()), float(feature_map.max()))
    values = (values - values.min()) / (values.max() - values.min())
    assert np.allclose(upsample(feature_map, size).numpy(), values, atol=1e-5)


def _zoomed(values: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """SPEC's upsampling spelled out with scipy: zoom, clip, min-max scale."""
    from scipy import ndimage

    factors = [out / length for out, length in zip(size, values.shape)]
    zoomed = np.clip(ndimage.zoom(values, factors, order=3, mode="nearest", grid_mode=False),
                     values.min(), values.max())
    return (zoomed - zoomed.min()) / (zoomed.max() - zoomed.min())


@pytest.mark.parametrize(("shape", "size"), [((250,), (16000,)), ((4000,), (16000,)),
                                             ((2, 1500), (8, 16000)), ((4, 7, 7), (16, 112, 112))])
def test_upsampling_long_axes_is_cheap_and_equals_scipy_zoom(shape, size):
    import time

    values = np.random.default_rng(0).random(shape)
    start = time.process_time()
    got = upsample(torch.from_numpy(values), size).numpy()
    spent = time.process_time() - start
    assert got.shape == size
    assert np.abs(got - _zoomed(values, size)).max() < 1e-6
    assert spent < 2.0  # a matrix per axis grew with length^3: 88 s at 2000 samples


def test_layer_maps_of_a_conv1d_audio_model_on_16000_samples():
    import time

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 8, 9, stride=4, padding=4), nn.ReLU(),
                          nn.Conv1d(8, 8, 9, stride=4, padding=4), nn.ReLU(),
                          nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(8, 3))
    pyramid = fxcfp.analyze(model, torch.randn(1, 16000), threshold=0.5)
    start = time.process_time()
    for level in pyramid.layers:
        heat = pyramid.layer_map(level.name, upsample=True)
        assert heat.shape == (16000,) and 0.0 <= float(heat.min()) <= float(heat.max()) <= 1.0
    assert time.process_time() - start < 10.0


def _cam_case(name: str) -> tuple[nn.Module, torch.Tensor, nn.Module]:
    """A network, a clip, and the module whose output is the tensor before the global pool."""
    torch.manual_seed(0)
    if name == "r3d_18":
        import torchvision

        model = torchvision.models.video.r3d_18().eval()
        return model, torch.randn(3, 8, 32, 32), model.layer4
    from fxcfp.zoo.efficientnet_lite import efficientnet_lite0_3d

    model = efficientnet_lite0_3d(pretrained=False).eval()
    return model, torch.randn(3, 4, 64, 64), model._act


@pytest.mark.parametrize("name", ["r3d_18", "efficientnet_lite0"])
def test_the_classifier_is_drawn_as_the_cam_of_its_selected_channels_before_the_pool(name):
    model, clip, head = _cam_case(name)
    pyramid = fxcfp.analyze(model, clip, max_depth=2)
    seen: list[torch.Tensor] = []
    handle = head.register_forward_hook(lambda module, args, out: seen.append(out.detach()))
    try:
        with torch.no_grad():
            model(clip[None])
    finally:
        handle.remove()
    pre_pool = seen[-1][0]  # the last call of a shared activation module is the head's
    classifier = pyramid.layers[0].name
    # a residual add gives each channel two producers: count the channel once
    channels = sorted({pyramid.graph.nodes[c]["channel"]
                       for c in pyramid.graph.successors(pyramid.root)})
    assert channels
    layer_map = pyramid.layer_map(classifier)
    assert layer_map.shape == pre_pool.shape[1:]
    assert torch.allclose(layer_map, pre_pool[channels].sum(0), rtol=1e-5, atol=1e-5)
    kernel_map = pyramid.kernel_map(classifier, pyramid.target)
    assert torch.allclose(kernel_map, pre_pool[channels].mean(0), rtol=1e-5, atol=1e-6)
    up = pyramid.layer_map(classifier, upsample=True)
    assert up.shape == clip.shape[1:] and float(up.max()) == 1.0


class NoPrePool(nn.Module):
    """A squeeze-excitation gate whose second layer reads the first (no location upstream
    through weight-free ops), and a classifier on features flattened from ``C x 2 x 2``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1)
        self.squeeze = nn.Conv3d(4, 2, 1)
        self.excite = nn.Conv3d(2, 4, 1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        g = torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean((2, 3, 4), keepdim=True)))))
        x = nn.functional.adaptive_avg_pool3d(x * g, (1, 2, 2))
        return self.fc(x.flatten(1))


def test_layers_without_a_one_to_one_tensor_upstream_keep_maps_without_location():
    torch.manual_seed(0)
    model = NoPrePool().eval()
    clip = torch.randn(3, 4, 8, 8)
    pyramid = fxcfp.analyze(model, clip, threshold=0.0)
    layers = {layer.name: layer for layer in pyramid._plan.layers}
    # the squeeze reads the mean of the conv's output: drawn there
    assert layers["squeeze"].map_node != layers["squeeze"].input_node
    assert layers["conv"].map_node == layers["conv"].input_node
    for name in ("excite", "fc"):
        assert (layers[name].map_node, layers[name].map_channel_dim) == (
            layers[name].input_node, layers[name].channel_dim)
        assert torch.equal(pyramid.layer_map(name, upsample=True), torch.zeros(4, 8, 8))
    assert float(pyramid.layer_map("squeeze", upsample=True).max()) == 1.0


def test_temporal_profile_of_an_image_map_is_one_frame_not_one_per_row():
    heat = torch.zeros(224, 224)
    heat[10, 20] = 1.0
    assert torch.equal(temporal_profile(heat), torch.ones(1))
    assert torch.equal(temporal_profile(torch.zeros(224, 224)), torch.zeros(1))
    # numpy maps (what render draws) give the same profile as tensors
    clip = np.random.default_rng(0).random((5, 4, 4)).astype(np.float32)
    assert torch.equal(temporal_profile(clip), temporal_profile(torch.from_numpy(clip)))


def test_temporal_profile_of_a_2d_pyramid_has_one_entry():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3, padding=1),
                          nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    pyramid = fxcfp.analyze(model, torch.randn(3, 24, 24), threshold=0.3)
    for level in pyramid.layers:
        assert pyramid.temporal_profile(level.name).shape == (1,)
