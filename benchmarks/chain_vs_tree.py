"""Do goose's trees pay for themselves on this machine? ``@auto`` methods replayed on the
traces of a ``goose bench --trace`` run, each step priced offline, against a chain method.

    python benchmarks/chain_vs_tree.py runs/trace30 --traces best-first@auto \\
        --methods pld,goose,best-first --overhead-run runs/vs-suffix4
    python benchmarks/chain_vs_tree.py runs/trace31 --node-cost 0.0007 --cut-node-cost 0.0007

Every method is replayed at budget ``auto`` on each prompt's trace (``sim.replay``; context
sources exactly, the recycled source fed the target rows the trace recorded) and cut by the
cost curve the trace recorded, as the run did. A step is priced by that curve made
non-decreasing (``CostCurve.monotone``) at the step's context length, plus, with
``--overhead-run``, the method's measured drafting, verification and bookkeeping per step
(``draft + verify + commit + other`` of the ``@auto`` column in that run's time split; the
forward pass is not taken from it), plus ``--node-cost`` seconds for each drafted node (what
a node costs beyond its share of the pass: drafting it, reading the target's top entries at
it, verifying it). ``--cut-node-cost`` adds seconds per node to the curve the trees are cut
by: ``auto`` then prices a node as its share of the pass plus that. Prints, per task and
overall, each method's MAT, drafted nodes per step, predicted tokens per second relative to
the first method (without the overhead in brackets) and relative to plain decoding (its
one-token passes priced by the same curve). No model is loaded; a replay is not a timing, and
the numbers are only as good as the curve.

An ad-hoc measurement kept so the numbers quoted in the docs can be reproduced; not a test.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from goose.engine import GenerationRequest
from goose.methods import get_method
from goose.theory import CostCurve
from sim import load_trace, replay, replay_sources


def overheads(run: Path | None, methods: list[str]) -> dict[str, float]:
    """Seconds per step outside the forward pass of each method's ``@auto`` column in ``run``."""
    if run is None:
        return {}
    overall = json.loads((run / "summary.json").read_text())["overall"]
    out = {}
    for m in methods:
        split = (overall.get(f"{m}@auto") or {}).get("time")
        if split is None:
            raise SystemExit(f"{run} has no time split for {m}@auto")
        out[m] = sum(split["per_step_ms"][k] for k in ("draft", "verify", "commit", "other")) / 1e3
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--traces", default="", help="the traced method's folder under RUN/traces (default: the first's)")
    ap.add_argument("--methods", default="pld,goose,best-first", help="the first is the one compared against")
    ap.add_argument("--overhead-run", type=Path, help="a bench run with every method's @auto time split")
    ap.add_argument("--node-cost", type=float, default=0.0, help="seconds each drafted node costs beyond the pass")
    ap.add_argument("--cut-node-cost", type=float, default=0.0,
                    help="seconds per node added to the curve the trees are cut by")
    args = ap.parse_args()
    methods = args.methods.split(",")
    extra = overheads(args.overhead_run, methods)
    task_of = {r["question_id"]: r["task"] for r in map(json.loads, (args.run / "records.jsonl").open())}
    # per task and method: new tokens, forward calls, drafted nodes, priced seconds, overhead seconds,
    # plain decoding's seconds (one-token passes, priced the same way)
    cells: dict = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0.0, 0.0, 0.0]))
    for path in sorted((args.run / "traces" / args.traces).glob("*.jsonl")):
        header, steps = load_trace(path)
        curve = CostCurve.from_json(header["cost_curve"])
        price = curve.monotone()
        cut = curve if not args.cut_node_cost else (
            lambda n, context=None, c=curve: c(n, context=context) + args.cut_node_cost * (n - 1))
        for m in methods:
            cell = cells[task_of[path.stem]][m]
            plan = GenerationRequest(get_method(m), "auto").plan(cut)
            shape = plan.shaper.shape

            def priced(context, sources, budget, shape=shape, cell=cell, m=m, price=price):
                tree = shape(context, sources, budget)
                cell[2] += tree.num_nodes - 1
                cell[3] += price(tree.num_nodes, context=len(context)) + args.node_cost * (tree.num_nodes - 1)
                cell[4] += extra.get(m, 0.0)
                return tree

            plan.shaper.shape = priced
            sources, rows = replay_sources(plan.sources, header, steps)
            r = replay(path, plan.shaper, sources, plan.budget, rows=rows)
            cell[0] += len(header["tokens"])
            cell[1] += r.forward_calls
            cell[5] += sum(price(1, context=len(header["prompt"]) + i) for i in range(len(header["tokens"])))
    base = methods[0]
    print("| task | " + " | ".join(f"{m}@auto" for m in methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    overall: dict = defaultdict(lambda: [0, 0, 0, 0.0, 0.0, 0.0])
    for row in list(cells.values()):
        for m, cell in row.items():
            overall[m] = [a + b for a, b in zip(overall[m], cell, strict=True)]
    cells["overall"] = overall
    for task, row in cells.items():
        b = row[base]
        out = []
        for m in methods:
            new, calls, nodes, seconds, over, plain = row[m]
            rate = (new / (seconds + over)) / (b[0] / (b[3] + b[4]))
            bare = (new / seconds) / (b[0] / b[3])
            out.append(f"{new / calls:.2f}, {nodes / calls:.1f} nodes, {rate:.3f}x ({bare:.3f}x), "
                       f"{plain / (seconds + over):.3f}x plain")
        print(f"| {task} | " + " | ".join(out) + " |")


if __name__ == "__main__":
    main()
