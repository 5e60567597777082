"""Exact sampling from logits known within bounds, exact entries computed on demand.

A tree pass on a CPU can project every row onto the vocabulary in bfloat16 (cheap)
and in float32 only where a draw needs it. :class:`BoundedLogits` holds such a pass:
approximate logits ``a`` ``[num_nodes, vocab]``, a radius ``r`` with ``|a - l| <= r``
for the float32 logits ``l``, and the exact entries or rows on demand.
:func:`sample_bounded` draws one token from the processed target distribution ``p``
of a row (temperature, then top-p, as plain sampling does) with exactly ``p``'s law:

1. **Gumbel-max.** ``y = argmax_j (l_j / T + G_j)`` with ``G_j`` i.i.d. standard Gumbel
   is a sample of ``softmax(l / T)``. The bounds put each ``l_j / T + G_j`` in an
   interval; only the columns whose upper end reaches the largest lower end can win,
   and only those are computed exactly.
2. **Nucleus by rejection.** Top-p keeps the nucleus ``K`` and renormalises, so
   ``p = softmax(l / T)`` conditioned on ``K``: drawing from ``softmax(l / T)`` until a
   draw lies in ``K`` gives ``p`` exactly. ``y`` lies in ``K`` iff the mass strictly
   above ``y`` is below ``top_p`` (transformers' ``TopPLogitsWarper``). The columns
   that can lie above ``y`` are computed exactly, every other column adds between its
   bounds to the normaliser, and a draw these bounds cannot decide is decided on the
   exact row.

Top-k is applied on the exact row (:func:`sample_processed`). docs/theory.md, section 7d,
states the argument; tests/test_bounded.py checks it draw for draw against Gumbel-max on
the exact row, and the law against :func:`process_logits`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._params import process_logits

__all__ = ["BoundedLogits", "gumbel", "in_nucleus", "processed_probs", "sample_bounded", "sample_processed"]

NUCLEUS_TOP = 1024
"""Entries a fast nucleus looks at before it sorts the whole row."""
EXACT_CAP = 4096
"""Most entries computed exactly for one nucleus decision; past it the exact row decides."""
MAX_TRIES = 16
"""Draws rejected outside the nucleus before the exact row samples (each is in it w.p. >= top_p)."""


class BoundedLogits:
    """Target logits of a tree pass: approximate everywhere, exact on demand.

    Args:
        approx: ``[num_nodes, vocab]`` float32 approximate logits ``a``.
        radius: ``radius(node)`` -> ``[vocab]`` bounds ``r`` with ``|a - l| <= r``.
        entries: ``entries(node, cols)`` -> ``[len(cols)]`` float32 logits ``l`` there.
        rows: ``rows(node)`` -> ``[vocab]`` the whole float32 row of ``l``.

    ``exact_rows`` and ``exact_entries`` count what was computed exactly.
    """

    def __init__(self, approx: torch.Tensor, radius: Callable[[int], torch.Tensor],
                 entries: Callable[[int, torch.Tensor], torch.Tensor], rows: Callable[[int], torch.Tensor]) -> None:
        self.approx = approx
        self._radius, self._entries, self._rows = radius, entries, rows
        self._cache: dict[int, torch.Tensor] = {}
        self.exact_rows = 0
        self.exact_entries = 0

    @property
    def shape(self) -> torch.Size:
        return self.approx.shape

    def dim(self) -> int:
        return 2

    def radius(self, node: int) -> torch.Tensor:
        return self._radius(node)

    def entries(self, node: int, cols: torch.Tensor) -> torch.Tensor:
        """``[len(cols)]`` exact logits of ``node`` at ``cols``."""
        if node in self._cache:
            return self._cache[node][cols]
        self.exact_entries += int(cols.numel())
        return self._entries(node, cols)

    def row(self, node: int) -> torch.Tensor:
        """``[vocab]`` exact logits of ``node`` (computed once)."""
        if node not in self._cache:
            self.exact_rows += 1
            self._cache[node] = self._rows(node)
        return self._cache[node]

    @classmethod
    def around(cls, logits: torch.Tensor, radius: float | torch.Tensor,
               generator: torch.Generator | None = None) -> BoundedLogits:
        """Exact ``logits`` ``[n, vocab]`` seen through bounds of ``radius``: the
        approximation moves each entry by a uniform amount within it (for tests and
        references)."""
        r = torch.as_tensor(radius, dtype=torch.float32).expand_as(logits).clone()
        noise = (torch.rand(logits.shape, generator=generator) * 2 - 1) * r
        exact = logits.float()
        return cls(exact + noise, lambda i: r[i], lambda i, cols: exact[i, cols], lambda i: exact[i])


def gumbel(n: int, generator: torch.Generator) -> torch.Tensor:
    """``[n]`` i.i.d. standard Gumbel draws, float64 (float32 uniforms would cut the
    tail at 16.6 and bias the draw toward the likeliest tokens)."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return -torch.log(-torch.log(u))


