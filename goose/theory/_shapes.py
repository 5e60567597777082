"""The two-source model: a context spine (alpha) and recycled branches (betas).

Candidate tree of the model: the root and every spine node have one spine child
(acceptance ``alpha_d = alpha * decay**(d - 1)`` at depth d) and branch children of
rank j (acceptance ``betas[j]``); branch nodes have branch children only. With one
source (``alpha = 0``) this is Sequoia's positional model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import isotonic_regression

from ._trees import best_first_lazy

__all__ = [
    "CostCurve",
    "OptimalShape",
    "balanced_value",
    "best_budget",
    "chain_value",
    "check_model",
    "optimal_shape",
    "threshold_shape",
]


def check_model(alpha: float, betas: Sequence[float], decay: float = 1.0) -> None:
    """Raise ``ValueError`` unless the parameters are probabilities whose sibling sum
    (spine child plus every branch rank at one node) is at most 1."""
    for name, x in [("alpha", alpha), ("decay", decay), *((f"betas[{j}]", b) for j, b in enumerate(betas))]:
        if not 0.0 <= x <= 1.0:
            raise ValueError(f"{name} = {x} is not a probability in [0, 1]")
    if any(betas[j] < betas[j + 1] for j in range(len(betas) - 1)):
        raise ValueError(f"betas must be non-increasing by rank, got {list(betas)}")
    if alpha + sum(betas) > 1.0 + 1e-12:
        raise ValueError(
            f"alpha + sum(betas) = {alpha + sum(betas):.4f} > 1: under greedy verification "
            "siblings are mutually exclusive, so their acceptances sum to at most 1"
        )


def chain_value(alpha: float, length: int, decay: float = 1.0) -> float:
    """E[A] of a bare spine of ``length`` nodes: sum over d of prod alpha_1..alpha_d."""
    value, p = 0.0, 1.0
    for d in range(1, length + 1):
        p *= alpha * decay ** (d - 1)
        value += p
    return value


@dataclass(frozen=True)
class OptimalShape:
    """The optimal tree of a budget under the two-source model.

    Attributes:
        value: E[A] of the tree (tokens per step = 1 + value).
        spine_length: spine nodes kept.
        branch_nodes: ``[spine_length + 1]`` branch nodes hanging (at any depth) below
            spine depth i (i = 0 is the root).
        threshold: smallest path probability kept (the tau_B of the docs).
        parents, accept: the tree itself as arrays (node 0 the root).
        kinds: ``"s"`` for spine nodes (and the root), ``"b"`` for branch nodes.
    """

    value: float
    spine_length: int
    branch_nodes: tuple[int, ...]
    threshold: float
    parents: tuple[int, ...]
    accept: tuple[float, ...]
    kinds: tuple[str, ...] = ()


def optimal_shape(alpha: float, betas: Sequence[float], budget: int, decay: float = 1.0) -> OptimalShape:
    """Best-first (optimal) tree of ``budget`` draft nodes under the model."""
    check_model(alpha, betas, decay)

    def children(item: tuple[str, int, int]) -> Iterable[tuple[tuple[str, int, int], float]]:
        kind, spine_depth, depth = item
        if kind == "s" and alpha > 0:
            yield ("s", spine_depth + 1, depth + 1), alpha * decay**spine_depth
        for b in betas:
            yield ("b", spine_depth, depth + 1), b

    picked = best_first_lazy(("s", 0, 0), children, budget)
    spine = sum(1 for _, (k, _, d), _ in picked if k == "s" and d > 0)
    branches = [0] * (spine + 1)
    for _, (k, sd, _), _ in picked:
        if k == "b":
            branches[sd] += 1
    parents = tuple(p for p, _, _ in picked)
    probs = [v for _, _, v in picked]
    accept = tuple([1.0] + [probs[i] / probs[parents[i]] for i in range(1, len(picked))])
    return OptimalShape(
        value=float(sum(probs[1:])),
        spine_length=spine,
        branch_nodes=tuple(branches),
        threshold=float(min(probs)),
        parents=parents,
        accept=accept,
        kinds=tuple(k for _, (k, _, _), _ in picked),
    )


def threshold_shape(alpha: float, betas: Sequence[float], tau: float) -> tuple[int, list[int]]:
    """Closed form of the optimal shape at threshold ``tau`` (constant alpha): every
    candidate with P(v) >= tau is kept, so the spine has
    ``L = floor(ln tau / ln alpha)`` nodes and spine depth i carries the branch paths
    ``(j_1, j_2, ...)`` with ``alpha**i * beta_j1 * beta_j2 * ... >= tau``.

    Returns ``(L, [branch nodes below spine depth i for i = 0..L])``.
    """
    check_model(alpha, betas)
    if not 0 < tau <= 1:
        raise ValueError(f"tau must lie in (0, 1], got {tau}")
    if alpha >= 1.0:
        raise ValueError("alpha = 1 has an unbounded spine")
    length = int(math.floor(math.log(tau) / math.log(alpha) + 1e-12)) if alpha > 0 else 0

    def count(p: float) -> int:  # branch paths below a node of probability p
        return sum(1 + count(p * b) for b in betas if p * b >= tau * (1 - 1e-12))

    return length, [count(alpha**i) for i in range(length + 1)]


def balanced_value(
    betas: Sequence[float], budget: int, k: int, max_depth: int = 6, min_accept: float = 0.01
) -> float:
    """E[A] of the isotropic control: breadth-first, every node takes ranks 0..k-1
    (acceptance ``betas[rank]``) while its depth is below ``max_depth``."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    value, size = 0.0, 0
    queue = [(1.0, 0)]
    i = 0
    while i < len(queue) and size < budget:
        p, depth = queue[i]
        i += 1
        if depth >= max_depth:
            continue
        for b in list(betas)[:k]:
            if size >= budget or b < min_accept:
                break
            value += p * b
            size += 1
            queue.append((p * b, depth + 1))
    return value


