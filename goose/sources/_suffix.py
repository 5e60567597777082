"""Counts-based continuation of the longest suffix seen before (a bounded-depth suffix
trie over the sequence, and optionally over earlier responses).

Written here because no library on PyPI fits: ``suffix-tree`` builds generalised suffix
trees of whole sequences (no appending to a live one, no follower counts), and suffix
arrays (``pydivsufsort``) are static, rebuilt in O(n) per token. Cutting the trie at a
fixed depth keeps each appended token's work constant and the counts exact."""

from __future__ import annotations

from collections.abc import Sequence

from ._base import Proposal, TokenSource

__all__ = ["SuffixSource", "SuffixTable", "suffix_confidence"]


def suffix_confidence(k: int, count: int, total: int) -> float:
    """Prior estimate that a token is accepted when, of the ``total`` times the suffix
    of ``k`` tokens before it occurred, ``count`` were followed by it: the posterior
    mean ``(count + m) / (total + 1)`` under a prior of weight one whose mean
    ``m = 1 - 2**-k`` trusts longer suffixes more. One earlier occurrence of a long
    suffix gives nearly 1, of a short one less; disagreeing followers lower it. It is
    only a prior: :class:`goose.AcceptanceEstimator` corrects it from what is accepted.

    >>> round(suffix_confidence(8, 1, 1), 3), round(suffix_confidence(2, 1, 1), 3), suffix_confidence(1, 1, 2)
    (0.998, 0.875, 0.5)
    """
    return (count + 1.0 - 0.5**k) / (total + 1.0)


class SuffixTable:
    """How often each token followed each recent suffix, for suffixes of 1 to
    ``max_depth`` tokens: a suffix trie cut at that depth, stored as one hash table
    per suffix length (``counts[k][suffix] -> {next token: count}``).

    Appending a token updates one entry per length, so the work per token is
    ``O(max_depth)``, a constant; nothing is ever rebuilt. Sequences added with
    :meth:`add` are kept apart: no suffix spans two of them.

    Example:
        >>> table = SuffixTable(max_depth=2)
        >>> table.extend([1, 2, 3, 1, 2, 4, 1, 2])
        >>> table.continuations([1, 2])
        (2, {3: 1, 4: 1})
    """

    def __init__(self, max_depth: int = 8) -> None:
        if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1:
            raise ValueError(f"max_depth must be an integer >= 1, got {max_depth!r}")
        self.max_depth = max_depth
        self.counts: list[dict[tuple[int, ...], dict[int, int]]] = [{} for _ in range(max_depth + 1)]
        self.tail: list[int] = []  # the last max_depth tokens of the sequence being extended
        self.tokens = 0  # tokens counted, over every sequence

    def extend(self, tokens: Sequence[int]) -> None:
        """Append ``tokens`` to the current sequence, counting each after every suffix before it."""
        tail, depth = self.tail, self.max_depth
        for t in tokens:
            t = int(t)
            for k in range(1, min(depth, len(tail)) + 1):
                follow = self.counts[k].setdefault(tuple(tail[-k:]), {})
                follow[t] = follow.get(t, 0) + 1
            tail.append(t)
            if len(tail) > depth:
                del tail[0]
        self.tokens += len(tokens)

    def add(self, tokens: Sequence[int]) -> None:
        """Count a whole sequence of its own (an earlier response), apart from the others."""
        self.tail = []
        self.extend(tokens)
        self.tail = []

    def continuations(self, query: Sequence[int], min_match: int = 1) -> tuple[int, dict[int, int]]:
        """``(k, counts)``: the longest suffix of ``query`` (``k`` tokens, at most
        ``max_depth``, at least ``min_match``) that was followed by something, and what
        followed it how often; ``(0, {})`` when none was."""
        for k in range(min(self.max_depth, len(query)), min_match - 1, -1):
            follow = self.counts[k].get(tuple(query[-k:]))
            if follow:
                return k, follow
        return 0, {}


