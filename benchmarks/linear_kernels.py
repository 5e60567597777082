"""Linear kernels for n-row inputs at SmolLM2-135M's layer shapes (30 decoder layers, and the
vocabulary head apart), float32, 2 threads: MKL through ``F.linear``, ``W @ x.T`` (weight on the
left), oneDNN on a weight pre-packed for a batch-size hint of 1 or 16, and MKL's packed GEMM on
a copy packed for exactly n rows: the candidates goose.hf.tune_linears chooses among by row count
(the fastest one differs between CPUs); for the head also the bfloat16 projection that greedy tree
passes start from where the CPU has native bfloat16.
Random weights: only the time matters.
Median of 7 rounds after 2 warm-ups, milliseconds per pass over all layers.

    python benchmarks/linear_kernels.py

An ad-hoc measurement behind a note, not a test; kernels differ in summation order, so a change of
kernel must be re-checked for identity with model.generate before it lands.
"""

import statistics
import time

import torch
import torch.nn.functional as F

ROWS = (1, 2, 4, 8, 12, 16)
LAYER = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)]
HEAD = [(49152, 576)]


def timed(weights: list[torch.Tensor], fn, n: int) -> float:
    xs = {i: torch.randn(n, i) for i in {w.shape[1] for w in weights}}
    times = []
    for r in range(9):
        t = time.perf_counter()
        for w in weights:
            fn(xs[w.shape[1]], w)
        if r >= 2:
            times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def kernels(weights: list[torch.Tensor], head: bool = False) -> dict:
    packed = {h: {id(w): torch.ops.mkldnn._reorder_linear_weight(w, h) for w in weights} for h in (1, 16)}

    def onednn(h: int):
        return lambda x, w: torch.ops.mkldnn._linear_pointwise(x, packed[h][id(w)], None, "none", [], "")

    mkl_packed = {n: {id(w): torch.ops.mkl._mkl_reorder_linear_weight(w, n) for w in weights} for n in ROWS}

    def mkl(x, w):  # packed for exactly x's row count
        return torch.ops.mkl._mkl_linear(x, mkl_packed[x.shape[0]][id(w)], w, None, x.shape[0])

    out = {"F.linear": lambda x, w: F.linear(x, w), "W @ x.T": lambda x, w: w @ x.t(),
           "oneDNN hint 1": onednn(1), "oneDNN hint 16": onednn(16), "MKL packed for n rows": mkl}
    if head:  # greedy tree passes' head (HFTarget._argmax_exact_logits): the bfloat16 projection alone
        bf16 = {id(w): torch.ops.mkldnn._reorder_linear_weight(w.bfloat16(), 1) for w in weights}
        out["bfloat16 oneDNN (argmax head)"] = lambda x, w: torch.ops.mkldnn._linear_pointwise(
            x.bfloat16(), bf16[id(w)], None, "none", [], "")
    return out


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    for title, shapes, copies in (("30 decoder layers", LAYER, 30), ("vocabulary head", HEAD, 1)):
        weights = [torch.randn(o, i) for _ in range(copies) for o, i in shapes]
        ks = kernels(weights, head=shapes is HEAD)
        print(f"\n{title}: ms per pass")
        print("| kernel | " + " | ".join(f"n={n}" for n in ROWS) + " |")
        print("|---" * (len(ROWS) + 1) + "|")
        for name, fn in ks.items():
            print(f"| {name} | " + " | ".join(f"{timed(weights, fn, n):.1f}" for n in ROWS) + " |")


if __name__ == "__main__":
    main()
