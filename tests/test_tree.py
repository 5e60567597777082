import numpy as np
import pytest
from hypothesis import given

from goose.trees import DraftTree, TreeBuilder

from .strategies import draft_trees


def test_chain_positions_and_mask():
    tree = DraftTree.chain(5, [6, 7])
    assert tree.position_ids(3).tolist() == [3, 4, 5]
    assert tree.ancestor_mask().tolist() == np.tril(np.ones((3, 3), bool)).tolist()
    assert tree.paths() == [[1, 2]]


@given(draft_trees())
def test_mask_is_ancestor_relation(tree):
    mask = tree.ancestor_mask()
    for i in range(tree.num_nodes):
        expected = {0, *tree.path_to(i)}
        assert set(np.nonzero(mask[i])[0].tolist()) == expected
        assert tree.depths[i] == len(tree.path_to(i))


@pytest.mark.parametrize(
    "tokens, parents, message",
    [
        ([], [], "at least its root"),
        ([1, 2], [-1], "parents has 1"),
        ([1, 2], [0, 0], "must have parent -1"),
        ([1, 2, 3], [-1, 2, 1], "before its child"),  # 1 -> 2 -> 1: a cycle
        ([1, 2, 3], [-1, 0, 3], "before its child"),
        ([1, 2, 3], [-1, -1, 0], "exactly one root"),
        ([1, 2, 2], [-1, 0, 0], "sibling tokens must be distinct"),
        ([1, -2], [-1, 0], "must be >= 0"),
    ],
)
def test_invalid_trees_raise(tokens, parents, message):
    with pytest.raises(ValueError, match=message):
        DraftTree(tokens, parents)


def test_bad_confidence_and_budget():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DraftTree([1, 2], [-1, 0], confidences=[1.0, 1.5])
    with pytest.raises(ValueError, match="over the budget"):
        DraftTree.chain(1, [2, 3]).validate(budget=1)


def test_builder_merges_duplicate_siblings():
    b = TreeBuilder(0)
    a = b.add(0, 4, "context", 0.2)
    assert b.add(0, 4, "recycled", 0.7) == a
    assert b.confidences[a] == 0.7 and b.sources[a] == "context"
    assert b.add(a, 4, "recycled", 0.1) != a  # same token under another parent is fine
