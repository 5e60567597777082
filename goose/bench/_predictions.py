"""The bench report's "Predicted vs measured" section (``sim.predict_bench``'s output)."""

from __future__ import annotations

import numpy as np

__all__ = ["prediction_errors", "prediction_lines"]


def prediction_errors(predictions: dict) -> dict:
    """The simulator's held-out errors over every task/method cell: mean and largest
    absolute error, cells within 5%, and the rank correlation of predicted with
    measured MAT (Spearman); for ``@auto`` columns also the speed-up errors."""
    from scipy.stats import spearmanr

    cells = [(p["sim"], p["measured"]) for rows in predictions.values() for p in rows.values() if p.get("sim")]
    speed = [p["sim_speedup"] / p["speedup"] - 1 for rows in predictions.values() for p in rows.values()
             if p.get("sim_speedup") and p.get("speedup")]
    if not cells:
        return {}
    err = np.array([abs(s / m - 1) for s, m in cells])
    rho = float(spearmanr([s for s, _ in cells], [m for _, m in cells]).statistic) if len(cells) > 2 else None
    out = {"cells": len(cells), "mae": float(err.mean()), "max": float(err.max()),
           "within_5": int((err <= 0.05).sum()), "spearman": rho}
    if speed:
        out |= {"speedup_cells": len(speed), "speedup_max": float(np.max(np.abs(speed))),
                "speedup_within_10": int((np.abs(speed) <= 0.10).sum())}
    return out


def prediction_lines(predictions: dict) -> list[str]:
    """Markdown: per task and method, measured MAT, the replay's and the held-out
    simulator's predictions with their errors, a summary line, and for ``@auto``
    columns the predicted speed-up against the run's."""
    lines = ["", "## Predicted vs measured MAT", "",
             ("Replay: each prompt's trace replayed offline with the method's shaper and budget, from the "
              "method's own trace where it was traced (*own*), else the first traced method's; rows unknown: "
              "the share of replayed nodes whose target row the trace lacked (none: the replay is exact). "
              "Simulator, held out: each prompt predicted by source models (`sim.fit_model`) fitted to the "
              "method's own replays of the task's other prompts, 4000 steps; `@auto` columns run the method's own "
              "shaper and estimator on the confidences its sources gave there (`sim.fit_beliefs`), one generation "
              "at a time. Error = predicted / measured - 1."), "",
             "| task | method | measured | replay | error | rows unknown | simulator | error |",
             "|---|---|---|---|---|---|---|---|"]
    for task, rows in predictions.items():
        for label, p in rows.items():
            sim = "- | -" if p["sim"] is None else f"{p['sim']:.2f} | {p['sim'] / p['measured'] - 1:+.1%}"
            unknown, own = "-" if p.get("rows_missing") is None else f"{p['rows_missing']:.1%}", p.get("own_trace")
            lines.append(f"| {task} | {label} | {p['measured']:.2f} | {p['replay']:.2f}{' (*own*)' if own else ''} | "
                         f"{p['replay'] / p['measured'] - 1:+.1%} | {unknown} | {sim} |")
    e = prediction_errors(predictions)
    if e:
        rho = "-" if e["spearman"] is None else f"{e['spearman']:.3f}"
        lines += ["", f"Simulator over {e['cells']} cells: mean absolute error {e['mae']:.1%}, largest {e['max']:.1%}, "
                      f"{e['within_5']} within 5%; rank correlation (Spearman) {rho}."]
    speed = [(task, label, p) for task, rows in predictions.items() for label, p in rows.items()
             if p.get("sim_speedup") and p.get("speedup")]
    if speed:
        lines += ["", "Speed-up vs `ar`, `@auto` columns: the simulated steps, cut by the run's cost curve and "
                      "priced by it made non-decreasing (forward passes only), against the measured wall clock. "
                      "The prompt's prefill, the same for both, is priced by the prefills the curve measured, "
                      "or where it holds none (curves calibrated before 2026-12-07) by the run's own prefill of "
                      "that prompt (`sim.prefill_seconds`).", "",
                  "| task | method | measured | simulator | error |", "|---|---|---|---|---|"]
        lines += [f"| {task} | {label} | {p['speedup']:.2f}x | {p['sim_speedup']:.2f}x | "
                  f"{p['sim_speedup'] / p['speedup'] - 1:+.1%} |" for task, label, p in speed]
    return lines
