"""The batched decode loop: B sequences, one draft tree each, one target pass a step.

Each row is a generation of its own, with its own sources, shaper, verifier (and
seeded generator) and budget, as :func:`~goose.engine.decode` runs them: the same
checks, the same EOS / length / context cut, the same lifecycle hooks. What the rows
share is the target pass: every live row shapes its tree, the trees go through ONE
forward pass (padded to the largest), and each row is verified and committed on its
own. A row that finishes leaves the batch at once; the others go on.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..sources import TokenSource
from ..trees import AutoBudgetShaper, DraftTree, TreeShaper, check_budget, path_probabilities
from ..verify import BoundedLogits, Verifier
from ._guards import check_prompt, check_tree
from ._loop import _fit, _observe, _Sequence, _show_prefill, _watchers
from ._stats import GenerationResult, GenerationStats

__all__ = ["BatchResult", "BatchTarget", "RowParts", "cut_batch", "decode_batch"]


class BatchTarget(ABC):
    """What the batched loop needs from a model: all rows prefilled into one batch,
    then tree passes over all live rows at once, per-row KV compaction, and rows
    leaving. :class:`goose.hf.HFBatchTarget` is the transformers one.

    Rows are numbered in the order of the prompts given to :meth:`prefill`; after
    :meth:`retire` the live rows keep their relative order. The class attributes mean
    what they mean on :class:`~goose.engine.Target`."""

    vocab_size: int | None = None
    max_positions: int | None = None
    argmax_only_logits: bool = False
    bounded_logits: bool = False

    @abstractmethod
    def prefill(self, prompts: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """Process every prompt into its row of a fresh batch cache; per row, ``[vocab]``
        logits after its last token. Equal consecutive prompts may share one computation."""

    def prefill_topk(self, row: int, k: int,
                     positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """As :meth:`Target.prefill_topk`, for one row of the last prefill (asked once per
        row, before the first tree pass), or ``None`` (the default)."""
        return None

    @abstractmethod
    def forward_trees(self, trees: Sequence[DraftTree], argmax_only: Sequence[bool],
                      bounded: Sequence[bool]) -> list[torch.Tensor | BoundedLogits]:
        """One pass over one tree per live row (in row order): per row ``[num_nodes, vocab]``
        logits after each of its nodes. Appends every tree to its row's cache.
        ``argmax_only`` and ``bounded`` are per row, as :meth:`Target.forward_tree` takes them."""

    @abstractmethod
    def commit(self, trees: Sequence[DraftTree], accepted: Sequence[Sequence[int]]) -> None:
        """Per live row, keep only the root and its ``accepted`` nodes of the last pass."""

    @abstractmethod
    def retire(self, keep: Sequence[int]) -> None:
        """Keep only the live rows at these indices (ascending) and free the others."""

    @abstractmethod
    def cache_lengths(self) -> list[int]:
        """Positions each live row holds in its cache."""


@dataclass
class RowParts:
    """One row's generation: its prompt and the parts :func:`decode` would run."""

    prompt: Sequence[int]
    sources: Sequence[TokenSource]
    shaper: TreeShaper
    verifier: Verifier
    budget: int
    max_new_tokens: int
    on_commit: Callable[[list[int], list[str]], None] | None = None


@dataclass
class BatchResult(Sequence[GenerationResult]):
    """One :class:`~goose.engine.GenerationResult` per row (in input order), and what
    the batch did as a whole.

    Attributes:
        rows: the per-row results; each row's ``stats`` counts its own tokens and
            passes, and its times include the shared passes it took part in.
        forward_calls: batched target passes, the one prefill included.
        time_total: wall time of the whole batch, seconds.
    """

    rows: list[GenerationResult]
    forward_calls: int = 0
    time_total: float = 0.0
    steps: int = 0
    live_rows: list[int] = field(default_factory=list)  # live rows per step
    passes: list[tuple[int, int, float]] = field(default_factory=list)
    """Per tree pass: ``(rows, width, seconds)``, what a batched cost curve's
    ``c(width, context=rows)`` predicts (``goose bench`` checks the one ``auto`` read)."""

    def __getitem__(self, i):  # type: ignore[override]
        return self.rows[i]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[GenerationResult]:
        return iter(self.rows)

    @property
    def new_tokens(self) -> int:
        return sum(len(r.tokens) for r in self.rows)

    @property
    def tokens_per_s(self) -> float:
        """Throughput: new tokens of all rows per second of the batch's wall time."""
        return self.new_tokens / self.time_total if self.time_total else 0.0

    @property
    def mat(self) -> float:
        """Pooled mean accepted tokens: new tokens of all rows per row-pass (each row's
        prefill and every pass it took part in)."""
        calls = sum(r.stats.forward_calls for r in self.rows)
        return self.new_tokens / calls if calls else 0.0

    def to_json(self) -> dict:
        return {"rows": len(self.rows), "new_tokens": self.new_tokens, "forward_calls": self.forward_calls,
                "steps": self.steps, "time_total": self.time_total, "tokens_per_s": self.tokens_per_s,
                "mat": self.mat, "row_mat": [r.stats.mat for r in self.rows],
                "finish_reasons": [r.finish_reason for r in self.rows],
                "mean_live_rows": float(np.mean(self.live_rows)) if self.live_rows else 0.0,
                "passes": [list(p) for p in self.passes]}


