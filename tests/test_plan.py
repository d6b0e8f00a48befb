"""The plan's capture: the first call takes its pooled inputs from the channel-map pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

import fxcfp


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv3d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv3d(8, 8, 1),
                         nn.ReLU(), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(8, 5)).eval()


def test_the_first_call_runs_the_model_once_and_equals_the_capture():
    model = _net()
    calls = []
    handle = model[0].register_forward_hook(lambda *_: calls.append(1))
    try:
        clip = torch.randn(3, 4, 6, 6, generator=torch.Generator().manual_seed(1))
        analyzer = fxcfp.Analyzer(model)
        first = analyzer.analyze(clip)
        assert len(calls) == 1  # the channel-map pass's run, not a second forward
        plan = next(iter(analyzer._plans.values()))
        with torch.no_grad():
            logits, pooled = plan.capture(clip[None])
        assert torch.equal(first.logits, logits[0])
        layer_pooled = [pooled[i][0] for i in plan.pooled_index]
        assert all(torch.equal(first.pooled_input(layer.name), p)
                   for layer, p in zip(plan.layers, layer_pooled, strict=True))
        second = analyzer.analyze(clip)
        assert len(calls) == 3  # now the capture (one more run above, by the test)
        assert (second.depths == first.depths).all()
        # a batch is mapped on its first clip, then captured whole
        calls.clear()
        fxcfp.Analyzer(model).analyze_batch(torch.stack([clip, clip + 1]))
        assert len(calls) == 2
    finally:
        handle.remove()


def test_the_first_call_imports_no_symbolic_shape_machinery():
    # torch.broadcast_shapes imports torch's symbolic shapes and sympy on first use: 0.7 s of
    # CPU, most of a 3D ResNet-50 forward, paid by every process's first call (torchvision
    # imports sympy itself; fxcfp's own networks and a user's model need not)
    code = (
        "import sys, torch, fxcfp\n"
        "from tests.models import make_resnet3d\n"
        "model, shape = make_resnet3d()\n"
        "fxcfp.analyze(model, torch.randn(*shape[1:]))\n"
        "print(sorted(m for m in ('sympy', 'torch.fx.experimental.symbolic_shapes')"
        " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.stdout.strip().splitlines()[-1] == "[]"
