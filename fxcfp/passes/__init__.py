"""The passes that turn a traced model into a channel-dependency graph.

Each pass is a plain function over a ``GraphModule`` that writes what it learns into
``node.meta`` under a namespaced key, next to the frozen dataclass that holds it. They run in
this order (:func:`fxcfp._plan.build_plan` calls them, each with what it needs):

1. :mod:`.inplace` (run by the tracer): later readers of a tensor edited in place read the edit.
2. :mod:`.weighted_layers`: the convolutions and linear layers (``WEIGHTED_LAYER``); the
   channel-map pass gives their outputs fresh labels, so they are found first.
3. :mod:`.channel_maps`: runs the graph on channel labels (:mod:`.labels`) through the channel
   rules (:mod:`.rules` the contract, :mod:`.rule_kinds`, :mod:`.rule_table` the default table
   as data, :mod:`.registry` the look-up) and writes each layer's ``CHANNEL_MAP``; it asks
   :mod:`.map_nodes` where a layer's maps are drawn.
"""

from __future__ import annotations

from .channel_maps import CHANNEL_MAP, OUTPUT_MAP, ChannelMap, OutputMap, annotate_channel_maps
from .registry import register_channel_rule
from .rules import RuleCall
from .weighted_layers import WEIGHTED_LAYER, WeightedLayer, annotate_weighted_layers

__all__ = [
    "CHANNEL_MAP",
    "OUTPUT_MAP",
    "WEIGHTED_LAYER",
    "ChannelMap",
    "OutputMap",
    "RuleCall",
    "WeightedLayer",
    "annotate_channel_maps",
    "annotate_weighted_layers",
    "register_channel_rule",
]
