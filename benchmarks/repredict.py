"""Predict a finished ``goose bench --trace`` run again with the current simulator, and
rewrite its summary.json, results.md and plots (no model is loaded).

    python benchmarks/repredict.py runs/trace30 [--steps 4000] [--speed-run runs/speed30]

The predictions are those ``goose bench`` makes at the end of a run (``sim.predict_bench``),
``@auto`` columns under the cost curve their traces recorded. ``--speed-run`` also compares
the predicted ``@auto`` speed-ups with those measured by another run on the same prompts (a
timing run without traces, nothing else running), and writes ``speedup_check.md``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from goose.bench import write_outputs
from sim import predict_bench, recorded_cost


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--speed-run", type=Path, help="a timing run of the same prompts with an ar column")
    args = ap.parse_args()
    records = [json.loads(line) for line in (args.run / "records.jsonl").read_text().splitlines() if line.strip()]
    meta = json.loads((args.run / "meta.json").read_text())
    predictions = predict_bench(args.run, records, steps=args.steps, cost=recorded_cost(args.run))
    write_outputs(args.run, records, meta, predictions)
    print((args.run / "results.md").read_text().split("## Predicted vs measured MAT")[-1].split("\n## ")[0])
    if args.speed_run:
        print(speed_check(predictions, args.speed_run, args.run))


def speed_check(predictions: dict, speed_run: Path, run: Path) -> str:
    """Predicted ``@auto`` speed-ups against those ``speed_run`` measured, per task."""
    measured = json.loads((speed_run / "summary.json").read_text())["tasks"]
    lines = [f"Speed-up vs `ar`: predicted from {run}'s traces under its cost curve, measured by {speed_run}:", "",
             "| task | method | measured | predicted | error |", "|---|---|---|---|---|"]
    errs = []
    for task, rows in predictions.items():
        for label, p in rows.items():
            got = measured.get(task, {}).get(label, {}).get("speedup_vs_ar")
            if p.get("sim_speedup") and got:
                errs.append(p["sim_speedup"] / got - 1)
                lines.append(f"| {task} | {label} | {got:.2f}x | {p['sim_speedup']:.2f}x | {errs[-1]:+.1%} |")
    if errs:
        worst = max(abs(e) for e in errs)
        lines += ["", f"{len(errs)} cells: largest error {worst:.1%}, {sum(abs(e) <= 0.10 for e in errs)} within 10%."]
    text = "\n".join(lines) + "\n"
    (run / "speedup_check.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
