"""SmolLM2, first mt_bench prompt: predicted vs actual conditional acceptance per source under
--budget auto (how optimistic the online estimates are).

    python benchmarks/estimator_calibration.py

An ad-hoc measurement kept so the numbers quoted in the issue notes can be reproduced; not a test.
"""
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
import json

import numpy as np

import goose.hf as gh
from goose.methods import make_method
from goose.trees import AutoBudgetShaper, path_probabilities

model, tok = gh.load_model("smollm2")
spec = [json.loads(l) for l in open(SHARED / "data" / "spec_bench_dev.jsonl")]
ids = gh.encode_prompt(tok, next(r for r in spec if r["task"]=="mt_bench")["turns"][0], True)
pred, got, bysrc = [], [], {}
class Probe(AutoBudgetShaper):
    def record(self, tree, accepted):
        p = path_probabilities(tree)
        pred.append(p[1:].sum()); got.append(len(accepted))
        acc=set(accepted)|{0}
        for v in range(1, tree.num_nodes):
            if tree.parents[v] in acc:
                d = bysrc.setdefault(tree.sources[v], [0,0,0]); d[0]+=tree.confidences[v]; d[1]+= v in acc; d[2]+=1
        super().record(tree, accepted)
m = make_method("goose")
out = gh.generate(model, ids, method="goose", shaper=Probe(m.shaper, gh.calibrate(model)), budget=24, max_new_tokens=128)
print("mean predicted E[A]", np.mean(pred), "mean accepted", np.mean(got))
for s,(c,a,n) in bysrc.items(): print(s, "mean predicted a", c/n, "actual", a/n, "n", n)
