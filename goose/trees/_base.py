"""The TreeShaper interface: turns proposals into a DraftTree under a node budget."""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from ..sources import Lifecycle, TokenSource
from ._tree import DraftTree

__all__ = ["CANDIDATE_FLOOR", "MAX_NODE_BUDGET", "TreeShaper", "check_budget", "path_probabilities", "source_by_name"]


CANDIDATE_FLOOR = 0.01
"""The default confidence under which the template shapers drop a source's candidate
(:class:`BalancedShaper`'s ``min_confidence``, the released GOOSE rules' ``min_score``);
the simulator counts a recycled row's width with the same floor (``sim.WIDE``)."""

MAX_NODE_BUDGET = 256
"""The most draft nodes goose puts in one tree. A pass over a larger tree costs far more
than it can gain on any device goose has measured (a CPU pass over 257 tokens costs
several plain steps, and even a GPU's flat region ends below it), and its logits and
mask grow with it; a target may set a lower ceiling (``goose.engine.node_ceiling``)."""


def check_budget(budget: int) -> int:
    """``budget`` (draft nodes per step) as an int, or ``ValueError`` unless it is an
    integer in ``[1, MAX_NODE_BUDGET]``. The one budget check: methods, the plan and
    the decode loop all call it."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < 1:
        raise ValueError(f"budget must be an integer >= 1 (draft nodes per step), got {budget!r}")
    if budget > MAX_NODE_BUDGET:
        raise ValueError(f"budget {budget} is above goose's ceiling of {MAX_NODE_BUDGET} draft nodes a step: a "
                         "larger tree pass costs more than it can gain; give a smaller budget or 'auto'")
    return int(budget)


def path_probabilities(tree: DraftTree) -> np.ndarray:
    """``[num_nodes]``: each node's path probability, the product of the confidences from
    the root (1 for the root; a missing confidence, NaN, counts as 0)."""
    conf = np.nan_to_num(np.asarray(tree.confidences, dtype=np.float64))
    prob = np.ones(tree.num_nodes)
    for v in range(1, tree.num_nodes):
        prob[v] = prob[tree.parents[v]] * conf[v]
    return prob


def source_by_name(sources: Sequence[TokenSource], name: str) -> TokenSource | None:
    """The source called ``name`` among ``sources``, or ``None``."""
    for s in sources:
        if s.name == name:
            return s
    return None


class TreeShaper(Lifecycle, ABC):
    """Builds the draft tree of one step.

    Subclasses implement :meth:`shape`; :meth:`record` (the outcome of verifying
    the tree) and the :class:`~goose.sources.Lifecycle` hooks (``begin``,
    ``commit``, ``end``) are optional, for shapers that adapt.

    A **whole-tree drafter** (one that drafts the tree itself, e.g. from an
    external library) is a shaper that ignores ``sources``: it keeps what it needs
    through ``begin``/``commit`` and labels its nodes with ``DraftTree(kinds=...)``;
    its method then runs with no sources (docs: tutorials/external-drafter).

    A shaper must honour the budget exactly (``tree.size <= budget``), return a
    valid tree whose root is ``context[-1]``, and return the root alone when it has
    nothing to propose ("no draft": the engine then takes a plain step). The decode
    loop checks each tree before the target pass (``goose.engine.check_tree``) and
    stops with an error naming the shaper on a violation.

    **Node order.** Number the nodes best-first: under ``budget="auto"``,
    :class:`AutoBudgetShaper` keeps a *prefix* of the tree in node order (the first
    ``k`` nodes), so a node should come after every node more likely to be accepted
    (by path probability, the product of the confidences from the root). Chains are
    best-first by nature; :class:`BestFirstShaper` and :class:`SpineShaper` emit their
    nodes in this order. A tree in another order stays valid, but ``auto`` then keeps
    worse nodes than it could.

    Example:
        >>> from goose.sources import ContextNGramSource
        >>> class FirstProposal(TreeShaper):
        ...     def shape(self, context, sources, budget):
        ...         props = sources[0].propose(context)
        ...         tokens = props[0].tokens[:budget] if props else ()
        ...         return DraftTree.chain(context[-1], tokens)
        >>> FirstProposal().shape([1, 2, 3, 1, 2], [ContextNGramSource((2,))], 4).tokens.tolist()
        [2, 3, 1, 2]
    """

    draws_from_q: bool = False
    """Whether the trees carry children drawn from a source's draft distribution ``q``
    (:attr:`DraftTree.drawn`): the verifier must then read ``q`` (rejection sampling or
    Traversal), and the budget must be fixed (``auto`` would cut by the drawn tokens)."""

    @abstractmethod
    def shape(self, context: Sequence[int], sources: Sequence[TokenSource], budget: int) -> DraftTree:
        """Build the tree for the next step.

        Args:
            context: committed tokens; ``context[-1]`` is the root.
            sources: the token sources to draw proposals from.
            budget: maximum number of draft nodes (root excluded), >= 1.
        """

    def record(self, tree: DraftTree, accepted: Sequence[int]) -> None:  # noqa: B027
        """Outcome of the last step: ``accepted`` lists accepted node indices."""

    def growth_bound(self, tree: DraftTree) -> float | None:
        """What a larger budget would add to ``tree``, the tree this shaper has just
        shaped and whose budget it filled: ``p`` if the larger tree would be ``tree``
        with nodes appended, each of path probability at most ``p``, every prefix being
        the best tree of its size; ``None`` (the default) if that is not known.
        :class:`~goose.trees.AutoBudgetShaper` then shapes a small tree first and the
        full budget only when the bound says a larger tree could be chosen."""
        return None
