"""Predict a finished ``goose bench --trace`` run again with the current simulator, and
rewrite its summary.json, results.md and plots (no model is loaded).

    python benchmarks/repredict.py runs/trace30 [--steps 4000]

The predictions are those ``goose bench`` makes at the end of a run (``sim.predict_bench``),
``@auto`` columns under the cost curve their traces recorded.
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
    args = ap.parse_args()
    records = [json.loads(line) for line in (args.run / "records.jsonl").read_text().splitlines() if line.strip()]
    meta = json.loads((args.run / "meta.json").read_text())
    predictions = predict_bench(args.run, records, steps=args.steps, cost=recorded_cost(args.run))
    write_outputs(args.run, records, meta, predictions)
    print((args.run / "results.md").read_text().split("## Predicted vs measured MAT")[-1].split("\n## ")[0])


if __name__ == "__main__":
    main()
