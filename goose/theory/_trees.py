"""Expected accepted length and optimal trees under independent acceptance.

A candidate tree is given by ``parents`` (node 0 is the root, parents come first)
and ``accept`` (``a(v)`` = P(v accepted | parent accepted); ``accept[0]`` is
ignored). The path probability of ``v`` is ``P(v) = prod of a(u)`` over the path,
and a tree ``T`` accepts ``E[A(T)] = sum_{v in T, v != root} P(v)`` draft tokens
per step in expectation (tokens per step = 1 + E[A]).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "best_first",
    "best_first_lazy",
    "brute_force_optimum",
    "expected_accepted",
    "path_probabilities",
]


def _check(parents: Sequence[int], accept: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    par = np.asarray(parents, dtype=np.int64)
    acc = np.asarray(accept, dtype=np.float64)
    if par.shape != acc.shape or par.ndim != 1 or par.size == 0:
        raise ValueError("parents and accept must be 1-D arrays of the same non-zero length")
    if par[0] != -1 or any(not 0 <= par[i] < i for i in range(1, par.size)):
        raise ValueError("node 0 must be the root and every parent must come before its child")
    if ((acc[1:] < 0) | (acc[1:] > 1)).any():
        raise ValueError("acceptance probabilities must lie in [0, 1]")
    return par, acc


def path_probabilities(parents: Sequence[int], accept: Sequence[float]) -> np.ndarray:
    """``[n]`` P(v) for every node (1 for the root).

    >>> path_probabilities([-1, 0, 1, 0], [1, 0.5, 0.5, 0.25]).tolist()
    [1.0, 0.5, 0.25, 0.25]
    """
    par, acc = _check(parents, accept)
    p = np.ones(par.size)
    for v in range(1, par.size):
        p[v] = p[par[v]] * acc[v]
    return p


def expected_accepted(parents: Sequence[int], accept: Sequence[float]) -> float:
    """E[accepted draft tokens] of the tree: the sum of P(v) over non-root nodes.

    >>> expected_accepted([-1, 0, 1], [1, 0.5, 0.5])
    0.75
    """
    return float(path_probabilities(parents, accept)[1:].sum())


def best_first_lazy(
    root: Any, children: Callable[[Any], Iterable[tuple[Any, float]]], budget: int
) -> list[tuple[int, Any, float]]:
    """Best-first selection over a candidate tree given by a ``children`` function.

    Repeatedly adds the candidate of largest path probability whose parent is
    already chosen; children are only generated for chosen nodes. Equal values go
    to the earlier-generated candidate (shallower first).

    Returns:
        ``(parent index, item, P)`` for the root (parent -1, P = 1) and the chosen
        nodes, in the order they were chosen (a valid parent-first order).
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    chosen: list[tuple[int, Any, float]] = [(-1, root, 1.0)]
    heap: list[tuple[float, int, int, Any]] = []
    tick = itertools.count()

    def push(index: int, item: Any, value: float) -> None:
        for child, a in children(item):
            if a > 0:
                heapq.heappush(heap, (-value * a, next(tick), index, child))

    push(0, root, 1.0)
    while heap and len(chosen) <= budget:
        neg_v, _, parent, item = heapq.heappop(heap)
        chosen.append((parent, item, -neg_v))
        push(len(chosen) - 1, item, -neg_v)
    return chosen


def best_first(parents: Sequence[int], accept: Sequence[float], budget: int) -> list[int]:
    """The ``budget`` non-root nodes of largest P(v): an optimal subtree.

    Returns the chosen node indices of the candidate tree, root first, in the order
    chosen. Nodes with ``a(v) = 0`` are never chosen (they add nothing).

    >>> best_first([-1, 0, 1, 0], [1, 0.9, 0.9, 0.5], budget=2)
    [0, 1, 2]
    """
    par, acc = _check(parents, accept)
    kids: list[list[int]] = [[] for _ in range(par.size)]
    for v in range(1, par.size):
        kids[par[v]].append(v)
    picked = best_first_lazy(0, lambda v: ((c, float(acc[c])) for c in kids[v]), budget)
    return [item for _, item, _ in picked]


def brute_force_optimum(
    parents: Sequence[int], accept: Sequence[float], budget: int
) -> tuple[float, list[int]]:
    """Max of E[A] over every subtree (containing the root) with at most ``budget``
    non-root nodes, by enumeration. Exponential: for tests on small trees only."""
    par, acc = _check(parents, accept)
    prob = path_probabilities(par, acc)
    n = par.size
    best_value, best_set = 0.0, [0]

    def rec(v: int, chosen: list[int], inside: set[int], value: float) -> None:
        nonlocal best_value, best_set
        if v == n:
            if value > best_value + 1e-15:
                best_value, best_set = value, list(chosen)
            return
        rec(v + 1, chosen, inside, value)  # leave v out
        if par[v] in inside and len(chosen) - 1 < budget:
            chosen.append(v)
            inside.add(v)
            rec(v + 1, chosen, inside, value + prob[v])
            chosen.pop()
            inside.discard(v)

    rec(1, [0], {0}, 0.0)
    return best_value, best_set
