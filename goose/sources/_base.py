"""The TokenSource interface: who proposes candidate tokens for a node of the tree.

A source is asked, for one node, "what comes after this?": it sees the committed
context (ending with the root token) and the draft path from the root down to the
node, and answers with zero or more :class:`Proposal` s. After each forward pass it
may learn from what the target computed (:meth:`TokenSource.observe`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DraftDist", "Lifecycle", "Observation", "Proposal", "TokenSource"]


@dataclass(frozen=True, slots=True)
class DraftDist:
    """A source's draft distribution ``q`` at one node, sparse: the listed tokens
    carry ``probs`` and every other token shares the remaining mass ``rest``.

    Attributes:
        ids: token ids, distinct, most likely first.
        probs: their probabilities, each in ``[0, 1]``.
        rest: ``1 - sum(probs)``, the mass the source puts on unlisted tokens (a
            drafter draws children only among ``ids``, from ``probs`` renormalised).

    Example:
        >>> DraftDist((4, 7), (0.5, 0.25)).rest
        0.25
    """

    ids: tuple[int, ...]
    probs: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.probs):
            raise ValueError(f"{len(self.ids)} ids but {len(self.probs)} probabilities")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("a draft distribution lists each token once")
        if any(not 0.0 <= p <= 1.0 for p in self.probs) or sum(self.probs) > 1.0 + 1e-6:
            raise ValueError("draft probabilities must lie in [0, 1] and sum to at most 1")

    @property
    def rest(self) -> float:
        return max(0.0, 1.0 - float(sum(self.probs)))


@dataclass(frozen=True, slots=True)
class Proposal:
    """One candidate continuation of a node.

    Attributes:
        tokens: the continuation; ``tokens[0]`` is a child of the queried node,
            ``tokens[1]`` its child, and so on (a chain of length >= 1).
        confidence: for each token, the source's estimate in ``[0, 1]`` that it is
            accepted given that everything before it was (conditional acceptance).
        source: name of the proposing source (statistics are kept per name).
        key: statistics bucket inside the source, e.g. ``"rank0"`` or ``"n5"``.
        support: for match-based sources, how many earlier occurrences back the
            first token; ``total`` how many occurrences were found (0 when unknown).
        q: the source's draft distribution at the queried node (the same object on
            every proposal of one query), or ``None`` for a deterministic source. A
            stochastic shaper draws children from it; a source that has none is
            drafted as point masses (sample-and-match).

    Example:
        >>> Proposal((5, 6), (0.7, 0.7), "context").tokens
        (5, 6)
    """

    tokens: tuple[int, ...]
    confidence: tuple[float, ...]
    source: str
    key: str = ""
    support: int = 0
    total: int = field(default=0)
    q: DraftDist | None = None

    def __post_init__(self) -> None:
        if not self.tokens:
            raise ValueError("a proposal carries at least one token")
        if len(self.confidence) != len(self.tokens):
            raise ValueError(
                f"{len(self.tokens)} tokens but {len(self.confidence)} confidences"
            )
        for c in self.confidence:
            if not 0.0 <= c <= 1.0:
                raise ValueError(f"confidence {c} is outside [0, 1]")


@dataclass(frozen=True, slots=True)
class Observation:
    """What the target computed in one forward pass, for sources that learn.

    Positions are in processing order (for a tree pass: node order).

    Attributes:
        tokens: ``[n]`` token fed at each processed position.
        prev_tokens: ``[n]`` the token before it on its own path (``-1`` if none).
        topk_ids: ``[n, k]`` the target's ``k`` most likely next tokens after each
            position, best first.
        topk_probs: ``[n, k]`` their probabilities (softmax over the full vocabulary).
        parents: ``[n]`` for a tree pass, the position of each position's parent in
            this pass (``-1`` for the root); ``None`` for a prefill, whose positions
            are consecutive prompt positions.
    """

    tokens: np.ndarray
    prev_tokens: np.ndarray
    topk_ids: np.ndarray
    topk_probs: np.ndarray
    parents: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = self.tokens.shape[0]
        if self.prev_tokens.shape != (n,) or self.topk_ids.shape[0] != n:
            raise ValueError("observation arrays disagree on the number of positions")
        if self.topk_probs.shape != self.topk_ids.shape:
            raise ValueError("topk_ids and topk_probs must have the same shape [n, k]")


class Lifecycle:
    """The per-sequence hooks the decode loop calls on every source and shaper.

    For one generation, in this order:

    1. ``begin(prompt)`` once, before the prefill;
    2. per step: the shaper's ``shape`` (which queries the sources), the target's
       pass, ``observe`` (sources) and ``record`` (shapers), then ``commit(new)``;
    3. ``end(tokens)`` once, with the whole sequence (prompt + new tokens); or, if the
       generation raised, ``abort(tokens)`` with what was committed (which by default
       calls ``end``).

    ``commit`` receives exactly the tokens appended to the sequence: the prefill's
    first token, then each step's accepted draft and bonus, cut where generation
    stops (EOS, token limit), so ``prompt + all commits == tokens`` of ``end``.
    Objects that keep an incremental view of the sequence update it here instead of
    diffing the context they are shown. Every hook is optional (no-ops here).
    """

    def begin(self, prompt: Sequence[int]) -> None:  # noqa: B027 - optional hook
        """A new sequence starts; ``prompt`` is its committed context. Forget per-sequence state."""

    def commit(self, new_tokens: Sequence[int]) -> None:  # noqa: B027 - optional hook
        """``new_tokens`` were appended to the sequence (never empty)."""

    def end(self, tokens: Sequence[int]) -> None:  # noqa: B027 - optional hook
        """The sequence is finished; ``tokens`` is all of it, prompt first."""

    def abort(self, tokens: Sequence[int]) -> None:
        """The generation raised (a bad tree, an interrupt, a failing pass) after
        ``begin``; ``tokens`` is what was committed. Called instead of ``end``, so state
        kept across requests (a caller's :class:`~goose.methods.Memory`) can be left
        consistent. By default it ends the sequence like :meth:`end`."""
        self.end(tokens)


class TokenSource(Lifecycle, ABC):
    """Proposes candidate next tokens for a node of the draft tree.

    Subclasses implement :meth:`propose`; the :class:`Lifecycle` hooks and
    :meth:`observe` are optional. A source must be deterministic given what it has seen (the
    verifier's randomness is drawn only after the tree is fixed), and never import
    transformers.

    "No proposal" is an empty list. A source must return an empty list for an empty
    context (conformance check ``goose.testing.check_source``).

    Example:
        >>> class Repeat(TokenSource):
        ...     name = "repeat"
        ...     def propose(self, context, path=()):
        ...         last = (list(context) + list(path))[-1:]
        ...         return [Proposal(tuple(last), (0.5,), self.name)] if last else []
        >>> Repeat().propose([1, 2, 3])[0].tokens
        (3,)
    """

    name: str = "source"
    kind: str = "branch"
    """The label of the tree nodes this source proposes: ``"spine"`` (reliable tokens
    that make a deep chain) or ``"branch"`` (fallbacks). Streaming colours and the
    spine/branch counts read it from the tree (:attr:`DraftTree.kinds`)."""
    prefill_positions: str = "all"
    """Which prompt positions :meth:`observe` needs to see after the prefill: ``"all"``,
    ``"last-token"`` (the last position of each distinct token), ``"last-pair"`` (of
    each distinct (previous token, token) pair) or ``"none"``. A source whose table
    keeps only the latest prediction per token (or pair) loses nothing by the narrower
    choices, and the target skips the vocabulary projection at the other positions."""

    def observe(self, obs: Observation) -> None:  # noqa: B027 - optional hook
        """Learn from one forward pass of the target (prefill or verification)."""

    @abstractmethod
    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        """Candidate continuations of the node reached by ``path``.

        Args:
            context: the committed tokens; ``context[-1]`` is the root (a read-only
                view: what was appended since the last call came through
                :meth:`commit`). Between :meth:`begin` and :meth:`end` it only grows
                at its end.
            path: draft tokens from the root's child down to the queried node
                (empty: the root itself is queried).

        Returns:
            Proposals, best first; each ``tokens[0]`` would become a child of the
            queried node. Empty when the source has nothing to say.
        """
