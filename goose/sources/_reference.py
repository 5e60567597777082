"""Slow references for the built-in sources (used by tests; never on a hot path)."""

from __future__ import annotations

from collections.abc import Sequence

from ._base import Proposal
from ._ngram import ngram_confidence

__all__ = ["naive_ngram_propose"]


def naive_ngram_propose(
    context: Sequence[int],
    path: Sequence[int],
    ngram_sizes: Sequence[int],
    max_tokens: int,
    max_matches: int = 1,
    policy: str = "earliest",
    name: str = "context",
) -> list[Proposal]:
    """What :class:`ContextNGramSource` must return, by scanning the whole context."""
    s = [int(t) for t in context]
    query_text = s + [int(t) for t in path]
    for n in sorted(set(ngram_sizes), reverse=True):
        if len(query_text) < n:
            continue
        query = query_text[-n:]
        starts = [i for i in range(len(s) - n) if s[i : i + n] == query]
        if not starts:
            continue
        if policy == "latest":
            starts = starts[::-1]
        firsts: list[int] = []
        for i in starts:
            if s[i + n] not in firsts:
                firsts.append(s[i + n])
        out = []
        for first in firsts[:max_matches]:
            occ = [i for i in starts if s[i + n] == first]
            cont = tuple(s[occ[0] + n : occ[0] + n + max_tokens])
            conf = ngram_confidence(n, len(occ), len(starts))
            out.append(Proposal(cont, (conf,) * len(cont), name, f"n{n}", len(occ), len(starts)))
        return out
    return []