class SuffixSource(TokenSource):
    """Continues the longest suffix of ``context + path`` that occurred before, token by
    token, with the follower seen most often, and stops where the chain's estimated
    chance of being accepted whole falls below ``min_prob``.

    Unlike a copied n-gram match (:class:`ContextNGramSource`), every token is chosen
    afresh after the longest suffix that ends at it, and carries its own confidence
    from counts: ``c`` of the ``n`` times its suffix of ``k`` tokens was followed, it
    was followed by this token (:func:`suffix_confidence` of ``k, c, n``). A suffix
    seen rarely or followed by many different tokens gives a low confidence, so a
    chain stops where the text stops repeating itself.

    Args:
        max_depth: the longest suffix matched (the trie's depth).
        min_match: the shortest suffix drafted from.
        max_tokens: the longest chain.
        min_prob: a chain ends before its cumulative confidence (the product along
            it) falls below this.
        max_matches: distinct first tokens proposed (the most frequent ones), each
            continued as a chain.
        shared: a :class:`SuffixTable` of earlier responses (cross-request; the
            ``suffix-shared`` method keeps one in the caller's
            :class:`~goose.methods.Memory`). It is read where it matches a longer
            suffix than this sequence does (counts are added where both match
            the same length), and each finished response is added to it.
        name: the source's name in trees and statistics.

    Example:
        >>> src = SuffixSource(min_match=2, max_tokens=4)
        >>> src.begin([5, 1, 2, 3, 4, 9, 1, 2])
        >>> src.propose([5, 1, 2, 3, 4, 9, 1, 2])[0].tokens
        (3, 4, 9, 1)
    """

    def __init__(self, max_depth: int = 8, min_match: int = 2, max_tokens: int = 16, min_prob: float = 0.05,
                 max_matches: int = 1, shared: SuffixTable | None = None, name: str = "suffix") -> None:
        if not 1 <= min_match <= max_depth:
            raise ValueError(f"min_match must lie in [1, max_depth={max_depth}], got {min_match}")
        if max_tokens < 1 or max_matches < 1:
            raise ValueError(f"max_tokens and max_matches must be >= 1, got {max_tokens} and {max_matches}")
        if not 0.0 <= min_prob < 1.0:
            raise ValueError(f"min_prob must lie in [0, 1), got {min_prob}")
        if shared is not None and shared.max_depth < max_depth:
            raise ValueError(f"the shared table's depth {shared.max_depth} is below max_depth {max_depth}")
        self.max_depth, self.min_match, self.max_tokens = int(max_depth), int(min_match), int(max_tokens)
        self.min_prob, self.max_matches, self.shared, self.name = float(min_prob), int(max_matches), shared, name
        self.kind = "spine"
        self.prefill_positions = "none"  # it reads the sequence itself; nothing to learn from passes
        self._table = SuffixTable(self.max_depth)
        self._length = 0  # tokens of this sequence counted
        self._response: list[int] = []  # this generation's new tokens (for the shared table)

    def begin(self, prompt: Sequence[int]) -> None:
        self._table = SuffixTable(self.max_depth)
        self._table.extend(prompt)
        self._length = len(prompt)
        self._response = []

    def commit(self, new_tokens: Sequence[int]) -> None:
        self._table.extend(new_tokens)
        self._length += len(new_tokens)
        self._response.extend(int(t) for t in new_tokens)

    def end(self, tokens: Sequence[int]) -> None:
        if self.shared is not None and self._response:
            self.shared.add(self._response)  # what this request answered, for the requests after it
        self._response = []

    def abort(self, tokens: Sequence[int]) -> None:
        self._response = []  # a failed generation teaches the shared table nothing

    def _sync(self, context: Sequence[int]) -> None:
        """Catch up with ``context`` when the hooks were not called (a standalone query)."""
        tail = self._table.tail
        if self._length != len(context) or (tail and int(context[-1]) != tail[-1]):
            self.begin(context)

    def _follow(self, query: Sequence[int]) -> tuple[int, dict[int, int]]:
        k, follow = self._table.continuations(query, self.min_match)
        if self.shared is None:
            return k, follow
        ks, other = self.shared.continuations(query, self.min_match)
        if ks > k:
            return ks, other
        if ks == k and other:
            merged = dict(follow)
            for t, c in other.items():
                merged[t] = merged.get(t, 0) + c
            return k, merged
        return k, follow

    def _chain(self, query: list[int], first: int, conf: float) -> tuple[list[int], list[float]]:
        """``first`` and its most frequent followers, each with its confidence, while
        the chain's cumulative confidence stays at ``min_prob`` or above."""
        tokens, confs, prob = [first], [conf], conf
        query.append(first)
        while len(tokens) < self.max_tokens:
            k, follow = self._follow(query[-self.max_depth:])
            if not follow:
                break
            total = sum(follow.values())
            token, count = max(follow.items(), key=lambda tc: tc[1])
            c = suffix_confidence(k, count, total)
            if prob * c < self.min_prob:
                break
            prob *= c
            tokens.append(token)
            confs.append(c)
            query.append(token)
        return tokens, confs

    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        self._sync(context)
        if not context:
            return []
        query = [int(t) for t in context[-self.max_depth:]] + [int(t) for t in path]
        k, follow = self._follow(query[-self.max_depth:])
        if not follow:
            return []
        total = sum(follow.values())
        best = sorted(follow.items(), key=lambda tc: -tc[1])[: self.max_matches]
        out = []
        for token, count in best:
            conf = suffix_confidence(k, count, total)
            if conf < self.min_prob:
                break
            tokens, confs = self._chain(list(query), token, conf)
            out.append(Proposal(tuple(tokens), tuple(confs), self.name, f"k{k}", count, total))
        return out
