"""Fidelity run: the 28 dev prompts of shared/reference/goose-release-dev.md, SmolLM2, fp32,
greedy, 128 new tokens; ar, goose (budget 8) and the paper preset at node budgets 60 and 16,
interleaved per prompt in one process. Checks prompt hashes and ar lengths against the
release's table, token identity against ar, and prints MAT per task next to the release's.

    python benchmarks/release_fidelity.py --out runs/fidelity.jsonl

A stepping stone towards `goose bench` (issue 5); not a test.
"""

import argparse
import hashlib
import json
import re
from pathlib import Path

import torch

import goose.hf as gh
from goose.trees import GoosePaperShaper

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
IDS = {"mt_bench": [85, 113, 129, 133], "translation": [199, 211, 223, 225],
       "summarization": [267, 285, 301, 315], "qa": [333, 337, 357, 385],
       "math_reasoning": [433, 469, 477, 479], "rag": [489, 493, 499, 519],
       "humaneval": ["humaneval-24", "humaneval-84", "humaneval-120", "humaneval-142"]}
CONFIGS = [("ar", {"method": "ar"}), ("goose", {"method": "goose", "budget": 8}),
           ("paper_b60", {"method": "paper"}), ("paper_b16", {"method": "paper", "node_budget": 16})]


def release_table() -> dict:
    pattern = re.compile(r"\| (\w+) \| (\S+) \| (\d+) \| (\w+) \| (\d+) \((\w+)\) \| (\d+) \| (\d+) \| (\d+) \|")
    out = {}
    for line in (SHARED / "reference" / "goose-release-dev.md").read_text().splitlines():
        m = pattern.match(line)
        if m:
            out[m.group(2)] = {"hash": m.group(4), "ar": int(m.group(5)), "b60": int(m.group(8)), "b16": int(m.group(9))}
    return out


def run(out_path: Path) -> list[dict]:
    torch.set_num_threads(2)
    model, tok = gh.load_model("smollm2")
    spec = {r["question_id"]: r for r in map(json.loads, (SHARED / "data" / "spec_bench_dev.jsonl").open())}
    he = {r["question_id"]: r for r in map(json.loads, (SHARED / "data" / "humaneval_dev.jsonl").open())}
    gh.generate(model, [1, 2, 3, 4], method="goose", max_new_tokens=16)  # warm-up
    rows = []
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w") as f:
        for i, (task, qids) in enumerate((t, q) for t, qs in IDS.items() for q in qs):
            r = he[qids] if task == "humaneval" else spec[qids]
            ids = gh.encode_prompt(tok, r["prompt"], False) if task == "humaneval" else gh.encode_prompt(tok, r["turns"][0], True)
            rec = {"task": task, "qid": qids, "prompt_tokens": len(ids),
                   "hash": hashlib.sha1(json.dumps(ids).encode()).hexdigest()[:12]}
            order = CONFIGS if i % 2 == 0 else CONFIGS[::-1]  # A B C D / D C B A
            outs = {}
            for name, kw in order:
                kw = dict(kw)
                if "node_budget" in kw:
                    kw["shaper"] = GoosePaperShaper(node_budget=kw.pop("node_budget"))
                outs[name] = gh.generate(model, ids, max_new_tokens=128, **kw)
            for name, _ in CONFIGS:
                o = outs[name]
                rec[name] = {"new": o.stats.new_tokens, "fwd": o.stats.forward_calls, "time": o.stats.time_total,
                             "identical": o.tokens == outs["ar"].tokens,
                             "accept": {k: [v["accepted"], v["drafted"]] for k, v in o.stats.accept_rates().items()}}
            rows.append(rec)
            f.write(json.dumps(rec) + "\n")
            f.flush()
            print(task, qids, {k: (rec[k]["fwd"], rec[k]["identical"]) for k, _ in CONFIGS}, flush=True)
    return rows


def summarize(rows: list[dict]) -> str:
    ref = release_table()
    keys = ("ar", "goose", "paper_b60", "paper_b16", "rel_b60", "rel_b16")
    tasks: dict = {}
    for r in rows:
        rr = ref[str(r["qid"])]
        assert rr["hash"] == r["hash"], f"prompt {r['qid']} tokenizes differently from the release run"
        assert r["ar"]["new"] == rr["ar"], f"ar length differs from the release on {r['qid']}"
        assert all(r[k]["identical"] for k in ("goose", "paper_b60", "paper_b16")), f"not lossless on {r['qid']}"
        t = tasks.setdefault(r["task"], {k: [0, 0, 0.0] for k in keys})
        for k in keys[:4]:
            t[k][0] += r[k]["new"]
            t[k][1] += r[k]["fwd"]
            t[k][2] += r[k]["time"]
        for k, col in (("rel_b60", "b60"), ("rel_b16", "b16")):
            t[k][0] += r["ar"]["new"]
            t[k][1] += rr[col]
    tasks["overall"] = {k: [sum(t[k][i] for t in list(tasks.values())) for i in range(3)] for k in keys}

    def mat(t, k):
        return t[k][0] / t[k][1]

    def speed(t, k):
        return (t[k][0] / t[k][2]) / (t["ar"][0] / t["ar"][2])

    lines = ["| task | ar tok/s | goose B=8 MAT | goose speed-up | paper b60 MAT (release) | paper b16 MAT (release) | paper b16 speed-up |",
             "|---|---|---|---|---|---|---|"]
    for name, t in tasks.items():
        lines.append(f"| {name} | {t['ar'][0] / t['ar'][2]:.1f} | {mat(t, 'goose'):.2f} | {speed(t, 'goose'):.2f}x | "
                     f"{mat(t, 'paper_b60'):.2f} ({mat(t, 'rel_b60'):.2f}) | {mat(t, 'paper_b16'):.2f} ({mat(t, 'rel_b16'):.2f}) | "
                     f"{speed(t, 'paper_b16'):.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/fidelity.jsonl"))
    ap.add_argument("--summarize-only", action="store_true", help="Only summarize an existing --out file.")
    args = ap.parse_args()
    rows = [json.loads(x) for x in args.out.open()] if args.summarize_only else run(args.out)
    print(summarize(rows))
