"""Where the 1 -> 2 token jump of a forward pass comes from: torch profiler of SmolLM2 tree passes
with 1 and 2 tokens, then a lone 1536x576 linear in four layouts for 1..16 rows.

    python benchmarks/forward_profile.py

An ad-hoc measurement kept so the numbers quoted in the issue notes can be reproduced; not a test.
"""
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
import torch, time
import goose.hf as gh
from goose.trees import DraftTree
from torch.profiler import profile, ProfilerActivity
model, tok = gh.load_model("smollm2")
t = gh.HFTarget(model)
t.prefill(list(range(100, 400)))
for n in (1, 2):
    tree = DraftTree.chain(5, list(range(10, 10+n-1)))
    for _ in range(3): t.forward_tree(tree); t.commit(tree, [])
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5): t.forward_tree(tree); t.commit(tree, [])
    print("n=", n)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


# --- a lone projection, four layouts ---
import torch.nn.functional as F
torch.manual_seed(0)
W = torch.randn(1536, 576); Wt = W.t().contiguous()
def bench(f, reps=300):
    for _ in range(20): f()
    t=time.perf_counter()
    for _ in range(reps): f()
    return (time.perf_counter()-t)/reps*1e6
for n in (1,2,4,8,16):
    x = torch.randn(n, 576)
    a = bench(lambda: F.linear(x, W))
    b = bench(lambda: (W @ x.t()).t())
    c = bench(lambda: x @ Wt)
    d = bench(lambda: torch.stack([F.linear(x[i], W) for i in range(n)]))
    print(n, "linear %.0f  W@xT %.0f  x@Wt(contig) %.0f  per-row-gemv %.0f us" % (a,b,c,d))
