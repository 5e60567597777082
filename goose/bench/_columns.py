"""What each goose column's steps did, pooled over prompts: where the time went, how
well the acceptance estimates were calibrated, and what a lossy column lost; with their
markdown tables (goose bench's report)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ._cost import pool_costs

__all__ = ["PARTS", "THIRD_PARTY", "calibration_table", "f", "goose_columns", "label", "loss_table", "pool_steps",
           "step_plots", "time_table"]


def pool_steps(ok: list[dict]) -> dict:
    """A column's pooled ``time`` split, ``calibration``, passes against its ``cost``
    curve (:func:`~goose.bench._cost.pool_costs`), ``lossless`` flag and, for a lossy
    column, its ``loss`` (see :func:`loss_table`), from its successful records."""
    cell = {"time": _time_split(ok), "calibration": _calibration(ok), "cost": pool_costs(ok),
            "lossless": all(r.get("lossless", True) for r in ok)}
    scored = [r for r in ok if "target_logprob" in r]
    if scored:  # a lossy column: what it lost against the target's own greedy text
        diverged = [r["first_divergence"] for r in scored if r["first_divergence"] is not None]
        cell["loss"] = {
            "n": len(scored), "identical_share": 1 - len(diverged) / len(scored),
            "median_first_divergence": statistics.median(diverged) if diverged else None,
            "target_logprob": statistics.fmean(r["target_logprob"] for r in scored),
            "ar_target_logprob": statistics.fmean(r["ar_target_logprob"] for r in scored),
        }
    return cell


def _calibration(rows: list[dict]) -> dict:
    """Pooled predicted-vs-realised acceptance per ``source/kind`` and confidence bin
    (:attr:`goose.engine.GenerationStats.calibration`)."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        for key, c in (r.get("calibration") or {}).items():
            cell = out.setdefault(key, {k: [0.0] * len(c["n"]) for k in c})
            for k, vals in c.items():
                cell[k] = [a + b for a, b in zip(cell[k], vals, strict=True)]
    return out


PARTS = ("draft", "forward", "verify", "commit", "other")
"""The parts of a goose step's time (:meth:`goose.engine.GenerationStats.time_split`);
``other`` includes the generation's setup."""


def _time_split(rows: list[dict]) -> dict | None:
    """Pooled time split of goose runs: seconds per part, the mean per step (ms) and
    per draft node (us), and the share of step time that is neither the target pass
    nor verification (drafting and bookkeeping: draft + commit + other)."""
    timed = [r["time"] for r in rows if r.get("time")]
    if not timed:
        return None
    sums = {k: sum(t[k] for t in timed) for k in ("prefill", *PARTS, "total", "steps", "nodes")}
    steps, nodes = sums["steps"], sums["nodes"]
    step_time = sums["total"] - sums["prefill"]
    return sums | {
        "per_step_ms": {k: 1e3 * sums[k] / steps if steps else None for k in PARTS},
        "per_node_us": {k: 1e6 * sums[k] / nodes if nodes else None for k in PARTS},
        "overhead_share": (sums["draft"] + sums["commit"] + sums["other"]) / step_time if step_time > 0 else None,
    }


THIRD_PARTY = "third-party"
"""The tag of a column whose method goose does not ship (a plug-in, a peer)."""


def goose_columns(summary: dict) -> list[str]:
    """The columns of goose's own methods that have a speed-up: not ``ar``, transformers'
    or a third-party method (its records' tag; in a run recorded before that tag, a
    column named by a dotted path, ``module:factory``)."""
    tags, overall = summary.get("tags", {}), summary["overall"]
    return [m for m in summary["methods"] if m != "ar" and not m.startswith("hf_") and ":" not in m
            and THIRD_PARTY not in tags.get(m, ()) and overall.get(m, {}).get("speedup_vs_ar")]


def label(summary: dict, m: str) -> str:
    """A column's name, marked when its outputs are lossy (they may differ from the target's)."""
    return m if summary["overall"][m].get("lossless", True) else f"{m} (LOSSY)"


def f(x: float | None, fmt: str = ".2f", suffix: str = "") -> str:
    return "-" if x is None else f"{x:{fmt}}{suffix}"


def time_table(summary: dict) -> list[str]:
    """Where a step's time goes, per goose column (pooled over every prompt)."""
    rows = [(m, c["time"]) for m, c in summary["overall"].items() if c.get("time")]
    if not rows:
        return []
    lines = ["", "## Where a step's time goes", "",
             ("Per goose column, pooled over every prompt: milliseconds per step (one target pass) for "
              "drafting (sources, shaper and the tree check), the target pass, verification, commit (KV "
              "compaction, the sources' updates, streaming) and other (the rest of the call: setup and the "
              "loop itself); microseconds per draft node; and drafting plus bookkeeping (draft + commit + "
              "other) as a share of step time (prefill excluded)."), "",
             "| method | steps | nodes/step | " + " | ".join(f"{p} ms" for p in PARTS)
             + " | draft us/node | overhead share |", "|---" * (len(PARTS) + 5) + "|"]
    for m, t in rows:
        per = t["per_step_ms"]
        lines.append(f"| {label(summary, m)} | {t['steps']} | {f(t['nodes'] / t['steps'] if t['steps'] else None, '.1f')} | "
                     + " | ".join(f(per[p], ".2f") for p in PARTS)
                     + f" | {f(t['per_node_us']['draft'], '.0f')} | {f(t['overhead_share'], '.1%')} |")
    return lines


