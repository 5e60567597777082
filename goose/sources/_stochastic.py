"""STAND's logit-based n-gram module: the target's own distributions, kept per n-gram."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from ._base import DraftDist, Observation, Proposal, TokenSource

__all__ = ["StochasticNGramSource"]


class StochasticNGramSource(TokenSource):
    """Proposes, after the last ``n`` tokens, the running average of the target's top-k
    distributions seen after them (Song et al., STAND, arXiv 2506.04708), as a draft
    distribution ``q`` to draw children from.

    * **Key:** the last ``n`` tokens of ``context + path``, tried longest first
      (``ngram_sizes``, default 4, 3, 2, 1); the first ``n`` with an entry answers.
    * **Value:** a sparse distribution of at most ``k`` tokens. When a pass shows the
      target's top-k after a key seen ``c`` times before, the entry becomes
      ``c/(c+1) * old + 1/(c+1) * new`` over the union of tokens, cut back to the ``k``
      most likely; its missing mass is the ``rest`` of the :class:`DraftDist`.
    * **Updates:** from every forward pass: the prefill (each prompt position) and
      every tree pass (every node, rejected ones included: each row is a true
      distribution of the target after that node's own path).
    * **Memory:** at most ``max_entries`` keys over all ``n`` together; past that the
      least recently updated key is dropped. An entry holds ``k`` ids and ``k``
      probabilities (two numpy arrays of ``k`` 8-byte values plus a few hundred bytes
      of Python object overhead), so the default 65,536 entries at ``k = 10`` stay
      under about 40 MB. With ``hot_start=False`` (default) the table is cleared at
      every :meth:`begin`.

    Its proposals are the entry's tokens, most likely first, with their averaged
    probability as confidence and ``key = "n{n}"``; each carries the entry as ``q``.

    Example:
        >>> import numpy as np
        >>> src = StochasticNGramSource(ngram_sizes=(2, 1), k=2)
        >>> src.begin([5, 6])
        >>> src.observe(Observation(np.array([5, 6]), np.array([-1, 5]),
        ...                         np.array([[6, 1], [7, 8]]), np.array([[0.9, 0.1], [0.6, 0.4]])))
        >>> src.propose([5, 6])[0].q
        DraftDist(ids=(7, 8), probs=(0.6, 0.4))
    """

    prefill_positions = "all"

    def __init__(self, ngram_sizes: Sequence[int] = (4, 3, 2, 1), k: int = 10, max_entries: int = 65536,
                 hot_start: bool = False, name: str = "stand") -> None:
        sizes = tuple(sorted({int(n) for n in ngram_sizes}, reverse=True))
        if not sizes or sizes[-1] < 1:
            raise ValueError(f"ngram_sizes must be integers >= 1, got {tuple(ngram_sizes)}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.ngram_sizes, self.k, self.max_entries = sizes, int(k), int(max_entries)
        self.hot_start, self.name = bool(hot_start), name
        self._table: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, int]] = {}
        self._seq: list[int] = []

    def __len__(self) -> int:
        """Keys held."""
        return len(self._table)

    def view(self) -> StochasticNGramSource:
        """A source that reads and updates this one's table but follows a sequence of its
        own: how the rows of one batch share a table (``stand-shared``) while each
        generates its own text. Generations that share a table learn from each other."""
        twin = copy.copy(self)
        twin._seq = []
        return twin

    def begin(self, prompt: Sequence[int]) -> None:
        self._seq = [int(t) for t in prompt]
        if not self.hot_start:
            self._table.clear()

    def commit(self, new_tokens: Sequence[int]) -> None:
        self._seq.extend(int(t) for t in new_tokens)

    def _update(self, key: tuple[int, ...], ids: np.ndarray, probs: np.ndarray) -> None:
        old = self._table.pop(key, None)
        if old is None:
            order = np.argsort(-probs, kind="stable")[: self.k]
            self._table[key] = (ids[order], probs[order], 1)
        else:
            old_ids, old_probs, c = old
            union = np.union1d(old_ids, ids)  # [m]
            avg = np.zeros(union.size)
            avg[np.searchsorted(union, old_ids)] += c * old_probs
            avg[np.searchsorted(union, ids)] += probs
            avg /= c + 1
            order = np.argsort(-avg, kind="stable")[: self.k]
            self._table[key] = (union[order], avg[order], c + 1)
        if len(self._table) > self.max_entries:
            del self._table[next(iter(self._table))]  # least recently updated

    def observe(self, obs: Observation) -> None:
        n, longest = obs.tokens.shape[0], self.ngram_sizes[0]
        if obs.parents is None:  # a prefill: consecutive positions of the whole prompt
            if n != len(self._seq):
                return
            histories = [self._seq[max(0, i + 1 - longest) : i + 1] for i in range(n)]
        else:  # a tree pass: node 0 is the root, the last committed token
            histories = [self._seq[-longest:]]
            for v in range(1, n):
                histories.append((histories[int(obs.parents[v])] + [int(obs.tokens[v])])[-longest:])
        ids = obs.topk_ids[:, : self.k].astype(np.int64)  # [n, k]
        probs = obs.topk_probs[:, : self.k].astype(np.float64)  # [n, k]
        for i, history in enumerate(histories):
            for size in self.ngram_sizes:
                if len(history) >= size:
                    self._update(tuple(history[-size:]), ids[i], probs[i])

    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        if not context:
            return []
        tail = [int(t) for t in context[-self.ngram_sizes[0]:]] + [int(t) for t in path]
        for size in self.ngram_sizes:
            entry = self._table.get(tuple(tail[-size:])) if len(tail) >= size else None
            if entry is None:
                continue
            ids, probs, _ = entry
            probs = np.clip(probs, 0.0, 1.0) / max(1.0, float(np.clip(probs, 0.0, 1.0).sum()))  # float32 rows may sum past 1
            q = DraftDist(tuple(int(t) for t in ids), tuple(float(p) for p in probs))
            return [Proposal((t,), (p,), self.name, f"n{size}", q=q) for t, p in zip(q.ids, q.probs, strict=True)
                    if p > 0]
        return []
