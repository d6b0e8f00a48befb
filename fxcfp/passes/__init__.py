"""The passes that turn a traced model into a channel-dependency graph, in the order they run.

Each pass is a plain function over a ``GraphModule`` that writes what it learns into
``node.meta`` under a namespaced key, next to the frozen dataclass that holds it.
"""

from __future__ import annotations

from .channel_maps import CHANNEL_MAP, OUTPUT_MAP, ChannelMap, OutputMap, annotate_channel_maps
from .rules import RuleCall, register_channel_rule
from .weighted_layers import WEIGHTED_LAYER, WeightedLayer, annotate_weighted_layers

__all__ = [
    "CHANNEL_MAP",
    "OUTPUT_MAP",
    "PIPELINE",
    "WEIGHTED_LAYER",
    "ChannelMap",
    "OutputMap",
    "RuleCall",
    "WeightedLayer",
    "annotate_channel_maps",
    "annotate_weighted_layers",
    "register_channel_rule",
]

# find the weighted layers first: the channel-map pass gives their outputs fresh labels
PIPELINE = (annotate_weighted_layers, annotate_channel_maps)
