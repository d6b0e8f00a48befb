"""Channel labels (fxcfp/passes/labels.py): compact, exact sets of producer ids."""

from __future__ import annotations

import torch

from fxcfp.passes.labels import NONE, compact, dedupe, expand_full, new_label, union


def test_a_new_label_varies_only_along_its_channel_dim() -> None:
    label = new_label(torch.tensor([3, 4, 5]), 4, 2)
    assert label.shape == (1, 1, 3, 1, 1)
    assert label.flatten().tolist() == [3, 4, 5]
    assert expand_full(label, (2, 6, 3, 4)).shape == (2, 6, 3, 4, 1)


def test_dedupe_keeps_each_id_once_sorted_with_padding_last() -> None:
    rows = torch.tensor([[2, 7, 2, NONE], [NONE, NONE, NONE, NONE], [1, 1, 1, 1]])
    assert dedupe(rows).tolist() == [[7, 2], [NONE, NONE], [1, NONE]]
    single = torch.tensor([[5], [6]])
    assert dedupe(single) is single  # one column: nothing to do


def test_compact_collapses_the_dims_a_label_is_constant_along() -> None:
    label = torch.tensor([[[4, 4], [9, NONE]], [[4, 4], [9, NONE]]], dtype=torch.int32)
    out = compact(label)  # 2 x 2 x K, the same along dim 0
    assert out.shape == (1, 2, 1)
    assert out[0, :, 0].tolist() == [4, 9]


def test_union_broadcasts_and_unites() -> None:
    a = new_label(torch.tensor([0, 1]), 3, 1)
    b = new_label(torch.tensor([8, 9]), 3, 2)
    out = union([a, b], (1, 2, 2))
    assert out is not None
    assert {frozenset(out[0, i, j].tolist()) - {NONE} for i in range(2) for j in range(2)} == {
        frozenset(s) for s in ({0, 8}, {0, 9}, {1, 8}, {1, 9})}
    assert union([], (1, 2)) is None


def _slow_union(labels: list[torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
    """``union`` without its shortcut: the labels copied first, so none is known compact."""
    out = union([label.clone() for label in labels], shape)
    assert out is not None
    return out


def test_the_union_of_a_compact_label_with_itself_is_that_label() -> None:
    generator = torch.Generator().manual_seed(0)
    for trial in range(40):
        width = 1 + trial % 3
        raw = torch.randint(-1, 6, (1, 4, 1 + trial % 2, width), generator=generator,
                            dtype=torch.int32)
        label = compact(raw)
        shape = (2, 4, 1 + trial % 2)
        for labels in ([label], [label, label], [label, label, label]):
            out = union(labels, shape)
            assert out is label  # a unary op, or x * sigmoid(x), costs nothing
            slow = _slow_union(labels, shape)
            assert torch.equal(out, slow) and out.shape == slow.shape
    fresh = new_label(torch.tensor([2, 3]), 3, 1)
    assert union([fresh], (1, 2, 5)) is fresh


def test_a_label_not_known_compact_is_compacted_by_union() -> None:
    # 2 x 2 x K, constant along dim 0 and with a repeated id: not the output of compact()
    label = torch.tensor([[[4, 4], [9, NONE]], [[4, 4], [9, NONE]]], dtype=torch.int32)
    out = union([label], (2, 2))
    assert out is not label
    assert out.shape == (1, 2, 1) and out[0, :, 0].tolist() == [4, 9]
    # two different compact labels are united, not shortcut
    a, b = new_label(torch.tensor([0, 1]), 2, 1), new_label(torch.tensor([5, 6]), 2, 1)
    both = union([a, b], (1, 2))
    assert both is not None and both[0].tolist() == [[5, 0], [6, 1]]
    # a compact label of a lower rank than the output is aligned, not handed back as is
    low = new_label(torch.tensor([7, 8]), 2, 1)
    aligned = union([low], (3, 1, 2))
    assert aligned is not None and aligned.shape == (1, 1, 2, 1)
