"""Greedy identity on every dev prompt: SmolLM2, fp32, 128 new tokens, every named method
against ``model.generate(do_sample=False)``. Resumable: records already in ``--out`` are
skipped, so the 322-prompt run (hours on a 2-core CPU) can be spread over several sittings.

    python benchmarks/identity_all.py --out runs/identity.jsonl
    python benchmarks/identity_all.py --out runs/identity.jsonl --summarize-only

On a 2-core CPU two one-thread shards finish sooner than one two-thread process; they may
share ``--out`` (each record is one appended line):

    python benchmarks/identity_all.py --shard 0/2 --threads 1 &
    python benchmarks/identity_all.py --shard 1/2 --threads 1

Prompts are visited round-robin over the tasks, so a partial run covers every task.
A record per (prompt, method): ``{"qid", "task", "method", "identical", "new", "fwd"}``.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch
from tqdm import tqdm

import goose.hf as gh
from goose.bench import hf_generate
from goose.methods import METHODS

SHARED = Path(__file__).resolve().parents[2] / "shared"


def prompts() -> list[dict]:
    by_task: dict[str, list[dict]] = defaultdict(list)
    for name in ("spec_bench_dev.jsonl", "humaneval_dev.jsonl"):
        for line in (SHARED / "data" / name).open():
            r = json.loads(line)
            by_task[r["task"]].append(r)
    queues = list(by_task.values())
    out = []
    for i in range(max(map(len, queues))):
        out += [q[i] for q in queues if i < len(q)]
    return out


def run(out: Path, methods: list[str], max_new_tokens: int, shard: tuple[int, int], threads: int) -> None:
    torch.set_num_threads(threads)
    done = set()
    if out.exists():
        done = {(str(r["qid"]), r["method"]) for r in map(json.loads, out.open())}
    model, tok = gh.load_model("smollm2")
    out.parent.mkdir(parents=True, exist_ok=True)
    todo = [r for r in prompts() if any((str(r["question_id"]), m) not in done for m in methods)]
    todo = todo[shard[0]::shard[1]]
    with out.open("a") as f, torch.inference_mode():
        for r in tqdm(todo, desc=f"prompts (shard {shard[0]}/{shard[1]})"):
            chat = "turns" in r
            ids = gh.encode_prompt(tok, r["turns"][0] if chat else r["prompt"], chat)
            ref, _ = hf_generate(model, ids, max_new_tokens)
            for m in methods:
                if (str(r["question_id"]), m) in done:
                    continue
                o = gh.generate(model, ids, method=m, max_new_tokens=max_new_tokens)
                rec = {"qid": r["question_id"], "task": r["task"], "method": m, "identical": o.tokens == ref,
                       "new": len(o.tokens), "ref_new": len(ref), "fwd": o.stats.forward_calls}
                f.write(json.dumps(rec) + "\n")
                f.flush()


def summarize(out: Path) -> str:
    rows = [json.loads(x) for x in out.open()]
    methods = sorted({r["method"] for r in rows}, key=list(METHODS).index)
    tasks = sorted({r["task"] for r in rows})
    cell = defaultdict(lambda: [0, 0])
    for r in rows:
        for key in ((r["task"], r["method"]), ("all", r["method"])):
            cell[key][0] += r["identical"]
            cell[key][1] += 1
    lines = ["| task | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for t in tasks + ["all"]:
        lines.append(f"| {t} | " + " | ".join("{}/{}".format(*cell[t, m]) for m in methods) + " |")
    bad = [(r["qid"], r["method"]) for r in rows if not r["identical"]]
    return "\n".join(lines) + f"\n\nnot identical: {bad or 'none'}"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("runs/identity.jsonl"))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--shard", default="0/1", help="K/N: run every N-th pending prompt from the K-th")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--summarize-only", action="store_true")
    args = ap.parse_args()
    k, n = map(int, args.shard.split("/"))
    if not 0 <= k < n:
        ap.error(f"--shard {args.shard}: need 0 <= K < N")
    if not args.summarize_only:
        run(args.out, args.methods.split(","), args.max_new_tokens, (k, n), args.threads)
    print(summarize(args.out))
