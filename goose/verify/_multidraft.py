"""Lossless verification of trees whose children were drawn from a draft distribution q.

Two algorithms over the same trees (:class:`~goose.trees.DraftTree` with ``q`` and
``drawn``; docs/theory.md, section 7b, has the proofs):

* :func:`rejection_walk` -- recursive rejection sampling without replacement
  (SpecTr / Sequoia / Jeon et al.), top-down: at each node try the children in
  :meth:`~goose.trees.DraftTree.verify_order`; child ``x`` with slot law ``q_i`` is
  accepted with probability ``min(1, p(x) / q_i(x))``, else ``p`` becomes the
  residual ``norm(max(p - q_i, 0))``; with every child rejected the bonus is drawn
  from the last residual. On a chain this is Leviathan et al.'s rule.
* :func:`traversal_walk` -- Traversal Verification (Weng et al., NeurIPS 2025),
  leaf to root: the first remaining leaf in DFS order is accepted with its
  sequence-level ratio ``w``, else removed and its parent's ``p`` and ``w`` corrected.

The **slot law** of a child is the distribution it was drawn from given its earlier
siblings: a point mass for a deterministic child; for the i-th drawn child, the
parent's ``q`` without the tokens of the drawn children before it, renormalised. A
deterministic tree makes both algorithms sample-and-match in law.

Randomness comes through a :class:`Randomness` (``accept(prob)``, ``sample(probs)``),
so the float64 references replay every outcome (``goose.verify.enumerate_random_law``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch

from ..trees import DraftTree
from ._base import Verdict

__all__ = ["Randomness", "TorchRandomness", "children_acceptance", "rejection_walk", "slot_law", "topk_acceptance",
           "traversal_walk"]

ProbsAt = Callable[[int], np.ndarray]
"""``p_at(node)``: the float64 ``[vocab]`` target distribution after ``node``."""


class Randomness(Protocol):
    def accept(self, prob: float) -> bool:
        """True with probability ``prob`` (clipped to [0, 1])."""

    def sample(self, probs: np.ndarray) -> int:
        """One index drawn from ``probs`` (``[vocab]``, summing to 1)."""


class TorchRandomness:
    """:class:`Randomness` from a ``torch.Generator`` (CPU)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator

    def accept(self, prob: float) -> bool:
        if prob >= 1.0:
            return True
        if prob <= 0.0:
            return False
        return float(torch.rand((), generator=self.generator, dtype=torch.float64)) < prob

    def sample(self, probs: np.ndarray) -> int:
        return int(torch.multinomial(torch.from_numpy(probs), 1, generator=self.generator))


def slot_law(tree: DraftTree, node: int, child: int, removed: set[int], vocab: int) -> np.ndarray:
    """``[vocab]`` float64 law ``child`` (of ``node``) was drawn from, given that the drawn
    siblings carrying the tokens in ``removed`` came before it."""
    q = np.zeros(vocab)
    if not tree.drawn[child]:
        q[int(tree.tokens[child])] = 1.0
        return q
    ids, probs = tree.q[node]
    q[ids] = probs
    if removed:
        q[list(removed)] = 0.0
    return q / q.sum()


def _residual(p: np.ndarray, q: np.ndarray, x: int) -> np.ndarray:
    """``norm(max(p - q, 0))``; if that has no mass (``p <= q`` everywhere, where a
    rejection cannot happen), ``p`` without ``x``."""
    r = np.maximum(p - q, 0.0)
    s = r.sum()
    if s > 0:
        return r / s
    r = p.copy()
    r[x] = 0.0
    return r / r.sum() if r.sum() > 0 else p


def children_acceptance(tree: DraftTree, node: int, p: np.ndarray) -> float:
    """Exact probability that :func:`rejection_walk`, standing at ``node`` with target
    row ``p`` (``[vocab]``, float64), accepts one of ``node``'s children as drafted:
    ``1 - prod_i (1 - a_i)``, the ``a_i = min(1, p_i(x_i) / q_i(x_i))`` taken along the
    residuals ``p_i`` of the children tried before (the rejections are the only path
    to the next child). Averaged over the drafting's own randomness (many trees), it
    is the acceptance that drawing buys at that node."""
    miss = 1.0
    removed: set[int] = set()
    for c in tree.verify_order(node):
        x = int(tree.tokens[c])
        q = slot_law(tree, node, c, removed, p.shape[0])  # [vocab]
        miss *= 1.0 - min(1.0, p[x] / q[x])
        if miss <= 0.0:
            return 1.0
        p = _residual(p, q, x)
        if tree.drawn[c]:
            removed.add(x)
    return 1.0 - miss


