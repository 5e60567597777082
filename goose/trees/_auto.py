"""Hardware-aware budget: pick each step's tree size from a measured cost curve."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..sources._base import TokenSource
from ..theory import CostCurve
from ._base import TreeShaper, check_budget
from ._tree import DraftTree

__all__ = ["AutoBudgetShaper"]


class AutoBudgetShaper(TreeShaper):
    """Wraps a shaper and keeps, each step, the prefix of its tree that maximises
    predicted tokens per second ``(1 + E[A]) / c(1 + B)`` (``B = 0``: a plain step).

    The inner shaper builds a tree of up to ``budget`` nodes; node order is a valid
    growth order (parents first), and for :class:`BestFirstShaper` and
    :class:`SpineShaper` it is the order of decreasing path probability, so every
    prefix is the optimal tree of its size (``goose.theory``, Theorem 1); for a
    :class:`ChainShaper` the prefixes are the only subtrees there are, and for
    :class:`BalancedShaper` they are its breadth-first (template) order. ``E[A]`` of
    a prefix is the sum of the path probabilities of its nodes, computed from the
    tree's confidences (the shaper's acceptance estimates).

    Args:
        inner: the shaper whose trees are cut.
        cost: forward cost ``c(n)`` of a pass over ``n`` tokens (e.g. a
            :class:`goose.theory.CostCurve` measured by ``goose calibrate``; a curve
            measured at several context lengths is read at the current one).
    """

    def __init__(self, inner: TreeShaper, cost: Callable[[float], float]) -> None:
        self.inner = inner
        self.cost = cost

    def _cost(self, n: int, past: int) -> float:
        if isinstance(self.cost, CostCurve):  # measured at several context lengths: use this one
            return self.cost(n, context=past)
        return self.cost(n)

    def reset(self) -> None:
        self.inner.reset()

    def record(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        self.inner.record(tree, accepted)

    def shape(self, context: Sequence[int], sources: Sequence[TokenSource], budget: int) -> DraftTree:
        budget = check_budget(budget)
        tree = self.inner.shape(context, sources, budget)
        if tree.size == 0:
            return tree
        prob = np.ones(tree.num_nodes)
        for v in range(1, tree.num_nodes):
            prob[v] = prob[tree.parents[v]] * tree.confidences[v]
        gain = 1.0 + np.concatenate([[0.0], np.cumsum(prob[1:])])  # [size + 1] tokens per step
        past = len(context)
        rate = [gain[b] / self._cost(1 + b, past) for b in range(tree.size + 1)]
        keep = int(np.argmax(rate))
        if keep == tree.size:
            return tree
        k = keep + 1
        return DraftTree(tree.tokens[:k], tree.parents[:k], tree.sources[:k], tree.confidences[:k], tree.keys[:k])
