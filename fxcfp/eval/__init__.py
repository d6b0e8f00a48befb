"""fxcfp.eval: how faithful is a map? Metrics you can run on any model and clip, and a synthetic
video benchmark whose evidence is known.

Nothing in the analysis imports this package; import it yourself.

- Maps: :func:`saliency_maps` draws fxcfp's maps (``"paper"``, ``"evidence"``) and the
  baselines (``"gradcam"``, ``"grad_x_input"``, ``"activation"``, ``"random"``) of every layer
  on the same tensor, upsampled the same way.
- With a ground-truth mask: :func:`energy_in_mask`, :func:`pointing_game`.
- Without one: :func:`deletion`, :func:`insertion` (the class probability as the most salient
  voxels are blurred away or restored), :func:`class_sensitivity` (do the maps of two classes
  differ?), :func:`cascading_randomization` (do the maps change when the weights are
  destroyed?), on deep copies — the model passed in is never changed.
- :func:`compare` runs them all over many clips and gives per-layer tables with bootstrap
  intervals; :mod:`fxcfp.eval.synthetic` has the benchmark (clips, masks, a trained 3D CNN).

Example:
    >>> import torch
    >>> import fxcfp.eval as fe
    >>> from fxcfp.eval.synthetic import SmallResNet3d
    >>> model, clip = SmallResNet3d().eval(), torch.randn(3, 16, 32, 32)
    >>> maps = fe.saliency_maps(model, clip, 0, methods=("paper", "gradcam"), layers=("b2.b",))
    >>> mask = torch.zeros(16, 32, 32, dtype=torch.bool); mask[:, 8:16, 8:16] = True
    >>> 0.0 <= fe.energy_in_mask(maps["b2.b"]["gradcam"], mask) <= 1.0
    True
    >>> curve = fe.deletion(model, clip, 0, maps["b2.b"]["paper"])
    >>> len(curve.probabilities) == len(curve.fractions)
    True
"""

from __future__ import annotations

from ._compare import (
    Comparison,
    Randomization,
    Row,
    Summary,
    bootstrap,
    cascading_randomization,
    class_sensitivity,
    compare,
    default_stages,
)
from .baselines import BASELINES, PYRAMID_METHODS, PyramidMethod, saliency_maps
from .metrics import (
    DEFAULT_FRACTIONS,
    Curve,
    blurred,
    deletion,
    energy_in_mask,
    insertion,
    pointing_game,
    spearman,
)

__all__ = [
    "BASELINES",
    "DEFAULT_FRACTIONS",
    "PYRAMID_METHODS",
    "Comparison",
    "PyramidMethod",
    "Curve",
    "Randomization",
    "Row",
    "Summary",
    "blurred",
    "bootstrap",
    "cascading_randomization",
    "class_sensitivity",
    "compare",
    "default_stages",
    "deletion",
    "energy_in_mask",
    "insertion",
    "pointing_game",
    "saliency_maps",
    "spearman",
]