class _Row:
    """One row's state in the batched loop."""

    def __init__(self, parts: RowParts, target: BatchTarget, eos: Sequence[int]) -> None:
        self.ids = check_prompt(parts.prompt, target.vocab_size, target.max_positions)
        n = parts.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {n!r}")
        self.parts, self.budget = parts, check_budget(parts.budget)
        self.watchers = _watchers(parts.sources)
        self.passes = {"argmax_only": parts.verifier.argmax_only and target.argmax_only_logits,
                       "bounded": parts.verifier.reads_bounds and target.bounded_logits}
        self.stats = GenerationStats(lossless=bool(parts.verifier.lossless))
        self.eos, self.window, self.vocab = eos, target.max_positions, target.vocab_size
        self.seq: _Sequence | None = None
        self.tree: DraftTree | None = None
        self.size = self.budget  # the budget of the last tree shaped
        self.short = False  # whether that tree filled a budget below the row's
        self.bound: float | None = None  # then, what a larger budget would add (TreeShaper.growth_bound)
        self.reach: int | None = None  # the size asked for first under a batch cut (None: the budget)

    def begin(self) -> None:
        p = self.parts
        self.seq = _Sequence(self.ids, p.max_new_tokens, self.eos, self.window, [*p.sources, p.shaper], p.on_commit)

    def shape(self, size: int | None = None) -> DraftTree:
        """The row's tree at ``size`` nodes (at most its budget; default the budget)."""
        p, seq = self.parts, self.seq
        self.size = self.budget if size is None else min(size, self.budget)
        drafted = check_tree(p.shaper.shape(seq.committed, p.sources, self.size), seq.committed[-1],
                             self.size, self.vocab, p.shaper)
        self.tree = _fit(drafted, seq)
        self.short = self.size < self.budget and drafted.size >= self.size  # a larger budget may add nodes
        # what those nodes may earn (TreeShaper.growth_bound); unknown where the fit cut the tree
        self.bound = p.shaper.growth_bound(drafted) if self.short and self.tree is drafted else None
        return self.tree


def _gains(tree: DraftTree) -> np.ndarray:
    """``[n]``: 1 + E[A] of each prefix of ``tree`` (path probabilities summed in node order)."""
    return np.cumsum(path_probabilities(tree))


def cut_batch(trees: Sequence[DraftTree], cost: Callable[[int, int], float]) -> list[DraftTree]:
    """The trees cut to the common width that maximises the batch's predicted tokens per
    second: ``sum_b (1 + E[A_b](w)) / cost(rows, w)``, where row ``b`` keeps the first
    ``w`` nodes of its tree (its root and ``w - 1`` nodes, in the shaper's growth order:
    for best-first and spine trees, the optimal tree of that size) and ``E[A_b](w)`` sums
    their path probabilities (the trees' confidences). A padded pass costs the same for
    every row up to the widest tree, so one width serves all. ``w = 1`` (no row drafts) is
    a batched plain step: the cut is never predicted slower than one."""
    best, _ = _best_width([_gains(t) for t in trees], cost)
    return [t if t.num_nodes <= best else t.select(np.arange(best)) for t in trees]


def _best_width(gains: Sequence[np.ndarray], cost: Callable[[int, int], float]) -> tuple[int, float]:
    """The common width that scores best for rows of these prefix gains, and its score
    (the first of equal scores)."""
    best, best_score = 1, -1.0
    for w in range(1, max(len(g) for g in gains) + 1):
        score = sum(float(g[min(w, len(g)) - 1]) for g in gains) / cost(len(gains), w)
        if score > best_score + 1e-12:
            best, best_score = w, score
    return best, best_score


def _shape_and_cut(rows: Sequence[_Row], cost: Callable[[int, int], float]) -> list[DraftTree]:
    """Every row's tree, cut as :func:`cut_batch` cuts, from small trees first: what
    :class:`~goose.trees.AutoBudgetShaper` does for one sequence, for a common width.

    Each row is asked for ``reach`` nodes (twice the last cut's, plus two, at least
    ``AutoBudgetShaper.MIN_REACH``).
    A row whose tree filled that budget (``short``) could offer more nodes, each worth at
    most its shaper's bound ``p_b``: at a width ``w`` past its ``n_b`` nodes it earns at
    most ``G_b(n_b) + (w - n_b) p_b``. Let ``m`` be the fewest nodes of a short row. If
    the best width is at most ``m`` and no width past ``m`` could score above it under
    those bounds, the full-budget trees would be cut to the same width and the same
    nodes (each a prefix of its full tree). Otherwise the short rows are shaped again at
    twice the size (at their budget at once, without a bound) until that holds."""
    trees = [r.shape(r.reach) for r in rows]
    while True:
        gains = [_gains(t) for t in trees]
        width, best = _best_width(gains, cost)
        short = [b for b, r in enumerate(rows) if r.short]
        if not short:
            break
        m = min(trees[b].num_nodes for b in short)
        settled = width <= m and all(rows[b].bound is not None for b in short)
        if settled:
            widest = max(r.budget for r in rows) + 1
            per_node = [r.bound if r.short else 0.0 for r in rows]  # what a node past a row's tree earns, at most
            for w in range(m + 1, widest + 1):
                reach = sum(float(g[min(w, len(g)) - 1]) + max(0, w - len(g)) * p
                            for g, p in zip(gains, per_node, strict=True))
                if reach / cost(len(rows), w) > best + 1e-12:
                    settled = False
                    break
        if settled:
            break
        for b in short:
            r = rows[b]
            trees[b] = r.shape(r.budget if r.bound is None else 2 * r.size)
    for r in rows:
        r.reach = max(AutoBudgetShaper.MIN_REACH, 2 * (width - 1) + 2)
    return [t if t.num_nodes <= width else t.select(np.arange(width)) for t in trees]


