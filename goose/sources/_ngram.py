"""Context n-gram matching (prompt lookup decoding) with an incremental index."""

from __future__ import annotations

from collections.abc import Sequence

from ._base import Proposal, TokenSource

__all__ = ["ContextNGramSource", "ngram_confidence"]


def ngram_confidence(n: int, support: int, total: int) -> float:
    """Prior acceptance estimate of a matched continuation.

    Longer matches and occurrences that agree on the next token are more reliable:
    ``(support / total) * (1 - 2**-n) * total / (total + 1)``. It is only a prior;
    :class:`goose.AcceptanceEstimator` corrects it from what is actually accepted.
    """
    return (support / total) * (1.0 - 0.5**n) * total / (total + 1.0)


class ContextNGramSource(TokenSource):
    """Copies what followed an earlier occurrence of the last ``n`` tokens.

    For each ``n`` in ``ngram_sizes`` (longest first), the query is the last ``n``
    tokens of ``context + path``; occurrences are searched in the committed context
    only, and only where a following token exists (so the query never matches
    itself). The first ``n`` with any occurrence wins. Occurrences are grouped by the
    token that follows them; up to ``max_matches`` groups (distinct first tokens)
    become proposals, each continuing for up to ``max_tokens`` tokens from its
    preferred occurrence (``policy="earliest"`` or ``"latest"``).

    The index maps every n-gram to its start positions and is extended with each
    new committed token, so a step costs O(new tokens x len(ngram_sizes)).

    Args:
        ngram_sizes: match lengths to try, e.g. ``(5, 4, 3)``.
        max_tokens: longest continuation per proposal.
        max_matches: how many distinct continuations to return.
        policy: which occurrence a continuation is copied from.
        name: the source's name in trees and statistics.

    Example:
        >>> src = ContextNGramSource(ngram_sizes=(2,), max_tokens=3)
        >>> src.propose([1, 2, 3, 4, 9, 1, 2])[0].tokens
        (3, 4, 9)
    """

    def __init__(
        self,
        ngram_sizes: Sequence[int] = (5, 4, 3),
        max_tokens: int = 20,
        max_matches: int = 1,
        policy: str = "earliest",
        name: str = "context",
    ) -> None:
        sizes = tuple(int(n) for n in ngram_sizes)
        if not sizes:
            raise ValueError("ngram_sizes is empty: give at least one match length")
        if min(sizes) < 1:
            raise ValueError(f"n-gram sizes must be >= 1, got {sizes}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if max_matches < 1:
            raise ValueError(f"max_matches must be >= 1, got {max_matches}")
        if policy not in ("earliest", "latest"):
            raise ValueError(f"policy must be 'earliest' or 'latest', got {policy!r}")
        self.ngram_sizes = tuple(sorted(set(sizes), reverse=True))
        self.max_tokens = int(max_tokens)
        self.max_matches = int(max_matches)
        self.policy = policy
        self.name = name
        self.kind = "spine"
        self.prefill_positions = "none"  # it reads the context itself; nothing to learn from passes
        self._stream: list[int] = []
        self._index: dict[int, dict[tuple[int, ...], list[int]]] = {n: {} for n in self.ngram_sizes}

    def begin(self, prompt: Sequence[int]) -> None:
        self._stream = []
        self._index = {n: {} for n in self.ngram_sizes}
        self._extend(prompt)

    def commit(self, new_tokens: Sequence[int]) -> None:
        self._extend(new_tokens)

    def _sync(self, context: Sequence[int]) -> None:
        """Bring the index up to ``context`` when it was not kept in step through
        :meth:`commit` (a standalone call): append-only, rebuilt if it changed."""
        s = self._stream
        if len(s) == len(context) and (not s or context[-1] == s[-1]):
            return
        if len(s) > len(context) or (s and context[len(s) - 1] != s[-1]):
            self.begin(())
        self._extend(context[len(self._stream):])

    def _extend(self, tokens: Sequence[int]) -> None:
        s = self._stream
        old = len(s)
        s.extend(int(t) for t in tokens)
        new = len(s)
        for n, table in self._index.items():
            # positions i become indexable once a token follows the n-gram: i + n < len
            for i in range(max(0, old - n), new - n):
                table.setdefault(tuple(s[i : i + n]), []).append(i)

    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        self._sync(context)
        s = self._stream
        tail = s[-max(self.ngram_sizes):] + [int(t) for t in path] if path else s
        for n in self.ngram_sizes:
            if len(tail) < n:
                continue
            starts = self._index[n].get(tuple(tail[-n:]))
            if not starts:
                continue
            order = starts if self.policy == "earliest" else reversed(starts)
            groups: dict[int, list[int]] = {}
            for i in order:
                groups.setdefault(s[i + n], []).append(i)
            total = len(starts)
            out = []
            for _, occ in list(groups.items())[: self.max_matches]:
                begin = occ[0] + n
                tokens = tuple(s[begin : begin + self.max_tokens])
                conf = ngram_confidence(n, len(occ), total)
                out.append(
                    Proposal(tokens, (conf,) * len(tokens), self.name, f"n{n}", len(occ), total)
                )
            return out
        return []
