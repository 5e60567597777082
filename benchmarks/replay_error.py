"""SmolLM2, 3 dev prompts (code, summarization, chat), 128 tokens: MAT/tok/s of ar, pld, tr,
goose; exact replay of each trace; replay error of a goose budget-8 trace at budget 16.

    python benchmarks/replay_error.py

An ad-hoc measurement kept so the numbers quoted in the issue notes can be reproduced; not a test.
"""
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
Path('runs').mkdir(exist_ok=True)
import json

import goose.hf as gh
from sim import replay_method

model, tok = gh.load_model("smollm2")
spec = [json.loads(l) for l in open(SHARED / "data" / "spec_bench_dev.jsonl")]
code = json.loads(open(SHARED / "data" / "humaneval_dev.jsonl").readline())
prompts = {"code": (code["prompt"], False), "summarization": (next(r for r in spec if r["task"]=="summarization")["turns"][0], True),
           "chat": (next(r for r in spec if r["task"]=="mt_bench")["turns"][0], True)}
for name, (text, chat) in prompts.items():
    ids = gh.encode_prompt(tok, text, chat)
    ref = None
    for m in ["ar", "pld", "tr", "goose"]:
        out = gh.generate(model, ids, method=m, max_new_tokens=128, trace=f"runs/trace_{name}_{m}.jsonl")
        ref = ref or out.tokens
        s = out.stats
        print(json.dumps({"prompt": name, "method": m, "mat": round(s.mat,3), "tok_s": round(s.tokens_per_s,2), "identical": out.tokens==ref, "overhead": round(s.to_json()["overhead_vs_forward"],4)}), flush=True)
    for m in ["pld", "goose", "tr"]:
        r = replay_method(f"runs/trace_{name}_{m}.jsonl")
        print(json.dumps({"prompt": name, "replay_same": m, "replayed": r.mat, "recorded": r.recorded_mat}), flush=True)
    # cross-budget: replay goose@8 trace at budget 16 vs a real run at 16
    real16 = gh.generate(model, ids, method="goose", budget=16, max_new_tokens=128)
    r = replay_method(f"runs/trace_{name}_goose.jsonl", "goose", 16)
    print(json.dumps({"prompt": name, "cross": "goose b8 trace -> b16", "replayed": round(r.mat,3), "real": round(real16.stats.mat,3), "rel_err": round((r.mat-real16.stats.mat)/real16.stats.mat,4), "overhead_b16": round(real16.stats.to_json()["overhead_vs_forward"],4)}), flush=True)
    rp = replay_method(f"runs/trace_{name}_pld.jsonl", "pld", 4)
    real4 = gh.generate(model, ids, method="pld", budget=4, max_new_tokens=128)
    print(json.dumps({"prompt": name, "cross": "pld b10 trace -> b4", "replayed": round(rp.mat,3), "real": round(real4.stats.mat,3)}), flush=True)
