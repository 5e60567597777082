"""Slow references for verifiers, in float64 (tests use them; never a hot path)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch

from ..trees import DraftTree
from ._base import Verdict

__all__ = ["completed_law", "enumerate_law", "enumerate_random_law", "naive_greedy", "target_law"]


def naive_greedy(tree: DraftTree, logits: torch.Tensor) -> Verdict:
    """Greedy verification path by path: on every root-to-leaf path count the nodes
    whose token equals the argmax at their parent, keep the longest prefix."""
    pred = [int(torch.argmax(row)) for row in logits]
    best: list[int] = []
    for path in tree.paths():
        kept = []
        for v in path:
            if int(tree.tokens[v]) != pred[int(tree.parents[v])]:
                break
            kept.append(v)
        if len(kept) > len(best):
            best = kept
    last = best[-1] if best else 0
    return Verdict(tuple(best), tuple(int(tree.tokens[v]) for v in best), pred[last])


def target_law(tree: DraftTree, probs: np.ndarray) -> dict[tuple[int, ...], float]:
    """Law of the tokens an ancestral sample of the target emits before leaving the
    tree: sequence ``path(v) + (y,)`` for every node ``v`` and every token ``y`` that
    no child of ``v`` carries, with probability ``P_target(path(v)) * p_v(y)``.

    Args:
        probs: ``[num_nodes, vocab]`` float64 target distribution at each node.
    """
    law: dict[tuple[int, ...], float] = {}
    reach = np.zeros(tree.num_nodes)  # P_target(path(v))
    reach[0] = 1.0
    for v in range(tree.num_nodes):
        if v > 0:
            parent = int(tree.parents[v])
            reach[v] = reach[parent] * probs[parent, int(tree.tokens[v])]
        if reach[v] == 0.0:
            continue  # the target never gets here
        prefix = tuple(int(tree.tokens[u]) for u in tree.path_to(v))
        child_tokens = {int(tree.tokens[c]) for c in tree.children(v)}
        for y in np.nonzero(probs[v])[0]:
            if int(y) not in child_tokens:
                law[prefix + (int(y),)] = reach[v] * probs[v, y]
    return law


class _NeedDraw(Exception):
    def __init__(self, node: int) -> None:
        self.node = node


def enumerate_law(
    run: Callable[[Callable[[int], int]], Verdict], probs: np.ndarray
) -> dict[tuple[int, ...], float]:
    """Exact law of ``run(draw).emitted`` when each ``draw(node)`` is an independent
    sample of ``probs[node]``: every sequence of draws is replayed, so the law is of
    the code under test, not of a re-implementation.
    """
    law: dict[tuple[int, ...], float] = defaultdict(float)
    stack: list[tuple[int, ...]] = [()]
    while stack:
        script = stack.pop()
        calls: list[tuple[int, int]] = []

        def draw(node: int) -> int:
            if len(calls) == len(script):
                raise _NeedDraw(node)
            tok = script[len(calls)]
            calls.append((node, tok))
            return tok

        try:
            verdict = run(draw)
        except _NeedDraw as need:
            stack.extend(script + (int(y),) for y in np.nonzero(probs[need.node])[0])
            continue
        weight = 1.0
        for node, tok in calls:
            weight *= probs[node, tok]
        law[verdict.emitted] += weight
    return dict(law)


class _NeedChoice(Exception):
    def __init__(self, options: list[tuple[int, float]]) -> None:
        self.options = options


class _Replay:
    """A :class:`~goose.verify.Randomness` that replays a script of outcomes and
    raises :class:`_NeedChoice` (listing the outcomes and their probabilities) past it."""

    def __init__(self, script: tuple[int, ...]) -> None:
        self.script, self.used, self.weight = script, 0, 1.0

    def _next(self, options: list[tuple[int, float]]) -> int:
        if len(options) == 1:
            return options[0][0]
        if self.used == len(self.script):
            raise _NeedChoice(options)
        choice = self.script[self.used]
        self.used += 1
        self.weight *= dict(options)[choice]
        return choice

    def accept(self, prob: float) -> bool:
        prob = min(max(float(prob), 0.0), 1.0)
        options = [(o, w) for o, w in ((1, prob), (0, 1.0 - prob)) if w > 0]
        return bool(self._next(options))

    def sample(self, probs: np.ndarray) -> int:
        return self._next([(int(i), float(probs[i])) for i in np.nonzero(probs > 0)[0]])


def enumerate_random_law(run: Callable[[object], tuple[int, ...]]) -> dict[tuple[int, ...], float]:
    """Exact law of ``run(rng)`` over every outcome of its random calls: ``rng`` has
    ``accept(prob)`` and ``sample(probs)`` (:class:`goose.verify.Randomness`), each
    call's outcomes are replayed in turn, and the probabilities are multiplied in
    float64. ``run`` returns the emitted tokens; it may draft a tree with the same
    ``rng`` first, so drafting and verification are enumerated together."""
    law: dict[tuple[int, ...], float] = defaultdict(float)
    stack: list[tuple[int, ...]] = [()]
    while stack:
        script = stack.pop()
        rng = _Replay(script)
        try:
            out = run(rng)
        except _NeedChoice as need:
            stack.extend(script + (o,) for o, _ in need.options)
            continue
        law[tuple(out)] += rng.weight
    return dict(law)


def completed_law(law: dict[tuple[int, ...], float], p_of: Callable[[tuple[int, ...]], np.ndarray],
                  length: int) -> dict[tuple[int, ...], float]:
    """The law of the first ``length`` tokens when each sequence of ``law`` (each at
    most ``length`` long) is continued by ancestral sampling of the target
    (``p_of(prefix)`` is its float64 next-token distribution). Equal to the target's
    own law of ``length`` tokens exactly when ``law`` is lossless."""
    out: dict[tuple[int, ...], float] = defaultdict(float)
    frontier = [(seq, w) for seq, w in law.items() if w > 0]
    while frontier:
        seq, w = frontier.pop()
        if len(seq) >= length:
            out[seq[:length]] += w
            continue
        p = p_of(seq)
        frontier.extend((seq + (int(y),), w * float(p[y])) for y in np.nonzero(p > 0)[0])
    return dict(out)