CALIBRATION_MIN_NODES = 200
"""A calibration bin is reported only when it holds at least this many nodes."""


def calibration_table(summary: dict) -> list[str]:
    """Predicted vs realised acceptance of the nodes each goose column verified."""
    rows = []
    for m, c in summary["overall"].items():
        for key, cal in sorted((c.get("calibration") or {}).items()):
            bins = len(cal["n"])
            for b, n in enumerate(cal["n"]):
                if n >= CALIBRATION_MIN_NODES:
                    pred, real = cal["predicted"][b] / n, cal["accepted"][b] / n
                    noise = 2.0 * math.sqrt(pred * (1.0 - pred) / n)
                    rows.append(f"| {label(summary, m)} | {key} | {b / bins:.1f}-{(b + 1) / bins:.1f} | {n:.0f} | "
                                f"{pred:.3f} | {real:.3f} | {real - pred:+.3f} | {noise:.3f} |")
    if not rows:
        return []
    return ["", "## Calibration: predicted vs realised acceptance", "",
            ("Every node whose parent was accepted had its chance: realised = the share of them accepted, "
             "predicted = the mean confidence the node carried when the tree was shaped (what `auto` cuts "
             f"by). Per column, source/kind and confidence bin; bins with fewer than {CALIBRATION_MIN_NODES} "
             "nodes are left out (the summary JSON has them all). Noise: twice the standard deviation "
             "the realised share would have if the predictions were exact (at most "
             "2 sqrt(p(1 - p) / n) at mean prediction p; about 0.05 at n = 400 and p = 0.5): a "
             "difference inside it is not evidence of miscalibration."), "",
            "| method | source/kind | confidence | nodes | predicted | realised | realised - predicted | noise (2 sd) |",
            "|---|---|---|---|---|---|---|---|", *rows]


def loss_table(summary: dict) -> list[str]:
    """What each LOSSY column gains and loses, per task, against its lossless twin
    (the same column without its ``/verifier``) and the target's own greedy text."""
    lossy = [m for m in summary["methods"] if summary["overall"][m].get("loss")]
    if not lossy:
        return []
    lines = ["", "## LOSSY columns: gain and loss", "",
             ("These columns verify loosely (FLy-style, `goose.verify.LooseVerifier`): their output may differ "
              "from the target's greedy output. Gain: MAT and speed-up over the same method verified "
              "losslessly (its twin column, when the run has it). Loss: the share of prompts whose output "
              "is identical to `ar`, the median first position where an output differs, and the mean "
              "per-token log-probability the target gives the output against the one it gives its own "
              "greedy text (0 = no loss)."), "",
             "| task | column | MAT | twin MAT | speed-up | twin speed-up | identical | first diff (median) "
             "| log-prob | greedy log-prob |", "|---" * 10 + "|"]
    for scope in [*summary["tasks"], "overall"]:
        cells = summary["overall"] if scope == "overall" else summary["tasks"][scope]
        for m in lossy:
            c, loss = cells[m], cells[m].get("loss")
            if not loss:
                continue
            twin = cells.get(m.rpartition("/")[0], {})
            lines.append(f"| {scope} | {label(summary, m)} | {f(c['mat'])} | {f(twin.get('mat'))} | "
                         f"{f(c.get('speedup_vs_ar'), '.2f', 'x')} | {f(twin.get('speedup_vs_ar'), '.2f', 'x')} | "
                         f"{loss['identical_share']:.0%} | {f(loss['median_first_divergence'], '.0f')} | "
                         f"{loss['target_logprob']:.3f} | {loss['ar_target_logprob']:.3f} |")
    return lines


def step_plots(summary: dict, out: Path, plt: Any, save: Callable[[Any, Path], Path]) -> list[Path]:
    """PNG plots: where a step's time goes per column, and the lossy columns' speed
    against the log-probability they lost."""
    paths = []
    timed = [(m, c["time"]["per_step_ms"]) for m, c in summary["overall"].items() if c.get("time")]
    if timed:
        fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(timed)), 4))
        bottom = np.zeros(len(timed))
        for part in PARTS:
            vals = np.array([per[part] or 0.0 for _, per in timed])
            ax.bar(np.arange(len(timed)), vals, 0.6, bottom=bottom, label=part)
            bottom += vals
        ax.set_xticks(np.arange(len(timed)), [label(summary, m) for m, _ in timed], rotation=30, ha="right")
        ax.set_ylabel("ms per step (all prompts)")
        ax.set_title("where a step's time goes")
        ax.legend(fontsize=8)
        paths.append(save(fig, out / "bench_time_split.png"))
    lossy = [(m, c) for m, c in summary["overall"].items() if c.get("loss") and c.get("speedup_vs_ar")]
    if lossy:
        fig, ax = plt.subplots(figsize=(6, 4))
        for m, c in lossy:
            drop = c["loss"]["ar_target_logprob"] - c["loss"]["target_logprob"]
            ax.plot(drop, c["speedup_vs_ar"], "o")
            ax.annotate(m, (drop, c["speedup_vs_ar"]), fontsize=7)
        ax.set_xlabel("log-prob lost per token vs the target's greedy text")
        ax.set_ylabel("speed-up vs ar")
        ax.set_title("LOSSY loose verification: speed against fidelity")
        paths.append(save(fig, out / "bench_loose.png"))
    return paths
