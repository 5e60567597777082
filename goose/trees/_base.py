"""The TreeShaper interface: turns proposals into a DraftTree under a node budget."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ..sources import Lifecycle, TokenSource
from ._tree import DraftTree

__all__ = ["TreeShaper", "check_budget", "source_by_name"]


def check_budget(budget: int) -> int:
    """Return ``budget`` as an int, or raise ``ValueError`` if it is below 1."""
    if int(budget) != budget or budget < 1:
        raise ValueError(f"budget must be an integer >= 1 (draft nodes per step), got {budget!r}")
    return int(budget)


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
    nothing to propose ("no draft": the engine then takes a plain step).

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
