"""The simulator's held-out error on a ``goose bench --trace`` run, with each component of the
fitted source model added in turn (docs/simulator.md, "How good are the predictions").

    python benchmarks/sim_components.py runs/trace28 [--steps 2000]

Reads the run's records and traces (no model is loaded), writes ``sim_components.json`` and
``sim_components.md`` next to them and prints the tables. Error = predicted / measured - 1
per task and method; rank correlation: Spearman's, over all task/method cells.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from sim import predict_bench

CONFIGS = {
    "reduced (geometric, root betas, 1 state)": {"hazards": False, "places": False},
    "+ hazards": {"hazards": True, "places": False},
    "+ hazards + places (default)": {},
    "+ hazards + places + lengths": {"lengths": True},
    "+ hazards + places + 2 states": {"states": 2},
}


def cells(pred: dict, key: str = "sim") -> dict[tuple[str, str], tuple[float, float]]:
    return {(t, m): (p[key], p["measured"]) for t, rows in pred.items() for m, p in rows.items() if p[key]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", type=int, default=2000)
    args = ap.parse_args()
    records = [json.loads(line) for line in (args.run / "records.jsonl").read_text().splitlines()]
    out, preds = {}, {}
    for name, opts in CONFIGS.items():
        pred = preds[name] = predict_bench(args.run, records, steps=args.steps, **opts)
        c = cells(pred)
        err = np.array([p / m - 1 for p, m in c.values()])
        rho = spearmanr([p for p, _ in c.values()], [m for _, m in c.values()]).statistic
        out[name] = {"cells": len(err), "mean_abs": float(np.abs(err).mean()), "max_abs": float(np.abs(err).max()),
                     "within_5": int((np.abs(err) <= 0.05).sum()), "spearman": float(rho)}
        print(name, out[name], flush=True)
    lines = ["| components | mean abs. error | largest | cells within 5% | rank correlation |", "|---|---|---|---|---|"]
    for name, r in out.items():
        lines.append(f"| {name} | {r['mean_abs']:.1%} | {r['max_abs']:.1%} | "
                     f"{r['within_5'] / r['cells']:.0%} ({r['within_5']}/{r['cells']}) | {r['spearman']:.3f} |")
    default, reduced = preds["+ hazards + places (default)"], preds["reduced (geometric, root betas, 1 state)"]
    methods = list(dict.fromkeys(m for rows in default.values() for m in rows))
    lines += ["", "| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for task, rows in default.items():
        row = []
        for m in methods:
            p, r = rows[m], reduced[task][m]
            row.append("-" if not p["sim"] else
                       f"{p['measured']:.2f}: {p['sim'] / p['measured'] - 1:+.0%} ({r['sim'] / r['measured'] - 1:+.0%})")
        lines.append(f"| {task} | " + " | ".join(row) + " |")
    lines += ["", "| method | replay | rows unknown | reduced | default |", "|---|---|---|---|---|"]
    for m in methods:
        def mae(pred: dict, key: str) -> str:
            e = [abs(rows[m][key] / rows[m]["measured"] - 1) for rows in pred.values() if rows[m][key]]
            return f"{np.mean(e):.1%}" if e else "-"
        unknown = [rows[m]["rows_missing"] for rows in default.values() if rows[m].get("rows_missing") is not None]
        own = " (own trace)" if all(rows[m].get("own_trace") for rows in default.values()) else ""
        lines.append(f"| {m} | {mae(default, 'replay')}{own} | {f'{np.mean(unknown):.1%}' if unknown else '-'} | "
                     f"{mae(reduced, 'sim')} | {mae(default, 'sim')} |")
    text = "\n".join(lines) + "\n"
    (args.run / "sim_components.md").write_text(text)
    (args.run / "sim_components.json").write_text(json.dumps({"summary": out, "predictions": preds}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
