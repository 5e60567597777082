"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from hypothesis import strategies as st

from goose.testing import grow_tree


@st.composite
def candidate_trees(draw, max_nodes: int = 13):
    """(parents, accept) of a random candidate tree; accept[0] is the root's 1."""
    n = draw(st.integers(1, max_nodes))
    parents = [-1] + [draw(st.integers(0, i - 1)) for i in range(1, n)]
    accept = [1.0] + [draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]) | st.floats(0, 1)) for _ in range(1, n)]
    return parents, accept


@st.composite
def draft_trees(draw, max_nodes: int = 10, vocab: int = 6):
    """A valid DraftTree (distinct sibling tokens) over tokens 0..vocab-1, grown by
    goose.testing's one tree generator from Hypothesis' draws (so it shrinks)."""
    return grow_tree(lambda lo, hi: draw(st.integers(lo, hi)), max_nodes, vocab)


def assert_property_fails(check, *args) -> None:
    """Run a property check against a deliberately broken implementation and require
    that it fails (Hypothesis may report several distinct failures as a group)."""
    try:
        check(*args)
    except AssertionError:
        return
    except ExceptionGroup as group:
        if all(isinstance(e, AssertionError) for e in group.exceptions):
            return
        raise
    raise AssertionError("the property did not catch the broken implementation")
