"""Sample-and-match MAT of a sampled ``goose bench`` run, predicted from the traces of a
``goose bench --trace`` run of the same methods on the same prompts, greedy or sampled
(``sim.predict_sampling``; docs/simulator.md, "The sampling regime").

    python benchmarks/sampling_prediction.py runs/trace30 runs/s08c [runs/s10c ...]
    python benchmarks/sampling_prediction.py runs/s08t runs/s08t     # a sampled run's own traces

No model is loaded. Writes ``sampling_prediction.{json,md}`` into each sampled run and prints
the tables: per task and method, the measured MAT, the held-out prediction (each prompt from
the task's other prompts' traces) and the one from the prompt's own trace.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from sim import predict_sampling


def table(pred: dict, title: str) -> str:
    lines = [title, "", "| task | method | measured | held out | error | own trace | error |", "|---|---|---|---|---|---|---|"]
    errs = []
    for task, rows in pred.items():
        for label, p in rows.items():
            e, o = p["predicted"] / p["measured"] - 1, p["own"] / p["measured"] - 1
            errs.append(e)
            lines.append(f"| {task} | {label} | {p['measured']:.2f} | {p['predicted']:.2f} | {e:+.1%} | "
                         f"{p['own']:.2f} | {o:+.1%} |")
    if errs:
        a = np.abs(errs)
        lines += ["", f"Held out, {len(a)} cells: mean absolute error {a.mean():.1%}, largest {a.max():.1%}, "
                      f"{int((a <= 0.07).sum())} within 7%."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("traced", type=Path, help="a goose bench --trace run (greedy, or sampled under the same law)")
    ap.add_argument("sampled", type=Path, nargs="+", help="sampled goose bench runs on the same prompts")
    args = ap.parse_args()
    for run in args.sampled:
        records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines() if line.strip()]
        law = next(r["sampling"] for r in records if r.get("sampling"))
        pred = predict_sampling(args.traced, records, law["temperature"], law.get("top_p", 1.0))
        title = (f"Sample-and-match MAT at T = {law['temperature']}, top-p {law.get('top_p', 1.0)} ({run}), predicted "
                 f"from the traces of {args.traced}:")
        text = table(pred, title)
        name = f"sampling_prediction_{args.traced.name}"
        (run / f"{name}.md").write_text(text)
        (run / f"{name}.json").write_text(json.dumps({"law": law, "traced": str(args.traced), "predictions": pred},
                                                     indent=1))
        print(text)


if __name__ == "__main__":
    main()
