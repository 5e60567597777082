"""Cost of one SmolLM2 tree pass of n tokens (a chain, 500 tokens of context) with and without
goose's two changes: pre-packed linear weights (goose.hf.pack_linears) and sdpa over grouped
K/V heads under a mask (HFTarget's tree passes). Interleaved rounds, median of 8.

    python benchmarks/tree_pass_cost.py

An ad-hoc measurement behind the numbers quoted in the issue notes; not a test.
"""

import statistics
import time

import torch

import goose.hf as gh
from goose.trees import DraftTree

SIZES = (1, 2, 8, 16)


def main() -> None:
    stock, _ = gh.load_model("smollm2", pack=False)
    packed, _ = gh.load_model("smollm2", pack=True)
    targets = {}
    for name, model in (("stock", stock), ("packed", packed)):
        targets[name] = gh.HFTarget(model)
        targets[name].prefill(list(range(100, 600)))
    configs = [(n, m, g) for n in SIZES for m in targets for g in ("0", "1")]
    times: dict[tuple, list[float]] = {c: [] for c in configs}
    for _ in range(10):
        for n, m, g in configs:
            t = targets[m]
            t.grouped_heads = g == "1"  # "0": the pass as transformers runs it by default (repeat_kv)
            tree = DraftTree.chain(5, list(range(10, 10 + n - 1)))
            start = time.perf_counter()
            t.forward_tree(tree)
            times[n, m, g].append(time.perf_counter() - start)
            t.commit(tree, [])
            t.cache.crop(-1)  # back to the same context length every time
            t.past -= 1
    for n in SIZES:
        cells = [f"{m}{'+gqa' if g == '1' else ''} {1000 * statistics.median(times[n, m, g][2:]):6.1f} ms"
                 for _, m, g in [c for c in configs if c[0] == n]]
        print(f"n={n:>2}: " + " | ".join(cells))


if __name__ == "__main__":
    with torch.inference_mode():
        main()