def topk_acceptance(tree: DraftTree, node: int, p: np.ndarray) -> float:
    """Exact probability that sample-and-match accepts a child of ``node`` in the
    deterministic control of its draw: the same deterministic children, and in place
    of the drawn ones as many of the most likely tokens of the same ``q``
    (``draw=False`` in :class:`~goose.trees.StochasticShaper`). That is the target's
    mass on those tokens."""
    kids = tree.children(node)
    tokens = {int(tree.tokens[c]) for c in kids if not tree.drawn[c]}
    drawn = sum(1 for c in kids if tree.drawn[c])
    if drawn:
        ids, probs = tree.q[node]
        tokens |= {int(ids[i]) for i in np.argsort(-np.asarray(probs), kind="stable")[:drawn]}
    return float(p[list(tokens)].sum()) if tokens else 0.0


def rejection_walk(tree: DraftTree, p_at: ProbsAt, rng: Randomness, renormalize: bool = True) -> Verdict:
    """Recursive rejection sampling without replacement (module docstring).

    ``renormalize=False`` is a deliberately broken variant (the residual is not
    normalised), kept for the tests that must catch it."""
    node, accepted = 0, []
    while True:
        p = p_at(node)  # [vocab]
        removed: set[int] = set()
        nxt = None
        for c in tree.verify_order(node):
            x = int(tree.tokens[c])
            q = slot_law(tree, node, c, removed, p.shape[0])  # [vocab]
            if rng.accept(min(1.0, p[x] / q[x])):
                nxt = c
                break
            p = _residual(p, q, x) if renormalize else np.maximum(p - q, 0.0)
            if tree.drawn[c]:
                removed.add(x)
        if nxt is None:
            mass = p.sum()  # 0 only in the broken variant, whose residual may vanish
            return Verdict(tuple(accepted), tuple(int(tree.tokens[v]) for v in accepted),
                           rng.sample(p / mass if mass > 0 else p_at(node)))
        accepted.append(nxt)
        node = nxt


def traversal_walk(tree: DraftTree, p_at: ProbsAt, rng: Randomness, correct: bool = True) -> Verdict:
    """Traversal Verification (module docstring; Weng et al., arXiv 2505.12398).

    Per node ``u`` it keeps the current ``p_u`` and ``w(u)``: untouched nodes take
    ``p_u`` from the target and ``w(c) = min(1, w(u) p_u(c) / q_u(c))`` from their
    parent, where ``q_u`` is the slot law of ``u``'s first remaining child. Removing a
    leaf child ``v`` of ``u`` corrects ``u``: ``r = max(w(u) p_u - q_u, 0)``,
    ``p_u = r / sum(r)``, ``w(u) = sum(r) / (sum(r) + 1 - w(u))``.
    ``correct=False`` (broken, for the tests) skips that correction."""
    left = {u: list(tree.verify_order(u)) for u in range(tree.num_nodes)}  # remaining children
    removed: dict[int, set[int]] = {u: set() for u in range(tree.num_nodes)}
    p: dict[int, np.ndarray] = {}
    w: dict[int, float] = {0: 1.0}  # touched nodes (and the root)

    def probs(u: int) -> np.ndarray:
        if u not in p:
            p[u] = p_at(u)
        return p[u]

    laws: dict[int, np.ndarray] = {}  # slot law of each node's first remaining child

    def law(u: int) -> np.ndarray:
        if u not in laws:
            laws[u] = slot_law(tree, u, left[u][0], removed[u], probs(u).shape[0])
        return laws[u]

    while True:
        chain, ws = [0], [w[0]]  # the first remaining leaf's path and each node's w on it
        while left[chain[-1]]:
            u = chain[-1]
            c = left[u][0]
            x = int(tree.tokens[c])
            ws.append(w[c] if c in w else min(1.0, ws[-1] * probs(u)[x] / law(u)[x]))
            chain.append(c)
        v = chain[-1]
        if v == 0 or rng.accept(ws[-1]):
            path = chain[1:]
            pv = probs(v)
            return Verdict(tuple(path), tuple(int(tree.tokens[n]) for n in path), rng.sample(pv / pv.sum()))
        u, wu = chain[-2], ws[-2]
        if correct:
            r = np.maximum(wu * probs(u) - law(u), 0.0)  # [vocab]
            s = float(r.sum())
            if s > 0:
                p[u], w[u] = r / s, s / (s + 1.0 - wu)
            else:
                w[u] = 0.0
        else:
            w[u] = wu
        left[u].pop(0)
        laws.pop(u, None)
        if tree.drawn[v]:
            removed[u].add(int(tree.tokens[v]))
