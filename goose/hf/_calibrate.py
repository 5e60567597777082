"""Measuring the forward cost curve c(n) of tree passes (for ``--budget auto``)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..kernels import PackedLinear, linear_plan_digest
from ..paths import cache_dir
from ..theory import CostCurve
from ..trees import DraftTree
from ._batch import HFBatchTarget
from ._target import HFTarget

__all__ = ["BATCH_CALIBRATION_ROWS", "BATCH_CALIBRATION_WIDTHS", "CALIBRATION_CONTEXTS", "CALIBRATION_SIZES",
           "calibrate", "calibrate_batch"]

CALIBRATION_SIZES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
CALIBRATION_CONTEXTS = (256, 1024)
BATCH_CALIBRATION_ROWS = (1, 2, 3, 4, 6, 8)
BATCH_CALIBRATION_WIDTHS = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16)


def _curve_file(model: Any, what: str) -> tuple[str, Path]:
    """The cache key and file of one of ``model``'s cost curves on this machine: the
    model, device, dtype, thread count and kernel plan, then ``what`` (the settings of
    the measurement)."""
    device = next(model.parameters()).device
    key = (f"{model.config._name_or_path}|{model.config.model_type}|{device}|{model.dtype}|"
           f"{torch.get_num_threads()}|packed={linear_plan_digest(model)}|{PackedLinear.PACK_ROWS}|{what}")
    return key, cache_dir("cost") / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".json")


def _keep(curve: CostCurve, key: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(curve.to_json() | {"key": key}))


def calibrate(
    model: Any, sizes: Sequence[int] = CALIBRATION_SIZES, context: int | Sequence[int] = CALIBRATION_CONTEXTS,
    reps: int = 7, cache: bool = True, argmax_only: bool = True, bounded: bool = False, refresh: bool = False,
) -> CostCurve:
    """Measure the forward cost c(n) of a tree pass over n tokens (median of ``reps``)
    after ``context`` cached tokens (one length, or several: then the curve holds one
    row per length, and :class:`~goose.trees.AutoBudgetShaper` reads it at the current
    one). ``argmax_only`` times the passes greedy verification runs (see
    :attr:`HFTarget.argmax_only_logits`); ``False``, those sampling runs: with
    ``bounded``, the passes whose logits a sampling verifier reads within bounds
    (:attr:`HFTarget.bounded_logits`), else float32 logits for every node.
    Lengths past the model's window are left out (if none fits, as many tokens as fit
    are used). The prefill of each length is timed too (one pass, after a short
    warm-up): :meth:`CostCurve.prefill_cost` prices a prompt by it. Cached per model,
    device, dtype, thread count and kernel plan under ``$GOOSE_CACHE/cost`` unless
    ``cache=False``;
    ``refresh`` measures anew and replaces the cached curve (``goose calibrate``: a
    machine whose speed has changed keeps no stale curve; ``goose bench`` shows how far
    the run's passes were from the curve)."""
    key, path = _curve_file(model, f"argmax_only={argmax_only}|bounded={bounded}|v9|{list(sizes)}|{context}")
    if cache and path.exists() and not refresh:
        return CostCurve.load(path)
    target = HFTarget(model)
    many = not isinstance(context, int)
    room = target.max_positions - max(sizes) - 1
    lengths = sorted({int(c) for c in (context if many else [context]) if c <= room})
    if not lengths and room < 1:
        raise ValueError(f"a pass of {max(sizes)} tokens does not fit the model's window ({target.max_positions})")
    lengths = lengths or [room]  # a window shorter than every length asked for: as much context as fits
    rng = np.random.default_rng(0)
    # A random block, repeated: the model soon predicts it confidently, as it does most
    # tokens of real text (the argmax-only head costs more on flat distributions).
    block = [int(t) for t in rng.integers(0, int(model.config.vocab_size), 32)]
    rows, prefills = [], []
    target.prefill(block[: min(8, lengths[0])])  # warm-up: a process's first pass pays for more than its tokens
    for length in lengths:
        t0 = time.perf_counter()
        target.prefill([block[i % len(block)] for i in range(length)])
        prefills.append((length, time.perf_counter() - t0))  # what a prompt of this length costs (CostCurve.prefill_cost)
        times: dict[int, list[float]] = {n: [] for n in sizes}
        for _ in range(reps + 1):  # rounds over all sizes, so drifting load hits each size alike
            for n in sizes:
                nxt = [block[(length + i) % len(block)] for i in range(n)]
                tree = DraftTree.chain(nxt[0], nxt[1:])
                t0 = time.perf_counter()
                target.forward_tree(tree, argmax_only=argmax_only, **({"bounded": True} if bounded else {}))
                times[n].append(time.perf_counter() - t0)
                target.commit(tree, [])
                target.rewind(1)  # back to the same length: every pass sees the same context
        rows.append([float(np.median(times[n][1:])) for n in sizes])  # round 1 = warm-up
    curve = CostCurve(list(sizes), rows if many else rows[0], lengths if many else None, prefill=prefills)
    if cache:
        _keep(curve, key, path)
    return curve


def calibrate_batch(model: Any, rows: Sequence[int] = BATCH_CALIBRATION_ROWS,
                    widths: Sequence[int] = BATCH_CALIBRATION_WIDTHS, context: int = 256, reps: int = 7,
                    cache: bool = True, argmax_only: bool = True, refresh: bool = False) -> CostCurve:
    """Measure the cost of one batched tree pass (:class:`HFBatchTarget`) over ``r`` rows
    of ``w`` tokens each, after ``context`` cached tokens per row (as many as fit a
    shorter window; median of ``reps``): the batch-aware cost curve ``auto`` reads in
    :func:`~goose.hf.generate_batch`.
    Returned as a :class:`~goose.theory.CostCurve` over widths with one row per row
    count (``curve(w, context=r)``; counts between those measured are interpolated).
    The medians are kept as measured, even where a wider pass is cheaper than a narrower
    one (the linear kernels' plan changes with the row count): the cut then prefers
    the wider, fuller trees. Cached as :func:`calibrate` is; ``refresh`` measures anew
    and replaces the cached curve (``goose calibrate --batch``)."""
    key, path = _curve_file(model, f"batch|argmax_only={argmax_only}|v4|{list(rows)}|{list(widths)}|{context}")
    if cache and path.exists() and not refresh:
        return CostCurve.load(path)
    room = HFTarget(model).max_positions - max(widths) - 1
    if room < 1:
        raise ValueError(f"a pass of {max(widths)} tokens does not fit the model's window")
    rng = np.random.default_rng(0)
    block = [int(t) for t in rng.integers(0, int(model.config.vocab_size), 32)]  # as calibrate: a repeated block
    prompt = [block[i % len(block)] for i in range(min(context, room))]  # a short window: as much as fits
    table = []
    for r in sorted({int(x) for x in rows}):
        target = HFBatchTarget(model)
        target.prefill([prompt] * r)
        times: dict[int, list[float]] = {w: [] for w in widths}
        for _ in range(reps + 1):  # each round in a fresh random order: no width always follows the widest
            for w in rng.permutation(list(widths)).tolist():
                nxt = [block[(len(prompt) + i) % len(block)] for i in range(w)]
                trees = [DraftTree.chain(nxt[0], nxt[1:])] * r
                t0 = time.perf_counter()
                target.forward_trees(trees, argmax_only=[argmax_only] * r, bounded=[False] * r)
                times[w].append(time.perf_counter() - t0)
                target.commit(trees, [[]] * r)
                target.rewind(1)
        # the medians as measured: the cost is not monotone in the width (a kernel may run
        # 4 x 3 rows slower than 4 x 4), and the cut reads it as it is
        table.append([float(np.median(times[w][1:])) for w in widths])
    curve = CostCurve(list(widths), table, sorted({int(x) for x in rows}))
    if cache:
        _keep(curve, key, path)
    return curve
