"""The batch-aware auto cut (:func:`goose.engine.cut_batch`): exact on small cases, and
a property that catches a broken cut."""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from goose.engine import cut_batch
from goose.trees import DraftTree

from .strategies import assert_property_fails


def _score(trees, cost, width):
    total = 0.0
    for t in trees:
        prob = np.ones(t.num_nodes)
        for v in range(1, t.num_nodes):
            prob[v] = prob[t.parents[v]] * t.confidences[v]
        total += prob[: min(width, t.num_nodes)].sum()
    return total / cost(len(trees), width)


chains = st.lists(st.lists(st.floats(0.0, 1.0), max_size=8), min_size=1, max_size=5)
slopes = st.tuples(st.floats(0.001, 0.2), st.floats(0.0, 0.05))


def _check(cut):
    @given(chains, slopes)
    def prop(confs, slope):
        trees = [DraftTree.chain(7, list(range(1, len(c) + 1)), confidences=c) for c in confs]

        def cost(rows, width):  # a fixed part plus a part per padded token
            return slope[0] + slope[1] * rows * width

        out = cut(trees, cost)
        width = max(t.num_nodes for t in out)
        best = max(_score(trees, cost, w) for w in range(1, max(t.num_nodes for t in trees) + 1))
        assert _score(trees, cost, width) >= best - 1e-9  # no width scores higher
        for t, o in zip(trees, out, strict=True):  # each row keeps a prefix of its own tree
            assert o.num_nodes == min(t.num_nodes, width)
            assert o.tokens.tolist() == t.tokens[: o.num_nodes].tolist()

    prop()


def test_the_cut_keeps_the_best_common_width():
    _check(cut_batch)


def test_the_property_catches_a_cut_that_keeps_every_tree_whole():
    assert_property_fails(_check, lambda trees, cost: list(trees))


def test_drafts_that_do_not_pay_are_cut_to_a_plain_step():
    trees = [DraftTree.chain(1, [2, 3, 4], confidences=[0.01, 0.01, 0.01])] * 4

    def cost(rows, width):
        return 1.0 + 0.5 * width

    assert [t.num_nodes for t in cut_batch(trees, cost)] == [1] * 4
    sure = [DraftTree.chain(1, [2, 3, 4], confidences=[1.0, 1.0, 1.0])] * 4
    assert [t.num_nodes for t in cut_batch(sure, cost)] == [4] * 4  # (1 + 3) / 3 beats 1 / 1.5
