"""Choosing :class:`PackedLinear` kernels by measurement, under a memory policy."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ..paths import cache_dir
from ._packed import LINEAR_KERNELS, PackedLinear, mkl_packed_available

__all__ = ["KERNEL_MEMORY", "MKL_PACK_MAX_BYTES", "cpu_name", "describe_linear_plans", "linear_groups",
           "linear_plan_digest", "pack_linears", "tune_linears"]

KERNEL_MEMORY = {
    "lean": ("mkl", "weight-left", "row-pair"),
    "one-copy": ("mkl", "weight-left", "row-pair", "onednn"),
    "fast": LINEAR_KERNELS,
}
"""The kernels each memory policy lets a plan use. ``lean`` keeps no copy of any
weight (the model's own memory only); ``one-copy`` lets a layer keep one oneDNN-packed
copy of its weight; ``fast`` also lets it keep MKL-packed copies, one per row count of
``PackedLinear.MKL_PACK_ROWS`` (up to :data:`MKL_PACK_MAX_BYTES`): the fastest tree
passes on some CPUs, at several times the model's weight memory."""

MKL_PACK_MAX_BYTES = 4 << 30
"""Under ``fast``, the most memory a layer group's ``mkl-packed`` copies may take."""


def cpu_name() -> str:
    """The CPU's model name (for cache keys and benchmark protocols)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def linear_groups(model: Any) -> dict[str, list[PackedLinear]]:
    """``model``'s packed layers that share a plan: ``"layers"`` (the decoder's) and
    ``"head"`` (the output projection), each only if present."""
    mods = [m for m in model.modules() if isinstance(m, PackedLinear)]
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    groups = {"layers": [m for m in mods if m is not head], "head": [m for m in mods if m is head]}
    return {g: ms for g, ms in groups.items() if ms}


def pack_linears(model: Any, tune: bool = False, memory: str = "lean") -> int:
    """Swap every float32 CPU ``nn.Linear`` of ``model`` for a :class:`PackedLinear`
    (same weight and bias objects); returns how many were swapped (0 if already).

    Tree passes feed a handful of rows through every layer. At such sizes the kernel
    (how it streams the weights, whether it re-packs them per call) matters more than
    the arithmetic, and which kernel wins depends on the CPU. ``tune=True`` measures
    the kernels ``memory`` allows (:data:`KERNEL_MEMORY`) by row count on this
    machine (:func:`tune_linears`, ~10 s, cached); otherwise every layer runs
    ``F.linear``. Every method that runs on the model, ``model.generate`` included,
    gets the same layers.
    """
    if memory not in KERNEL_MEMORY:
        raise ValueError(f"unknown kernel memory policy {memory!r}: use {', '.join(KERNEL_MEMORY)}")
    swap = [(name, mod) for name, mod in model.named_modules()
            if type(mod) is torch.nn.Linear and mod.weight.dtype == torch.float32 and mod.weight.device.type == "cpu"]
    for name, mod in swap:
        model.set_submodule(name, PackedLinear(mod))
    if tune and linear_groups(model):
        tune_linears(model, memory=memory)
    return len(swap)


def _allowed(memory: str) -> tuple[str, ...]:
    kernels = KERNEL_MEMORY[memory]
    if not torch.backends.mkldnn.is_available():
        kernels = tuple(k for k in kernels if k != "onednn")
    if not mkl_packed_available():
        kernels = tuple(k for k in kernels if k != "mkl-packed")
    return kernels


def _measure(ms: list[PackedLinear], kernels: tuple[str, ...], reps: int) -> dict[int, list[str]]:
    """Kernels ranked by median time over all of ``ms`` in forward order, per measured row count."""
    measured = [r for r in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32) if r <= PackedLinear.PLAN_ROWS]
    gen = torch.Generator().manual_seed(0)
    ranked: dict[int, list[str]] = {}
    for rows in measured:
        cands = [k for k in kernels if (k != "mkl-packed" or PackedLinear.mkl_pack_rows(rows) is not None)
                 and (k != "row-pair" or rows == 1)]  # past one row, row-pair is weight-left
        xs = {i: torch.randn(1, rows, i, generator=gen) for i in {m.in_features for m in ms}}
        times: dict[str, list[float]] = {k: [] for k in cands}
        for _ in range(reps + 1):  # round 0 warms up (and packs the copies)
            for k in cands:
                t0 = time.perf_counter()
                for m in ms:
                    m.run(k, xs[m.in_features], rows)
                times[k].append(time.perf_counter() - t0)
        ranked[rows] = sorted(cands, key=lambda k: statistics.median(times[k][1:]))
    return ranked


def tune_linears(model: Any, reps: int = 5, cache: bool = True, memory: str = "lean") -> dict[str, list[str]]:
    """Measure, on this machine, the fastest kernel ``memory`` allows for each row
    count of a plan, and give it to ``model``'s :class:`PackedLinear` layers.
    Returns ``{"layers": plan, "head": plan}``.

    One plan serves the decoder layers, timed over all of them in forward order (one
    weight hot in cache or one shape alone misleads, and mixing libraries from layer
    to layer costs more than either alone); the output projection gets its own.
    Median of ``reps`` rounds with the kernels interleaved; rows are measured at 1, 2,
    3, 4, 6, 8, 12, 16, 24 and 32, and counts in between take the choice of the
    measured count below; past the plan (prefill) the 32-row choice. The plans are
    cached per CPU, thread count, torch version, layer shapes and policy under
    ``$GOOSE_CACHE/kernels``.
    """
    groups = linear_groups(model)
    if not groups:
        return {}
    kernels = _allowed(memory)
    shapes = {g: [(m.out_features, m.in_features) for m in ms] for g, ms in groups.items()}
    key = (f"{cpu_name()}|{os.cpu_count()}|{torch.get_num_threads()}|{torch.__version__}|{shapes}|"
           f"{PackedLinear.PACK_ROWS}|{PackedLinear.PLAN_ROWS}|{PackedLinear.MKL_PACK_ROWS}|"
           f"{MKL_PACK_MAX_BYTES}|{kernels}|v5")
    path = cache_dir("kernels") / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".json")
    plans: dict[str, list[str]] = {}
    if cache and path.exists():
        plans = json.loads(path.read_text())["plans"]
    else:
        with torch.inference_mode():
            for g, ms in groups.items():
                pack_bytes = len(PackedLinear.MKL_PACK_ROWS) * sum(m.weight.numel() * 4 for m in ms)
                allowed = tuple(k for k in kernels if k != "mkl-packed" or pack_bytes <= MKL_PACK_MAX_BYTES)
                ranked = _measure(ms, allowed, reps)
                measured = sorted(ranked)
                plan = []
                for r in range(1, PackedLinear.PLAN_ROWS + 1):  # the best allowed at r, measured at or below r
                    below = ranked[max(m for m in measured if m <= r)]
                    plan.append(next(k for k in below if k != "mkl-packed" or PackedLinear.mkl_pack_rows(r) is not None))
                plans[g] = [next(k for k in ranked[measured[-1]] if k != "mkl-packed"), *plan]
                for m in ms:  # free the copies timed here before the next group packs its own
                    m.set_plan(plans[g])
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"key": key, "plans": plans}))
    for ms_group, plan in ((groups[g], plans[g]) for g in groups):
        for m in ms_group:
            m.set_plan(plan)
    return plans


def describe_linear_plans(model: Any) -> str:
    """The kernels ``model``'s packed layers use by row count, e.g.
    ``"layers: mkl 1-3, onednn 4+; head: weight-left 1, mkl 2+"`` (``""`` if none)."""
    parts = []
    for name, mods in linear_groups(model).items():
        plan = mods[0].plan
        runs: list[list] = []
        for r in range(1, len(plan)):
            if runs and runs[-1][0] == plan[r]:
                runs[-1][2] = r
            else:
                runs.append([plan[r], r, r])
        if runs[-1][0] == plan[0]:
            runs[-1][2] = None
        text = ", ".join(f"{k} {a}+" if b is None else f"{k} {a}" if a == b else f"{k} {a}-{b}" for k, a, b in runs)
        parts.append(f"{name}: {text}" + ("" if runs[-1][2] is None else f", {plan[0]} {len(plan)}+"))
    return "; ".join(parts)


def linear_plan_digest(model: Any) -> str:
    """A short digest of the kernel plans of ``model``'s layers (``""`` if none are packed)."""
    plans = sorted({(m.out_features, m.in_features, m.plan) for m in model.modules() if isinstance(m, PackedLinear)})
    return hashlib.sha1(repr(plans).encode()).hexdigest()[:10] if plans else ""
