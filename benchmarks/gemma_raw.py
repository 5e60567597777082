"""Gemma-3-270M (needs its wheels): identity and MAT of pld/tr/goose/paper on two raw HumanEval prompts.

    python benchmarks/gemma_raw.py

An ad-hoc measurement kept so the numbers quoted in the issue notes can be reproduced; not a test.
"""
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
import json
import time

import torch

import goose.hf as gh

t=time.time(); model, tok = gh.load_model("gemma3-270m"); print("load", round(time.time()-t,1), model.config.model_type, model.config.sliding_window, model.config._attn_implementation)
recs = [json.loads(l) for l in open(SHARED / "data" / "humaneval_dev.jsonl")][:2]
for r in recs:
    ids = gh.encode_prompt(tok, r["prompt"], chat=False)
    ref = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=64, pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
    for m in ["pld","tr","goose","paper"]:
        out = gh.generate(model, ids, method=m, max_new_tokens=64)
        print(r["question_id"], len(ids), m, out.tokens == ref, round(out.stats.mat,2), round(out.stats.tokens_per_s,1))
