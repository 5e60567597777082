"""Hardware-aware budget: pick each step's tree size from a measured cost curve."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..sources import TokenSource
from ..theory import CostCurve
from ._base import TreeShaper, check_budget, path_probabilities
from ._tree import DraftTree

__all__ = ["AutoBudgetShaper"]


class AutoBudgetShaper(TreeShaper):
    """Wraps a shaper and keeps, each step, the prefix of its tree that maximises the
    generation's tokens per second under a measured cost curve.

    The inner shaper builds a tree of up to ``budget`` nodes; node order is a valid
    growth order (parents first), and for :class:`BestFirstShaper` and
    :class:`SpineShaper` it is the order of decreasing path probability, so every
    prefix is the optimal tree of its size (``goose.theory``, Theorem 1); for a
    :class:`ChainShaper` the prefixes are the only subtrees there are, and for
    :class:`BalancedShaper` they are its breadth-first (template) order. ``E[A]`` of
    a prefix is the sum of the path probabilities of its nodes, computed from the
    tree's confidences (the shaper's acceptance estimates).

    The objective is the rate of the whole generation, total tokens over total time,
    not each step's own ``(1 + E[A]) / c(1 + B)``: by the renewal-reward argument a
    step should keep the prefix maximising ``1 + E[A] - R c(1 + B)``, where ``R`` is
    the rate the generation achieves (Dinkelbach's method for a ratio objective). A
    confident step then grows its tree while one more node still earns more than ``R``
    tokens per second of its cost, though the step's own ratio falls. ``R`` is the
    accepted-plus-bonus tokens over the predicted cost of recent steps (an average
    that forgets with a ``horizon`` of steps); the first step, with no history, takes
    the best ratio of its own, which is the same rule with ``R`` at that ratio.

    Drafting only what can be kept: a shaper whose trees grow by appending nodes of
    non-increasing path probability (:meth:`TreeShaper.growth_bound`: chains,
    best-first and spine trees) is first asked for a tree of ``reach`` nodes, twice
    the last kept size plus two (at least :attr:`MIN_REACH`). If that tree filled its
    budget, every larger prefix is bounded: its gain is at most the small tree's plus
    ``p`` per added node, ``p`` the last node's path probability. Only when that bound
    could beat the best prefix of the small tree is a tree twice the size shaped (and so
    on, up to the budget). So every step keeps exactly the tree it would keep from the
    full budget, and the shaper drafts a few nodes instead of ``budget`` (``auto``
    drafts up to 24, and keeps two or three on a CPU).

    Args:
        inner: the shaper whose trees are cut.
        cost: forward cost ``c(n)`` of a pass over ``n`` tokens (e.g. a
            :class:`goose.theory.CostCurve` measured by ``goose calibrate``; a curve
            measured at several context lengths is read at the current one).
        horizon: steps the running rate ``R`` remembers (>= 1); 1 uses the last step only.
    """

    MIN_REACH = 4
    """The smallest tree asked for first, when the shaper's trees grow by appending."""

    def __init__(self, inner: TreeShaper, cost: Callable[[float], float], horizon: int = 16) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        if inner.draws_from_q:
            raise ValueError("a shaper that draws children from q takes a fixed budget, not 'auto': cutting its "
                             "trees by values that read the drawn tokens would bias what the verifier is told "
                             "(docs/theory.md, section 7b)")
        self.inner = inner
        self.cost = cost
        self.horizon = int(horizon)
        self._tokens = self._seconds = 0.0
        self._last_cost: float | None = None
        self._reach: int | None = None  # the size asked for first; None: the full budget

    def _cost(self, n: int, past: int) -> float:
        if isinstance(self.cost, CostCurve):  # measured at several context lengths: use this one
            return self.cost(n, context=past)
        return self.cost(n)

    def _costs(self, sizes: np.ndarray, past: int) -> np.ndarray:
        """:meth:`_cost` of every size in ``sizes``; a :class:`CostCurve` prices them in one call."""
        if isinstance(self.cost, CostCurve):
            return self.cost.at(sizes, context=past)
        return np.array([self.cost(int(n)) for n in sizes])

    @property
    def rate(self) -> float | None:
        """The running rate ``R`` (tokens per unit of cost), ``None`` before the first step."""
        return self._tokens / self._seconds if self._seconds > 0 else None

    def begin(self, prompt: Sequence[int]) -> None:
        self.inner.begin(prompt)
        self._tokens = self._seconds = 0.0
        self._last_cost = None
        self._reach = None

    def commit(self, new_tokens: Sequence[int]) -> None:
        self.inner.commit(new_tokens)

    def end(self, tokens: Sequence[int]) -> None:
        self.inner.end(tokens)

    def abort(self, tokens: Sequence[int]) -> None:
        self.inner.abort(tokens)

    def record(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        self.inner.record(tree, accepted)
        if self._last_cost is not None:
            keep = 1.0 - 1.0 / self.horizon
            self._tokens = keep * self._tokens + 1.0 + len(accepted)
            self._seconds = keep * self._seconds + self._last_cost
            self._last_cost = None

    def shape(self, context: Sequence[int], sources: Sequence[TokenSource], budget: int) -> DraftTree:
        budget = check_budget(budget)
        past = len(context)
        small = budget if self._reach is None else min(budget, self._reach)
        tree = self.inner.shape(context, sources, small)
        if tree.size == 0:
            self._last_cost = self._cost(1, past)
            self._reach = self.MIN_REACH
            return tree
        cost = self._costs(np.arange(1, budget + 2), past)
        prob = path_probabilities(tree)
        keep, chain = self.choose(tree, prob, cost[: tree.size + 1])
        while tree.size >= small < budget:  # the tree filled its budget: might a larger one be kept?
            bound = None if chain is not None else self.inner.growth_bound(tree)
            if bound is not None and not self._may_grow(tree, prob, cost, keep, bound):
                break
            # twice the size while the bound may settle the cut; without a bound, the budget at once
            small = budget if bound is None else min(budget, 2 * small)
            tree = self.inner.shape(context, sources, small)
            prob = path_probabilities(tree)
            keep, chain = self.choose(tree, prob, cost[: tree.size + 1])
        kept = keep if chain is None else len(chain) - 1
        self._reach = max(self.MIN_REACH, 2 * kept + 2)
        if chain is not None:  # a chain is predicted to be faster than every prefix of the tree
            self._last_cost = float(cost[len(chain) - 1])
            return tree.select(chain)
        self._last_cost = float(cost[keep])
        if keep == tree.size:
            return tree
        return tree.select(np.arange(keep + 1))

    def _may_grow(self, tree: DraftTree, prob: np.ndarray, cost: np.ndarray, keep: int, bound: float) -> bool:
        """Whether a larger tree than ``tree`` (which filled its budget) could be kept,
        when every node it would add has path probability at most ``bound``
        (:meth:`TreeShaper.growth_bound`): whether a prefix of ``m`` nodes, earning at
        most ``bound`` per node past ``tree``'s, could score above ``tree``'s best prefix."""
        n = tree.size
        gain = 1.0 + np.concatenate([[0.0], np.cumsum(prob[1:])])
        best = float(self.objective(gain[keep : keep + 1], cost[keep : keep + 1])[0])
        more = np.arange(n + 1, cost.size)
        reach = self.objective(gain[n] + (more - n) * bound, cost[more])
        return bool((reach > best + 1e-12).any())

    def objective(self, gain: np.ndarray, cost: np.ndarray) -> np.ndarray:
        """What a step maximises: ``gain - R * cost`` (tokens it earns beyond what its
        time would earn at the running rate ``R``), or ``gain / cost`` before the first
        step."""
        rate = self.rate
        return gain / cost if rate is None else gain - rate * cost

    def choose(self, tree: DraftTree, prob: np.ndarray, cost: np.ndarray) -> tuple[int, np.ndarray | None]:
        """The best prefix size of ``tree`` and, when some chain of the tree scores
        higher, that chain's nodes (root first), else ``None``.

        ``prob[v]`` is node v's path probability and ``cost[n]`` the cost of a pass
        over ``n + 1`` tokens. A chain to node v earns 1 plus the path probabilities
        on its path and costs a pass over ``1 + depth(v)`` tokens. For the trees of
        :class:`BestFirstShaper` and :class:`SpineShaper` no chain ever scores higher
        (the prefix of the same size is the optimal tree of that size); for other
        shapers' orders one may, and then auto takes it: auto is never predicted to be
        slower than the best chain it was offered (docs/theory.md, section 6b)."""
        gain = 1.0 + np.concatenate([[0.0], np.cumsum(prob[1:])])  # [size + 1] tokens per step
        score = self.objective(gain, cost)
        keep = int(np.argmax(score))
        along = np.zeros(tree.num_nodes)  # the path probabilities summed from the root to each node
        for v in range(1, tree.num_nodes):
            along[v] = along[tree.parents[v]] + prob[v]
        chain_score = self.objective(1.0 + along, cost[tree.depths])
        end = int(np.argmax(chain_score))
        if chain_score[end] <= score[keep] + 1e-12:
            return keep, None
        path = [end]
        while path[-1] > 0:
            path.append(int(tree.parents[path[-1]]))
        return keep, np.array(path[::-1])