def decode_batch(target: BatchTarget, rows: Sequence[RowParts], eos_token_ids: Sequence[int] = (),
                 observe_k: int = 10, batch_cost: Callable[[int, int], float] | None = None) -> BatchResult:
    """Generate for every row of ``rows`` at once; per row exactly what :func:`decode`
    would generate with the same parts (greedy: the same tokens; sampling: the same
    law, from the row's own verifier and generator).

    All rows are prefilled in one pass; rows whose prompts equal the previous row's
    share its computation (the target copies the cache). Each row stops on its own (EOS, its token limit, the context window)
    and leaves the batch; the batch ends when every row has. If anything raises,
    every row's sources and shaper hear ``abort``.

    ``batch_cost(rows, width)``: the cost of a pass over ``rows`` rows padded to
    ``width`` tokens (``goose.hf.calibrate_batch``); with it, every step's trees are cut
    to the best common width (:func:`cut_batch`), the batch-aware ``auto``.
    """
    if not rows:
        raise ValueError("decode_batch needs at least one row")
    states = [_Row(p, target, eos_token_ids) for p in rows]
    t_start = time.perf_counter()
    result = BatchResult([])
    begun: list[_Row] = []
    try:
        for r in states:
            r.begin()
            begun.append(r)
        t0 = time.perf_counter()
        all_logits = target.prefill([r.seq.committed for r in states])
        result.forward_calls += 1
        for b, (r, logits) in enumerate(zip(states, all_logits, strict=True)):
            _show_prefill(r.ids, r.watchers, observe_k, lambda k, pos, b=b: target.prefill_topk(b, k, pos))
            first = r.parts.verifier.verify(DraftTree([r.ids[-1]], [-1]), logits[None]).bonus
            r.stats.forward_calls, r.stats.time_prefill = 1, time.perf_counter() - t0
            r.seq.append(*r.seq.cut([first], ["bonus"]))
        live = [r for r in states if not r.seq.done]
        target.retire([i for i, r in enumerate(states) if not r.seq.done])
        while live:
            t0 = time.perf_counter()
            if batch_cost is None:
                trees = [r.shape() for r in live]
            else:
                trees = _shape_and_cut(live, batch_cost)
                for r, t in zip(live, trees, strict=True):
                    r.tree = t
            t1 = time.perf_counter()
            all_logits = target.forward_trees(trees, argmax_only=[r.passes["argmax_only"] for r in live],
                                              bounded=[r.passes["bounded"] for r in live])
            t2 = time.perf_counter()
            verdicts = [r.parts.verifier.verify(t, lg) for r, t, lg in zip(live, trees, all_logits, strict=True)]
            t3 = time.perf_counter()
            target.commit(trees, [v.accepted for v in verdicts])
            result.forward_calls += 1
            result.steps += 1
            result.live_rows.append(len(live))
            result.passes.append((len(live), max(t.num_nodes for t in trees), t2 - t1))
            keep = []
            for i, (r, tree, verdict, lg) in enumerate(zip(live, trees, verdicts, all_logits, strict=True)):
                seq = r.seq
                r.stats.count_step(tree, verdict)
                tokens, kinds = seq.cut(verdict.emitted, [tree.kinds[v] for v in verdict.accepted] + ["bonus"])
                _observe(r.watchers, tree, seq.committed[-2] if len(seq.committed) > 1 else -1, lg, observe_k)
                r.parts.shaper.record(tree, verdict.accepted[: len(tokens)])  # as far as emitted (_loop._emitted_path_note)
                seq.append(tokens, kinds)
                if not seq.done:
                    keep.append(i)
            t4 = time.perf_counter()
            for r in live:  # every live row took part in the whole step
                r.stats.add_times((t0, t1, t2, t3, t4))
            if len(keep) < len(live):
                target.retire(keep)
                live = [live[i] for i in keep]
    except BaseException:
        for r in begun:
            r.seq.close(failed=True)
        raise
    total = time.perf_counter() - t_start
    for r in states:
        r.seq.close()
        r.stats.finish(len(r.seq.new), total)
        result.rows.append(GenerationResult(tokens=r.seq.new, stats=r.stats, kinds=r.seq.kinds,
                                            finish_reason=r.seq.finish_reason))
    result.time_total = total
    return result
