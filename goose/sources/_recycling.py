"""Token Recycling: the target's own earlier top-k predictions, kept per token."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._base import DraftDist, Observation, Proposal, TokenSource

__all__ = ["RecyclingSource"]


class RecyclingSource(TokenSource):
    """Proposes, after token ``t``, the top-k tokens the target predicted after ``t``
    the last time it processed ``t``.

    The adjacency table has one row of ``k`` (token, probability) pairs per token id
    and is overwritten from every observed forward pass, rejected tree nodes
    included. Each proposal also carries the row as the draft distribution ``q``
    (:class:`DraftDist`: the k probabilities, the rest of the mass unlisted), which a
    stochastic shaper draws children from. When one pass processes the same token at several positions, the last
    position wins (deterministic, unlike a scatter with repeated indices). With
    ``bigram=True`` a second tier keyed on ``(previous token, token)`` is consulted
    first. Rows never observed propose nothing.

    Cold start: the engine observes the prompt's prefill pass, which seeds the table
    from the prompt itself. ``hot_start=True`` keeps the table across :meth:`begin`
    (statistics then leak between prompts: fine for one user, not for a server).

    Args:
        k: row width (candidates per token), >= 1.
        bigram: consult the ``(prev, token)`` tier first.
        hot_start: keep the table across sequences.
        min_prob: candidates below this probability are not proposed.
        renormalize: rescale each row's probabilities to sum to 1 within its top-k
            (the released GOOSE scores); otherwise they are full-softmax probabilities.
        name: the source's name in trees and statistics.

    Example:
        >>> import numpy as np
        >>> src = RecyclingSource(k=2)
        >>> src.observe(Observation(np.array([4]), np.array([-1]),
        ...                         np.array([[8, 9]]), np.array([[0.6, 0.3]])))
        >>> [p.tokens for p in src.propose([1, 4])], [p.confidence for p in src.propose([1, 4])]
        ([(8,), (9,)], [(0.6,), (0.3,)])
    """

    def __init__(
        self,
        k: int = 8,
        bigram: bool = False,
        hot_start: bool = False,
        min_prob: float = 0.0,
        renormalize: bool = False,
        name: str = "recycled",
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not 0.0 <= min_prob <= 1.0:
            raise ValueError(f"min_prob must lie in [0, 1], got {min_prob}")
        self.k = int(k)
        self.bigram = bool(bigram)
        self.hot_start = bool(hot_start)
        self.min_prob = float(min_prob)
        self.renormalize = bool(renormalize)
        self.name = name
        self.prefill_positions = "last-pair" if self.bigram else "last-token"  # what survives "last one wins"
        self._clear()

    def _clear(self) -> None:
        self._ids = np.full((0, self.k), -1, dtype=np.int64)  # [rows, k]
        self._probs = np.zeros((0, self.k), dtype=np.float64)  # [rows, k]
        self._bigram: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        # the proposals of a table row, made once per version of the row: a step asks for the same
        # rows again and again (each node a shaper expands, and again when ``auto`` widens the tree)
        self._proposals: dict[int, list[Proposal]] = {}
        self._made_for = (self.name, self.min_prob)  # what the cached proposals carry

    def begin(self, prompt: Sequence[int]) -> None:
        if not self.hot_start:
            self._clear()

    def _grow(self, rows: int) -> None:
        have = self._ids.shape[0]
        if rows <= have:
            return
        rows = max(rows, 2 * have)
        ids = np.full((rows, self.k), -1, dtype=np.int64)
        probs = np.zeros((rows, self.k), dtype=np.float64)
        ids[:have], probs[:have] = self._ids, self._probs
        self._ids, self._probs = ids, probs

    def observe(self, obs: Observation) -> None:
        n = obs.tokens.shape[0]
        if n == 0:
            return
        k = min(self.k, obs.topk_ids.shape[1])
        tokens = obs.tokens.astype(np.int64)
        top_ids = obs.topk_ids[:, :k].astype(np.int64)  # [n, k]
        top_probs = obs.topk_probs[:, :k].astype(np.float64)  # [n, k]
        if self.renormalize:
            top_probs = top_probs / np.maximum(top_probs.sum(axis=1, keepdims=True), 1e-300)
        # last occurrence of each token in this pass wins
        _, first_in_reversed = np.unique(tokens[::-1], return_index=True)
        last = n - 1 - first_in_reversed  # [unique]
        self._grow(int(tokens.max()) + 1)
        rows = tokens[last]
        if self._proposals:
            for t in rows.tolist():
                self._proposals.pop(t, None)
        self._ids[rows] = -1
        self._probs[rows] = 0.0
        self._ids[rows, :k] = top_ids[last]
        self._probs[rows, :k] = top_probs[last]
        if self.bigram:
            for i in range(n):  # later positions overwrite earlier ones
                prev = int(obs.prev_tokens[i])
                if prev >= 0:
                    self._bigram[(prev, int(tokens[i]))] = (top_ids[i], top_probs[i])

    def row(self, token: int, prev: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """``([m] ids, [m] probs)`` the table holds after ``token`` (m may be 0)."""
        if self.bigram and prev >= 0:
            hit = self._bigram.get((prev, token))
            if hit is not None:
                return hit
        if 0 <= token < self._ids.shape[0]:
            ids = self._ids[token]
            keep = ids >= 0
            return ids[keep], self._probs[token][keep]
        return np.empty(0, np.int64), np.empty(0, np.float64)

    @staticmethod
    def _q(ids: np.ndarray, probs: np.ndarray) -> DraftDist:
        """The row as a draft distribution: each token once (a hand-made observation may
        repeat one; the target's top-k never does), total mass at most 1."""
        id_list, mass = ids.tolist(), np.clip(probs, 0.0, 1.0)
        if len(set(id_list)) < len(id_list):
            first = np.sort(np.unique(ids, return_index=True)[1])
            id_list, mass = ids[first].tolist(), mass[first]
        total = float(mass.sum())
        return DraftDist(tuple(id_list), tuple((mass / total if total > 1.0 else mass).tolist()))

    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        if not context:
            return []
        if path:
            token = int(path[-1])
            prev = int(path[-2]) if len(path) > 1 else int(context[-1])
        else:
            token = int(context[-1])
            prev = int(context[-2]) if len(context) > 1 else -1
        if (self.bigram and prev >= 0 and (prev, token) in self._bigram) or type(self).row is not RecyclingSource.row:
            return self._made(*self.row(token, prev))  # a bigram row, or a subclass's own rows: made each time
        if self._made_for != (self.name, self.min_prob):  # renamed or refiltered since
            self._proposals.clear()
            self._made_for = (self.name, self.min_prob)
        made = self._proposals.get(token)
        if made is None:
            made = self._proposals[token] = self._made(*self.row(token))
        return list(made)

    def _made(self, ids: np.ndarray, probs: np.ndarray) -> list[Proposal]:
        """The proposals of one row (none for an empty row)."""
        if ids.size == 0:
            return []
        q = self._q(ids, probs)
        return [
            Proposal((int(t),), (float(p),), self.name, f"rank{r}", q=q)
            for r, (t, p) in enumerate(zip(ids.tolist(), probs.tolist(), strict=True))
            if p >= self.min_prob
        ]
