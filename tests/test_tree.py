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


def test_stats_bin_each_reached_node_by_its_confidence():
    """Calibration counts exactly the nodes whose parent was accepted, by source/kind and bin."""
    from goose.engine import GenerationStats
    from goose.verify import Verdict

    tree = DraftTree([9, 1, 2, 3, 4], [-1, 0, 0, 1, 2], ["root", "context", "recycled", "context", "recycled"],
                     confidences=[1, 0.9, 0.35, 0.8, 0.05], kinds=["root", "spine", "branch", "spine", "branch"])
    stats = GenerationStats()
    stats.count_step(tree, Verdict((1,), (1,), 7))  # node 1 accepted; node 3 then had its chance, node 4 never
    cal = stats.calibration
    assert set(cal) == {"context/spine", "recycled/branch"}
    assert [(b, cal["context/spine"]["n"][b], cal["context/spine"]["accepted"][b]) for b in (8, 9)] == \
        [(8, 1, 0), (9, 1, 1)]
    assert cal["context/spine"]["predicted"][8] == pytest.approx(0.8)
    assert sum(cal["recycled/branch"]["n"]) == 1 and cal["recycled/branch"]["n"][3] == 1
    assert sum(cal["recycled/branch"]["accepted"]) == 0
    assert sum(sum(c["n"]) for c in cal.values()) == 3
    assert stats.drafted == {"context": 2, "recycled": 2}
    assert stats.opportunities == {"context": 2, "recycled": 1} and stats.accepted == {"context": 1}
    edges = DraftTree([9, 1, 2], [-1, 0, 1], ["root", "context", "context"], confidences=[1, 1.0, 0.0],
                      kinds=["root", "spine", "spine"])
    stats.count_step(edges, Verdict((1, 2), (1, 2), 7))  # confidence 1 falls in the top bin, 0 in the bottom one
    assert cal["context/spine"]["n"][9] == 2 and cal["context/spine"]["accepted"][9] == 2
    assert cal["context/spine"]["n"][0] == 1 and cal["context/spine"]["accepted"][0] == 1