def _linear(tokens: np.ndarray, seconds: np.ndarray, n: float) -> float:
    """Seconds at ``n`` tokens, linear between the points and past the last along the
    last segment (below the first, the first point's seconds; one point is flat)."""
    if tokens.size > 1 and n > tokens[-1]:
        slope = (seconds[-1] - seconds[-2]) / (tokens[-1] - tokens[-2])
        return float(seconds[-1] + slope * (n - tokens[-1]))
    return float(np.interp(n, tokens, seconds))


class CostCurve:
    """Forward cost c(n) in seconds for a pass over n tokens, interpolated linearly
    between measured points (and extrapolated from the last two).

    Optionally measured at several context lengths (``contexts``, ascending; then
    ``seconds`` has one row per context): ``c(n, context=L)`` interpolates between
    the rows linearly in L and extrapolates past the last two (attention over the
    cache grows linearly with its length); below the first context, and with no
    ``context`` given, the first row applies.

    ``prefill`` optionally holds measured prompt passes, ``(tokens, seconds)`` pairs
    (``goose.hf.calibrate`` times the prefills of its contexts): :meth:`prefill_cost`
    reads them with the first row's small passes. A prefill of hundreds of tokens is
    not a draft pass extrapolated: the small passes' slope flattens past a dozen
    tokens, and on a 2-core CPU a 1,000-token prefill took 20 times the 32-token pass.

    Example:
        >>> c = CostCurve([1, 16, 32], [0.037, 0.068, 0.091])
        >>> round(c(8), 4)
        0.0515
        >>> c2 = CostCurve([1, 8], [[0.040, 0.058], [0.046, 0.067]], contexts=[256, 1024])
        >>> round(c2(8, context=640), 4), round(c2(8, context=1792), 4)
        (0.0625, 0.076)
    """

    def __init__(self, tokens: Sequence[int], seconds: Sequence[float] | Sequence[Sequence[float]],
                 contexts: Sequence[int] | None = None,
                 prefill: Sequence[tuple[int, float]] | None = None) -> None:
        t = np.asarray(tokens, dtype=np.float64)
        s = np.asarray(seconds, dtype=np.float64)
        rows = s if contexts is not None else s[None] if s.ndim == 1 else s
        if t.size == 0 or rows.ndim != 2 or rows.shape[1] != t.size:
            raise ValueError("a cost curve needs matching, non-empty tokens and seconds")
        if (np.diff(t) <= 0).any() or (rows <= 0).any():
            raise ValueError("tokens must increase and seconds must be positive")
        ctx = np.asarray(contexts if contexts is not None else [0], dtype=np.float64)
        if ctx.ndim != 1 or ctx.size != rows.shape[0] or (np.diff(ctx) <= 0).any():
            raise ValueError("contexts must increase, one per row of seconds")
        self.tokens, self.seconds = t, s
        self.contexts = None if contexts is None else ctx
        self._rows = rows
        self.prefill: np.ndarray | None = None  # [k, 2]: prompt tokens, seconds
        if prefill is not None and len(prefill):
            bad = "prefill holds (tokens, seconds) pairs: positive, one per distinct length"
            try:
                pf = np.asarray(sorted(tuple(float(x) for x in pair) for pair in prefill), dtype=np.float64)
            except (TypeError, ValueError):  # not pairs of numbers, or pairs of unequal lengths
                raise ValueError(bad) from None
            if pf.ndim != 2 or pf.shape[1] != 2 or (pf <= 0).any() or (np.diff(pf[:, 0]) <= 0).any():
                raise ValueError(bad)
            self.prefill = pf

    def prefill_cost(self, n: float) -> float | None:
        """The seconds of a prefill over ``n`` prompt tokens (None without measured
        prefills): linear between the measured passes of the first context row (a short
        prompt is a small pass; its fixed cost is c(1)'s) and the measured prefills past
        them, and beyond the last along the last segment.

        Example:
            >>> c = CostCurve([1, 2], [0.04, 0.05], prefill=[(256, 0.8), (1024, 4.0)])
            >>> round(c.prefill_cost(2), 3), round(c.prefill_cost(129), 3), round(c.prefill_cost(2048), 3)
            (0.05, 0.425, 8.267)
        """
        if self.prefill is None:
            return None
        short = self.tokens < self.prefill[0, 0]
        return _linear(np.concatenate([self.tokens[short], self.prefill[:, 0]]),
                       np.concatenate([self._rows[0][short], self.prefill[:, 1]]), n)

    def _row(self, row: np.ndarray, n: float) -> float:
        return _linear(self.tokens, row, n)

    def _segment(self, context: float | None) -> int | None:
        """The row ``i`` whose segment ``[c[i-1], c[i]]`` (or the last one, past it) a
        context interpolates in; ``None``: the first row alone."""
        c = self.contexts
        if c is None or context is None or c.size == 1 or context <= c[0]:
            return None
        return min(int(np.searchsorted(c, context)), c.size - 1)

    def __call__(self, n: float, context: float | None = None) -> float:
        i = self._segment(context)
        if i is None:
            return self._row(self._rows[0], n)
        c = self.contexts
        lo, hi = self._row(self._rows[i - 1], n), self._row(self._rows[i], n)
        return float(lo + (hi - lo) * (context - c[i - 1]) / (c[i] - c[i - 1]))

    def at(self, n: np.ndarray, context: float | None = None) -> np.ndarray:
        """``[c(n_0), c(n_1), ...]`` for an array of token counts: the values of ``self(n_i,
        context)``, bit for bit, in one call (``auto`` prices every prefix of a tree each step).

        Example:
            >>> c = CostCurve([1, 16, 32], [0.037, 0.068, 0.091])
            >>> c.at(np.array([1, 8, 40])).tolist() == [c(1), c(8), c(40)]
            True
        """
        n = np.asarray(n, dtype=np.float64)
        past = n > self.tokens[-1]  # extrapolated one by one, as the curve does (rare: past the last point)

        def row(r: np.ndarray) -> np.ndarray:
            out = np.interp(n, self.tokens, r)
            out[past] = [_linear(self.tokens, r, x) for x in n[past]]
            return out

        i = self._segment(context)
        if i is None:
            return row(self._rows[0])
        c = self.contexts
        lo, hi = row(self._rows[i - 1]), row(self._rows[i])
        return lo + (hi - lo) * (context - c[i - 1]) / (c[i] - c[i - 1])

    def monotone(self) -> CostCurve:
        """The curve with each context's row made non-decreasing in tokens by isotonic
        regression (``scipy.optimize.isotonic_regression``): a pass over more tokens does
        not cost less, and a measured dip (c(2) under c(1), say, from timing noise) would
        price a draft node below nothing.

        Example:
            >>> CostCurve([1, 2, 3], [0.036, 0.032, 0.040]).monotone().seconds.round(3).tolist()
            [0.034, 0.034, 0.04]
        """
        rows = np.array([isotonic_regression(row).x for row in self._rows])
        return CostCurve(self.tokens, rows if self.contexts is not None else rows[0],
                         None if self.contexts is None else self.contexts, self.prefill)

    @classmethod
    def flat(cls, seconds: float = 1.0) -> CostCurve:
        """A device whose forward cost does not depend on the number of tokens."""
        return cls([1], [seconds])

    @classmethod
    def load(cls, path: str | Path) -> CostCurve:
        """Read ``{"tokens": [...], "seconds": [...]}`` (what ``goose calibrate``
        writes; with ``"contexts"``, ``seconds`` holds one row per context; with
        ``"prefill"``, the measured prefills as ``[tokens, seconds]`` pairs)."""
        return cls.from_json(json.loads(Path(path).read_text()))

    @classmethod
    def from_json(cls, data: dict) -> CostCurve:
        """The curve :meth:`to_json` wrote (exactly: its floats round-trip)."""
        return cls(data["tokens"], data["seconds"], data.get("contexts"), data.get("prefill"))

    def to_json(self) -> dict[str, list]:
        out = {"tokens": self.tokens.tolist(), "seconds": self.seconds.tolist()}
        if self.contexts is not None:
            out["contexts"] = self.contexts.tolist()
        if self.prefill is not None:
            out["prefill"] = self.prefill.tolist()
        return out


def best_budget(
    value: Callable[[int], float], cost: Callable[[float], float], budgets: Iterable[int]
) -> tuple[int, dict[int, float]]:
    """Hardware-aware budget: the B maximising tokens per second
    ``(1 + E[A(T_B)]) / c(1 + B)``.

    Returns ``(best B, {B: predicted tokens per second})``.

    >>> best_budget(lambda b: 0.5 * b, lambda n: float(n), [1, 2, 4])[0]
    1
    """
    rate = {int(b): (1.0 + value(int(b))) / cost(1 + int(b)) for b in budgets}
    if not rate:
        raise ValueError("budgets is empty")
    return max(rate, key=lambda b: (rate[b], -b)), rate