def processed_probs(row: torch.Tensor, temperature: float, top_k: int = 0,
                    top_p: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The processed distribution of one exact row ``[vocab]`` as ``(ids, probs)``:
    the tokens it keeps and their probabilities (float32), the same as
    ``process_logits(row[None], ...).softmax(-1)`` without sorting the whole row when
    the nucleus lies among the :data:`NUCLEUS_TOP` largest entries."""
    scores = row.to(torch.promote_types(row.dtype, torch.float32))  # float64 stays float64
    if temperature != 1.0:
        scores = scores / temperature
    if top_k > 0:
        kth = torch.topk(scores, min(top_k, scores.shape[-1])).values[-1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        m = min(NUCLEUS_TOP, scores.shape[-1])
        vals, ids = torch.topk(scores, m)  # [m] descending
        probs = (vals - torch.logsumexp(scores, -1)).exp()
        above = probs.cumsum(-1) - probs  # mass strictly above each entry
        keep = above < top_p
        keep[0] = True
        if not bool(keep[-1]) or m == scores.shape[-1]:
            ids, vals = ids[keep], vals[keep]
            return ids, (vals - torch.logsumexp(vals, -1)).exp()
        scores = process_logits(row[None], temperature, top_k, top_p)[0]  # the nucleus is wide: sort all
    ids = torch.isfinite(scores).nonzero().squeeze(1)
    return ids, scores[ids].softmax(-1)


def sample_processed(row: torch.Tensor, generator: torch.Generator, temperature: float, top_k: int = 0,
                     top_p: float = 1.0) -> int:
    """One token from the processed distribution of an exact row ``[vocab]``."""
    ids, probs = processed_probs(row, temperature, top_k, top_p)
    return int(ids[torch.multinomial(probs, 1, generator=generator)])


def in_nucleus(logits: BoundedLogits, node: int, y: int, v: float, lo: torch.Tensor, hi: torch.Tensor,
               temperature: float, top_p: float) -> bool | None:
    """Whether token ``y``, of scaled exact logit ``v`` (``l / T``), is in the top-p
    nucleus of ``node``, from bounds ``lo <= l / T <= hi`` (``[vocab]``, float64) and
    exact entries; ``None`` when the bounds cannot tell. The columns that can lie above
    ``v`` are computed exactly; every other column adds between its bounds to the
    normaliser."""
    cols = (hi >= v).nonzero().squeeze(1)  # [c] the columns that can lie above it (y among them)
    if cols.numel() > EXACT_CAP:
        return None
    s = logits.entries(node, cols).double() / temperature  # [c]
    above = torch.exp(s[(s > v) & (cols != y)] - v).sum()  # mass strictly above y, times exp(-v)
    known = torch.exp(s - v).sum()
    # every other column adds between exp(lo - v) and exp(hi - v): sums over all columns, less the known ones
    z_lo = known + (torch.exp(lo - v).sum() - torch.exp(lo[cols] - v).sum()).clamp_min(0)
    z_hi = known + torch.exp(hi - v).sum() - torch.exp(hi[cols] - v).sum()
    if float(above / z_lo) < top_p:
        return True
    if float(above / z_hi) >= top_p:
        return False
    return None


def sample_bounded(logits: BoundedLogits, node: int, generator: torch.Generator, temperature: float,
                   top_k: int = 0, top_p: float = 1.0) -> int:
    """One token from the processed target distribution of row ``node``, exactly, by
    Gumbel-max on the bounds and a nucleus by rejection (module docstring)."""
    if top_k > 0:
        return sample_processed(logits.row(node), generator, temperature, top_k, top_p)
    a, r = logits.approx[node].double(), logits.radius(node).double()  # [vocab] each
    lo, hi = (a - r).div_(temperature), (a + r).div_(temperature)  # bounds of l / T
    for _ in range(MAX_TRIES):
        g = gumbel(a.shape[0], generator)  # [vocab]
        floor = (lo + g).max()
        cand = (hi + g >= floor).nonzero().squeeze(1)  # [c] the columns that can win
        s = logits.entries(node, cand).double() / temperature
        best = int((s + g[cand]).argmax())
        y, v = int(cand[best]), float(s[best])
        if top_p >= 1.0:
            return y
        keep = in_nucleus(logits, node, y, v, lo, hi, temperature, top_p)
        if keep is None:
            ids, _ = processed_probs(logits.row(node), temperature, 0, top_p)
            keep = bool((ids == y).any())
        if keep:
            return y
    return sample_processed(logits.row(node), generator, temperature, 0, top_p)
