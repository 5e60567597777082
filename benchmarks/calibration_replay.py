"""Predicted vs realised acceptance of ``@auto`` methods, offline: each prompt's trace of a
``goose bench --trace`` run replayed (``sim.replay``, the learning sources fed the recorded
rows) with the method at budget ``auto`` under the cached cost curve, and the calibration
table the bench would report (bins with at least 100 nodes; a star marks a bin of at least
200 nodes off by more than 0.05). Estimator variants are keyword arguments of
``goose.trees.AcceptanceEstimator``, so a change to the estimator can be tried in a minute
instead of a bench run. For context-only methods the replay follows the bench's runs: on
runs/trace28, pld@auto's table matched runs/vs-suffix3's to within one node per bin (the
0.7-1.0 bins exactly: 254, 293 and 214 nodes, realised 0.791, 0.850, 0.850).

    python benchmarks/calibration_replay.py runs/trace28 --methods pld,goose,best-first \\
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
from goose.engine._stats import CALIBRATION_BINS, GenerationStats
from goose.methods import get_method
from goose.trees import AcceptanceEstimator
from sim import load_trace, replay, replay_sources


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--methods", default="pld,goose,best-first")
    ap.add_argument("--variant", action="append", default=[], help="estimator keyword arguments, a Python dict")
    args = ap.parse_args()
    model, _ = gh.load_model("smollm2")
    curve = gh.calibrate(model)  # the cached curve the bench's auto columns were cut by
    traces = sorted((args.run / "traces").glob("*.jsonl"))
    for variant in args.variant or ["{}"]:
        kw = ast.literal_eval(variant)
        builtin._estimator = lambda kw=kw: AcceptanceEstimator(calibrate=True, **kw)
        for name in args.methods.split(","):
            stats, calls, new = GenerationStats(), 0, 0
            for path in traces:
                header, steps = load_trace(path)
                plan = GenerationRequest(get_method(name), "auto").plan(curve)
                record = plan.shaper.record

                def counted(tree, accepted, record=record, stats=stats):
                    stats._count_calibration(tree, (0, *accepted))
                    record(tree, accepted)

                plan.shaper.record = counted
                sources, rows = replay_sources(plan.sources, header, steps)
                r = replay(path, plan.shaper, sources, plan.budget, rows=rows)
                calls, new = calls + r.forward_calls, new + len(header["tokens"])
            print(f"== {name}@auto, estimator {kw}: MAT {new / calls:.3f}")
            for key, cell in stats.calibration.items():
                for b in range(CALIBRATION_BINS):
                    n = cell["n"][b]
                    if n >= 100:
                        p, a = cell["predicted"][b] / n, cell["accepted"][b] / n
                        star = " *" if n >= 200 and abs(a - p) > 0.05 else ""
                        print(f"   {key} {b / CALIBRATION_BINS:.1f} n={int(n)} predicted {p:.3f} "
                              f"realised {a:.3f} ({a - p:+.3f}){star}")


if __name__ == "__main__":
    main()
