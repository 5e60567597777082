"""Cost of one SmolLM2 tree pass of n tokens (a chain, 500 tokens of context): transformers' stock
layers and cache against goose's (goose.hf.PackedLinear, which picks the linear kernel by row count,
and the cache that appends in place), and where the time goes (torch profiler, per op family).
Interleaved rounds, median of 8.

    python benchmarks/tree_pass_cost.py

An ad-hoc measurement behind the numbers quoted in the issue notes; not a test.
"""

import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile
from transformers.cache_utils import DynamicLayer

import goose.hf as gh
from goose.trees import DraftTree

SIZES = (1, 2, 4, 8, 9, 16, 17, 32)
FAMILIES = {"linear": ("mkldnn::_linear_pointwise", "aten::mm", "aten::addmm", "aten::linear"),
            "cache append": ("aten::cat",), "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",)}


def target(stock: bool) -> gh.HFTarget:
    model, _ = gh.load_model("smollm2", pack=not stock)
    t = gh.HFTarget(model)
    t.prefill(list(range(100, 600)))
    if stock:  # transformers' own DynamicLayer: torch.cat of the whole layer on every pass
        from transformers import DynamicCache

        cache = DynamicCache()
        cache.layer_class_to_replicate = DynamicLayer
        t.cache = cache  # the same 500 positions, in transformers' own layers
        with torch.inference_mode():
            ids = torch.tensor([list(range(100, 600))])
            model.get_decoder()(input_ids=ids, past_key_values=cache, use_cache=True)
    return t


def one_pass(t: gh.HFTarget, n: int) -> float:
    tree = DraftTree.chain(5, list(range(10, 10 + n - 1)))
    start = time.perf_counter()
    t.forward_tree(tree)
    took = time.perf_counter() - start
    t.commit(tree, [])
    t.cache.crop(-1)  # back to the same context length every time
    t.past -= 1
    return took


def main() -> None:
    targets = {"stock": target(True), "goose": target(False)}
    times: dict[tuple, list[float]] = {}
    for _ in range(9):
        for n in SIZES:
            for name, t in targets.items():
                times.setdefault((name, n), []).append(one_pass(t, n))
    print("ms per pass   " + "  ".join(f"n={n:<3}" for n in SIZES))
    for name in targets:
        print(f"{name:<12}" + "".join(f"{1000 * statistics.median(times[name, n][1:]):7.1f}" for n in SIZES))
    for n in (1, 2, 9):
        for name, t in targets.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(5):
                    one_pass(t, n)
            ops = {e.key: e.self_cpu_time_total / 5000 for e in prof.key_averages()}  # ms per pass
            split = {f: sum(ops.get(k, 0.0) for k in keys) for f, keys in FAMILIES.items()}
            split["rest"] = sum(ops.values()) - sum(split.values())
            print(f"n={n} {name:<6} " + ", ".join(f"{f} {ms:.1f} ms" for f, ms in split.items()))


if __name__ == "__main__":
    with torch.inference_mode():
        main()
