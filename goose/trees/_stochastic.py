"""Stochastic drafting: children drawn from the sources' draft distributions q."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence

import numpy as np

from ..sources import Proposal, TokenSource
from ._base import check_budget
from ._estimate import AcceptanceEstimator
from ._shapers import _EstimatedShaper
from ._tree import DraftTree, TreeBuilder

__all__ = ["StochasticShaper"]


def _collision(probs: np.ndarray) -> float:
    """``sum q^2``: how often a second draw from ``q`` repeats the first."""
    return float(np.square(probs).sum())


class StochasticShaper(_EstimatedShaper):
    """Best-first tree whose children are drawn from a draft distribution ``q``.

    At each expanded node the first source whose proposals carry a ``q``
    (:class:`~goose.sources.DraftDist`) is the **drawn** source: its ``q`` is tempered
    (``q^(1/T)``, renormalised), the tokens deterministic sources propose there are
    removed, and up to ``max_children`` children are drawn without replacement by
    Gumbel-top-k (``argsort(log q + Gumbel noise)``) from this shaper's own seeded
    generator, before the target sees the tree. The tree records exactly that ``q``
    (:attr:`DraftTree.q`) for the verifier. Sources without ``q`` (context n-grams)
    add deterministic children, as in :class:`BestFirstShaper`.

    Node values are path products of acceptance estimates, and the tree keeps the
    ``budget`` most valuable candidates. A drawn child's estimate depends on its
    slot (first, second, ... draw) and depth only, never on the token drawn: which
    drawn children the tree keeps must not depend on what they are, or the verifier
    would be told a ``q`` they were not drawn from. Drawn children enter in draw
    order (slot ``i + 1`` is a candidate only once slot ``i`` is in), so the kept ones
    are a prefix of the draw.

    Args:
        temperature: the sampling temperature (draws from ``q^(1/T)``); at 0, and with
            ``draw=False``, the ``max_children`` most likely tokens of ``q`` become
            deterministic children (plain top-k), verified by sample-and-match.
        seed: seeds the drafting generator at every :meth:`begin` (the same prompt
            drafts the same trees).
        max_children: drawn (or top-k) children per node.
        max_depth: deepest node drafted.
        delay: Dynamic Delayed Tree Expansion (Thomas et al., arXiv 2602.16994):
            nodes above depth ``delay`` get a single drawn child, so the tree is one
            path down to depth ``delay`` and branches only below. ``"auto"`` picks
            ``delay`` each step as the number of leading depths whose estimated
            first-draw acceptance is at least ``confident`` (token-independent, so
            still lossless).
        estimator: online acceptance estimates (per source, slot key, depth).
    """

    def __init__(self, temperature: float = 1.0, draw: bool = True, seed: int = 0, max_children: int = 4,
                 max_depth: int = 8, delay: int | str = 0, confident: float = 0.6,
                 estimator: AcceptanceEstimator | None = None) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if max_children < 1 or max_depth < 1:
            raise ValueError("max_children and max_depth must be >= 1")
        if delay != "auto" and (not isinstance(delay, int) or delay < 0):
            raise ValueError(f"delay must be an integer >= 0 or 'auto', got {delay!r}")
        self.temperature, self.draw, self.seed = float(temperature), bool(draw), int(seed)
        self.max_children, self.max_depth, self.delay, self.confident = max_children, max_depth, delay, confident
        self.estimator = estimator
        self._rng = np.random.default_rng(self.seed)
        self._drawn_source = ""

    @property
    def draws_from_q(self) -> bool:
        """Whether its trees carry drawn children (and need a ``q``-reading verifier)."""
        return self.draw and self.temperature > 0

    def begin(self, prompt: Sequence[int]) -> None:
        self._rng = np.random.default_rng(self.seed)

    def _delay(self, sources: Sequence[TokenSource]) -> int:
        if self.delay != "auto":
            return int(self.delay)
        name = self._drawn_source  # the source drawn from at the last step ("" before the first)
        d = 0
        while d < self.max_depth - 1 and self._a(name, "slot0", d + 1, 0.5) >= self.confident:
            d += 1
        return d

    def _tempered(self, props: list[Proposal], exclude: set[int]) -> tuple[np.ndarray, np.ndarray]:
        q = props[0].q
        ids = np.asarray(q.ids, dtype=np.int64)
        probs = np.asarray(q.probs, dtype=np.float64)
        if self.temperature > 0:
            probs = probs ** (1.0 / self.temperature)
        keep = (probs > 0) & ~np.isin(ids, list(exclude))
        ids, probs = ids[keep], probs[keep]
        return ids, probs / probs.sum() if probs.size else probs

    def shape(self, context: Sequence[int], sources: Sequence[TokenSource], budget: int) -> DraftTree:
        budget = check_budget(budget)
        b, heap, tick = TreeBuilder(context[-1]), [], itertools.count()
        value_of: dict[int, float] = {0: 1.0}
        pending: dict[int, tuple[str, np.ndarray, np.ndarray]] = {}  # node -> (source, q, draw order)
        delay = self._delay(sources) if self.draws_from_q else 0

        def push_slot(node: int, slot: int) -> None:
            name, (ids, probs), order = pending[node]
            if slot >= len(order):
                return
            q_i = np.delete(probs, order[:slot])  # the law of this slot's draw, given the earlier ones
            prior = _collision(q_i / q_i.sum())
            a = self._a(name, f"slot{slot}", b.depths[node] + 1, prior)
            heapq.heappush(heap, (-value_of[node] * a, next(tick), node, int(ids[order[slot]]), (a, prior), name,
                                  f"slot{slot}", (), slot))

        def expand(node: int, rest: tuple) -> None:
            path = b.path_tokens(node)
            depth = len(path) + 1
            if depth > self.max_depth:
                return
            det: dict[int, tuple] = {}
            if rest and rest[2]:
                det[rest[2][0]] = ((self._a(rest[0], rest[1], depth, rest[3][0]), rest[3][0]), rest[0], rest[1],
                                   (rest[0], rest[1], rest[2][1:], rest[3][1:]))
            drawn = None
            for src in sources:
                if rest and src.name == rest[0]:
                    continue
                props = src.propose(context, path)
                if props and props[0].q is not None:
                    drawn = drawn or (src.name, props)
                    continue
                for p in props:
                    a = self._a(p.source, p.key, depth, p.confidence[0])
                    if p.tokens[0] not in det or a > det[p.tokens[0]][0][0]:
                        det[p.tokens[0]] = ((a, p.confidence[0]), p.source, p.key,
                                            (p.source, p.key, p.tokens[1:], p.confidence[1:]))
            for tok, (a, name, key, tail) in det.items():  # a: (estimate, the source's prior)
                heapq.heappush(heap, (-value_of[node] * a[0], next(tick), node, tok, a, name, key, tail, -1))
            if drawn is None:
                return
            name, props = drawn
            self._drawn_source = name
            ids, probs = self._tempered(props, set(det))
            if ids.size == 0:
                return
            width = 1 if depth <= delay else self.max_children
            if self.draws_from_q:
                order = np.argsort(-(np.log(probs) + self._rng.gumbel(size=probs.size)), kind="stable")[:width]
                b.set_q(node, ids, probs)
                pending[node] = (name, (ids, probs), order)
                push_slot(node, 0)
            else:  # plain top-k: deterministic children, valued by their tempered probability
                for rank, i in enumerate(np.argsort(-probs, kind="stable")[:width]):
                    a = self._a(name, f"rank{rank}", depth, float(probs[i]))
                    heapq.heappush(heap, (-value_of[node] * a, next(tick), node, int(ids[i]), (a, float(probs[i])),
                                          name, f"rank{rank}", (), -1))

        expand(0, ())
        while heap and b.size < budget:
            neg_v, _, parent, tok, (a, prior), name, key, tail, slot = heapq.heappop(heap)
            node = b.add(parent, tok, name, a, key, drawn=slot >= 0, prior=prior)
            value_of[node] = -neg_v
            if slot >= 0:
                push_slot(parent, slot + 1)
            expand(node, tail)
        return b.build(sources)
