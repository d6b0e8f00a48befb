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
