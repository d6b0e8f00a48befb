"""The errors fxcfp raises.

Every error is an :class:`FxcfpError`. Errors about the caller's arguments are also a
``ValueError`` or ``TypeError``, so code that already catches those keeps working. Messages name
the public call, the place (FX node, module path, op) and the fix.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command line imports the errors before torch
    from torch import fx

__all__ = [
    "FxcfpError",
    "InvalidInputError",
    "InvalidArgumentError",
    "InvalidTypeError",
    "DeviceMismatchError",
    "UntraceableModelError",
    "UnsupportedOpError",
    "UnsupportedModelError",
    "GraphTooLargeError",
    "ModelCallError",
    "PyramidFileError",
    "VideoError",
    "DatasetError",
    "ModelSpecError",
    "CommandLinePathError",
    "RuleError",
    "NotExplainableError",
]


class FxcfpError(Exception):
    """Base class of every error fxcfp raises."""


class InvalidInputError(FxcfpError, ValueError):
    """The clip (or clips) cannot be analysed: wrong rank, dtype, non-finite values, empty batch."""


class InvalidArgumentError(FxcfpError, ValueError):
    """An option is out of its range: ``cls``, ``threshold``, ``max_depth``, ``top_k``."""


class InvalidTypeError(FxcfpError, TypeError):
    """An argument has the wrong type (a float class index, a numpy array for a clip...)."""


class DeviceMismatchError(FxcfpError, ValueError):
    """The clip and the model live on different devices."""


class UntraceableModelError(FxcfpError):
    """Neither ``torch.fx`` symbolic tracing nor ``torch.export`` could capture the model's graph."""


class UnsupportedOpError(FxcfpError):
    """An operation in the traced graph has no channel rule.

    fxcfp never guesses: an op it cannot map would silently produce wrong links. Register a rule
    with :func:`fxcfp.register_channel_rule` to teach it.

    Attributes:
        fx_node: the node of the traced graph where the analysis stopped, if it got that far.
    """

    def __init__(self, message: str, *, fx_node: fx.Node | None = None) -> None:
        super().__init__(message)
        self.fx_node = fx_node


class UnsupportedModelError(FxcfpError):
    """The model as a whole is outside what Class Feature Pyramids can explain (no weighted
    layer, an output that is not ``N x classes`` logits, data-dependent channel mixing such as
    attention).

    Attributes:
        fx_node: the node of the traced graph that puts the model outside the method, if one does.
    """

    def __init__(self, message: str, *, fx_node: fx.Node | None = None) -> None:
        super().__init__(message)
        self.fx_node = fx_node


class GraphTooLargeError(FxcfpError):
    """A pyramid has more edges than a networkx graph of it should hold in memory."""


class ModelCallError(FxcfpError, RuntimeError):
    """The model itself raised while running on the clip (a clip of a size it cannot take, a
    wrong number of channels); the message names the FX node where it happened."""


class PyramidFileError(FxcfpError, ValueError):
    """A saved pyramid cannot be read: not a pyramid file, another format version, or corrupt."""


class VideoError(FxcfpError, ValueError):
    """A clip or image cannot be read: missing or undecodable file, too few frames, bad option."""


class DatasetError(FxcfpError, ValueError):
    """A dataset run cannot start: no clips, a CSV without its columns, a label that is not a
    class of the model, or an output folder from another run."""


class ModelSpecError(FxcfpError, ValueError):
    """``--model`` or ``--weights`` cannot be turned into a model (:mod:`fxcfp.cli`)."""


class CommandLinePathError(FxcfpError, ValueError):
    """A path on the command line that cannot be read or written, found before any model."""


# --- signals inside the channel-map pass, never raised to a user ------------------------------


class RuleError(Exception):
    """Raised by a channel rule that recognises its op but cannot map this use of it; the
    channel-map pass turns it into an :class:`UnsupportedOpError` naming the node. Not an
    :class:`FxcfpError`: it never leaves fxcfp."""


class NotExplainableError(RuleError):
    """Raised by a channel rule whose op puts the whole model outside the method (attention);
    the channel-map pass turns it into an :class:`UnsupportedModelError` naming the node."""


_SHAPE_WORDS = ("shape", "size", "dimension", "channels", "expected input", "mat1 and mat2",
                "kernel size", "must match", "input type")


# the hint for a model that raised on a list of clips
PATHWAYS_HINT = ("a multi-input model (SlowFast) takes a list with one clip per pathway, in the "
                 "order its forward reads them ([slow, fast]), each of the shape it was built for")


def describe_model_error(err: BaseException, hint: str | None = None) -> str:
    """``Type: first line`` of an error the model raised, and the hint that applies to it: the
    clip's shape only where the message is about shapes, the model's own code otherwise."""
    text = str(err).strip()
    first = text.splitlines()[0][:300] if text else ""
    lowered = text.lower()
    if hint is not None:
        pass
    elif any(word in lowered for word in _SHAPE_WORDS):
        hint = ("check the clip's shape (C x T x H x W, or a list of one per pathway) against "
                "what the model was built for")
    else:
        hint = ("the model's own code raised this; check that model(clip) runs outside fxcfp "
                "on this clip, in eval mode")
    return f"{type(err).__name__}: {first}. Hint: {hint}"
