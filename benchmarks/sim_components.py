"""The simulator's held-out error on a ``goose bench --trace`` run, with each component of the
fitted source model added in turn (docs/simulator.md, "How good are the predictions").

    python benchmarks/sim_components.py runs/trace29 [--steps 4000] [--tables-only]

Reads the run's records and traces (no model is loaded), writes ``sim_components.json`` and
``sim_components.md`` next to them and prints the tables. Error = predicted / measured - 1
per task and method; rank correlation: Spearman's, over all task/method cells.
"""
from __future__ import annotations

import argparse
import json
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from sim import predict_bench, recorded_cost

CONFIGS = {  # beliefs False: every method's simulator shaper on the true acceptances
    "reduced (geometric, root betas, 1 state)": {"hazards": False, "places": False, "beliefs": False},
    "+ hazards": {"hazards": True, "places": False, "beliefs": False},
    "+ hazards + places": {"beliefs": False},
    "+ hazards + places + beliefs for auto (default)": {},
    "+ hazards + places + beliefs everywhere": {"beliefs": True},
    "+ hazards + places + lengths": {"lengths": True, "beliefs": False},
    "+ hazards + places + 2 states": {"states": 2, "beliefs": False},
}
DEFAULT = "+ hazards + places + beliefs for auto (default)"


def cells(pred: dict, key: str = "sim") -> dict[tuple[str, str], tuple[float, float]]:
    return {(t, m): (p[key], p["measured"]) for t, rows in pred.items() for m, p in rows.items() if p[key]}


def _predict(run: Path, records: list[dict], steps: int, opts: dict) -> dict:
    return predict_bench(run, records, steps=steps, progress=False, cost=_cost(run) if _has_auto(records) else None,
                         **opts)


def _has_auto(records: list[dict]) -> bool:
    return any("@auto" in r["method"] for r in records)


def _cost(run: Path):
    """The curve the run's auto columns were cut by: recorded in their traces."""
    cost = recorded_cost(run)
    if cost is None:
        raise SystemExit(f"{run}: auto columns, but no trace recorded their cost curve")
    return cost


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--jobs", type=int, default=2, help="configurations fitted at once")
    ap.add_argument("--tables-only", action="store_true", help="rewrite the tables from RUN/sim_components.json")
    args = ap.parse_args()
    saved = args.run / "sim_components.json"
    if args.tables_only:  # the tables again, from the predictions a previous call saved
        preds = json.loads(saved.read_text())["predictions"]
    else:
        records = [json.loads(line) for line in (args.run / "records.jsonl").read_text().splitlines()]
        with Pool(args.jobs) as pool:  # one fit-and-simulate per configuration, in parallel
            results = pool.starmap(_predict, [(args.run, records, args.steps, opts) for opts in CONFIGS.values()])
        preds = dict(zip(CONFIGS, results, strict=True))
    lines, out = [], {}
    for title, keep in (("Every task/method cell:", lambda m: True),
                        ("Fixed budgets only (no `@auto` cell):", lambda m: "@auto" not in m)):
        if title.startswith("Fixed") and not any("@auto" in m for rows in preds[next(iter(preds))].values()
                                                 for m in rows):
            continue
        lines += ([""] if lines else []) + [title, "", "| components | mean abs. error | largest | cells within 5% | "
                                            "rank correlation |", "|---|---|---|---|---|"]
        for name, pred in preds.items():
            c = {k: v for k, v in cells(pred).items() if keep(k[1])}
            err = np.array([p / m - 1 for p, m in c.values()])
            rho = spearmanr([p for p, _ in c.values()], [m for _, m in c.values()]).statistic
            r = {"cells": len(err), "mean_abs": float(np.abs(err).mean()), "max_abs": float(np.abs(err).max()),
                 "within_5": int((np.abs(err) <= 0.05).sum()), "spearman": float(rho)}
            out.setdefault(title, {})[name] = r
            lines.append(f"| {name} | {r['mean_abs']:.1%} | {r['max_abs']:.1%} | "
                         f"{r['within_5'] / r['cells']:.0%} ({r['within_5']}/{r['cells']}) | {r['spearman']:.3f} |")
    default, reduced = preds[DEFAULT], preds["reduced (geometric, root betas, 1 state)"]
    methods = list(dict.fromkeys(m for rows in default.values() for m in rows))
    lines += ["", "Per task, the default model: measured MAT, then the error, and in brackets the reduced model's:",
              "", "| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for task, rows in default.items():
        row = []
        for m in methods:
            p, r = rows[m], reduced[task][m]
            row.append("-" if not p["sim"] else
                       f"{p['measured']:.2f}: {p['sim'] / p['measured'] - 1:+.0%} ({r['sim'] / r['measured'] - 1:+.0%})")
        lines.append(f"| {task} | " + " | ".join(row) + " |")
    lines += ["", "Mean absolute error per method: trace replay (and the share of replayed nodes whose row the "
              "traces lacked), the reduced model and the default one:", "",
              "| method | replay | rows unknown | reduced | default |", "|---|---|---|---|---|"]
    def mae(pred: dict, m: str, key: str) -> str:
        e = [abs(rows[m][key] / rows[m]["measured"] - 1) for rows in pred.values() if rows[m][key]]
        return f"{np.mean(e):.1%}" if e else "-"

    for m in methods:
        unknown = [rows[m]["rows_missing"] for rows in default.values() if rows[m].get("rows_missing") is not None]
        own = " (own trace)" if all(rows[m].get("own_trace") for rows in default.values()) else ""
        lines.append(f"| {m} | {mae(default, m, 'replay')}{own} | {f'{np.mean(unknown):.1%}' if unknown else '-'} | "
                     f"{mae(reduced, m, 'sim')} | {mae(default, m, 'sim')} |")
    text = "\n".join(lines) + "\n"
    (args.run / "sim_components.md").write_text(text)
    saved.write_text(json.dumps({"summary": out, "predictions": preds}, indent=1))
    print(text)


if __name__ == "__main__":
    main()
