"""Predicted vs realised acceptance of ``@auto`` methods, offline: each prompt's trace of a
``goose bench --trace`` run replayed (``sim.replay``, the learning sources fed the recorded
rows) with the method at budget ``auto`` under the cost curve the trace recorded (the cached
curve for a trace without one), and the calibration table the bench would report
(``ReplayResult.calibration``; bins with at least 100 nodes; a star marks a bin of at least
200 nodes off by more than 0.05). For the recorded method, or a context-only one, on its
trace's curve the table is the bench's exactly: runs/trace30's traces of ``goose@auto`` give
``pld@auto``'s table of runs/vs-suffix4 bin for bin (214 nodes at 0.9-1.0, predicted 0.936,
realised 0.850). Estimator variants are keyword arguments of
``goose.trees.AcceptanceEstimator``, so a change to the estimator can be tried in a minute
instead of a bench run.

    python benchmarks/calibration_replay.py runs/trace30 --traces goose@auto --methods pld,goose \\
        --variant "{}" --variant "{'prior_strength': 8}"

An ad-hoc measurement kept so the numbers quoted in the issue notes can be reproduced; not a test.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

import goose.hf as gh
import goose.methods._builtin as builtin
from goose.engine import GenerationRequest
from goose.engine._stats import CALIBRATION_BINS
from goose.methods import get_method
from goose.theory import CostCurve
from goose.trees import AcceptanceEstimator
from sim import load_trace, replay, replay_sources


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--traces", default="", help="the traced method's folder under RUN/traces (default: the first's)")
    ap.add_argument("--methods", default="pld,goose,best-first")
    ap.add_argument("--variant", action="append", default=[], help="estimator keyword arguments, a Python dict")
    args = ap.parse_args()
    traces = sorted((args.run / "traces" / args.traces).glob("*.jsonl"))
    for variant in args.variant or ["{}"]:
        kw = ast.literal_eval(variant)
        builtin._estimator = lambda kw=kw: AcceptanceEstimator(calibrate=True, **kw)
        for name in args.methods.split(","):
            table: dict = {}
            calls = new = 0
            for path in traces:
                header, steps = load_trace(path)
                curve = CostCurve.from_json(header["cost_curve"]) if header.get("cost_curve") else _cached_curve()
                plan = GenerationRequest(get_method(name), "auto").plan(curve)
                sources, rows = replay_sources(plan.sources, header, steps)
                r = replay(path, plan.shaper, sources, plan.budget, rows=rows)
                calls, new = calls + r.forward_calls, new + len(header["tokens"])
                for key, cell in r.calibration.items():
                    into = table.setdefault(key, {k: [0.0] * CALIBRATION_BINS for k in cell})
                    for k, values in cell.items():
                        into[k] = [a + b for a, b in zip(into[k], values, strict=True)]
            print(f"== {name}@auto, estimator {kw}: MAT {new / calls:.3f}")
            for key, cell in table.items():
                for b in range(CALIBRATION_BINS):
                    n = cell["n"][b]
                    if n >= 100:
                        p, a = cell["predicted"][b] / n, cell["accepted"][b] / n
                        star = " *" if n >= 200 and abs(a - p) > 0.05 else ""
                        print(f"   {key} {b / CALIBRATION_BINS:.1f} n={int(n)} predicted {p:.3f} "
                              f"realised {a:.3f} ({a - p:+.3f}){star}")


def _cached_curve() -> CostCurve:
    """The cached curve of this machine (what the bench's auto columns were cut by)."""
    model, _ = gh.load_model("smollm2")
    return gh.calibrate(model)


if __name__ == "__main__":
    main()
