"""goose's CPU linear kernels (goose.kernels): every plan computes the same map, plans are
measured and cached, and every method stays identical to generate on packed layers."""

import json

import numpy as np
import pytest
import torch

from goose.hf import generate
from goose.methods import METHODS

from .tiny import reference, tiny_llama

pytestmark = pytest.mark.model

PROMPTS = [[1, 5, 7, 9, 5, 7, 9, 5, 7, 3, 2, 5, 7, 9], list(np.random.default_rng(0).integers(1, 64, 20))]


KERNEL_OPS = {"mkl": "aten::linear", "weight-left": "aten::mm", "row-pair": "aten::mm",
              "onednn": "mkldnn::_linear_pointwise", "mkl-packed": "mkl::_mkl_linear"}


@pytest.mark.parametrize("rows", [1, 2, 4, 5, 13, 17, 200])
@pytest.mark.parametrize("kernel", ["mkl", "weight-left", "row-pair", "onednn", "mkl-packed"])
def test_packed_linear_runs_its_plans_kernel_for_the_same_map(rows, kernel):
    from goose.kernels import PackedLinear, mkl_packed_available

    if kernel == "mkl-packed" and not mkl_packed_available():
        pytest.skip("this torch build has no MKL packed GEMM")
    torch.manual_seed(rows)
    dense = torch.nn.Linear(48, 80)  # with a bias (Qwen2's q/k/v have one)
    # MKL's packed copies serve up to MKL_PACK_ROWS[-1] rows (padded up to the next count)
    upto = PackedLinear.MKL_PACK_ROWS[-1] if kernel == "mkl-packed" else PackedLinear.PLAN_ROWS
    packed = PackedLinear(dense, plan=["onednn"] + [kernel] * upto + ["onednn"] * (PackedLinear.PLAN_ROWS - upto))
    x = torch.randn(1, rows, 48)
    with torch.inference_mode(), torch.profiler.profile() as prof:
        y = packed(x)
    ops = {e.key for e in prof.key_averages()}
    used = kernel if rows <= upto else "onednn"  # past the plan (prefill): oneDNN
    assert packed.kernel(rows) == used
    assert {op for op in KERNEL_OPS.values() if op in ops} == {KERNEL_OPS[used]}
    assert y.shape == (1, rows, 80) and y.is_contiguous()  # a transposed output would push sdpa off its kernel
    torch.testing.assert_close(y, torch.nn.functional.linear(x, dense.weight, dense.bias), atol=1e-5, rtol=1e-5)


def test_packed_linear_default_plan_and_bad_plans():
    from goose.kernels import PackedLinear

    layer = PackedLinear(torch.nn.Linear(4, 4))
    assert set(layer.plan) == {"mkl"} and layer.copy_bytes() == 0  # untuned: F.linear, no weight copy
    with pytest.raises(ValueError, match="prefill"):
        PackedLinear(torch.nn.Linear(4, 4), plan=["mkl-packed", "mkl"])
    with pytest.raises(ValueError, match="unknown linear kernels"):
        PackedLinear(torch.nn.Linear(4, 4), plan=["onednn", "cublas"])


def test_mkl_packed_plans_keep_only_the_copies_they_use():
    from goose.kernels import PackedLinear, mkl_packed_available

    if not mkl_packed_available():
        pytest.skip("this torch build has no MKL packed GEMM")
    layer = PackedLinear(torch.nn.Linear(16, 24))
    assert layer._copies == {}  # the default plan uses none
    plan = ["onednn", "mkl", "mkl", "mkl", "mkl-packed", "mkl-packed", "onednn", "mkl-packed"] + ["onednn"] * 25
    layer.set_plan(plan)
    assert layer.copy_bytes() == 4 * 16 * 24 * 4  # oneDNN's copy and MKL's for 4, 6 and 8 rows
    with torch.inference_mode():
        for rows in (4, 5, 7, 6):
            x = torch.randn(rows, 16)
            torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias))
    assert sorted(k for k in layer._copies if k != "onednn") == [4, 6, 8]  # 4 -> 4, 5 -> 6, 7 -> 8 rows
    layer.set_plan(["onednn"] * 33)
    assert set(layer._copies) <= {"onednn"}
    with pytest.raises(ValueError, match="at most 16 rows"):
        layer.set_plan(["onednn"] + ["mkl-packed"] * 32)


def test_tune_linears_measures_a_plan_per_shape_and_caches_it(tmp_path, monkeypatch):
    from goose.kernels import KERNEL_MEMORY, PackedLinear, pack_linears, tune_linears
    from goose.kernels._tune import _allowed

    monkeypatch.setenv("GOOSE_CACHE", str(tmp_path))
    model = tiny_llama("sdpa").float()
    pack_linears(model)
    fast = tune_linears(model, reps=1, memory="fast")
    assert all(set(plan) <= set(KERNEL_MEMORY["fast"]) for plan in fast.values())
    plans = tune_linears(model, reps=1)  # lean, the default: no weight copies
    assert set(plans) == {"layers", "head"}  # the decoder layers' plan, the vocabulary projection's
    for plan in plans.values():
        assert len(plan) == PackedLinear.PLAN_ROWS + 1 and set(plan) <= set(KERNEL_MEMORY["lean"])
    assert sum(m.copy_bytes() for m in model.modules() if isinstance(m, PackedLinear)) == 0
    for m in model.modules():
        if isinstance(m, PackedLinear):
            assert list(m.plan) == plans["head" if m is model.get_output_embeddings() else "layers"]
    files = list((tmp_path / "kernels").glob("*.json"))
    assert len(files) == 2  # one per policy
    # the lean policy's file, told apart by its key (the two policies may time to the same plans)
    saved = [p for p in files if json.loads(p.read_text())["key"].endswith(f"|{_allowed('lean')}|v5")]
    assert len(saved) == 1 and json.loads(saved[0].read_text())["plans"] == plans
    # a second tune reads the cache: a doctored file is taken as it is
    doctored = {k: ["onednn"] + ["weight-left"] * PackedLinear.PLAN_ROWS for k in plans}
    saved[0].write_text(json.dumps({"plans": doctored}))
    assert tune_linears(model, memory="lean") == doctored
    assert all(m.kernel(3) == "weight-left" for m in model.modules() if isinstance(m, PackedLinear))


def test_packed_linears_agree_and_keep_every_method_identical_to_generate():
    import os

    from goose.kernels import PackedLinear, pack_linears

    model = tiny_llama("sdpa").float()
    x = torch.tensor([PROMPTS[0]])
    with torch.inference_mode():
        before = model(input_ids=x).logits
    assert pack_linears(model) == 2 * 7 + 1  # q, k, v, o, gate, up, down per layer + lm_head
    assert pack_linears(model) == 0  # idempotent
    for m in model.modules():  # every row count through oneDNN's packed copy
        if isinstance(m, PackedLinear):
            m.set_plan(["onednn"] * (PackedLinear.PLAN_ROWS + 1))
    with torch.inference_mode(), torch.profiler.profile() as prof:
        after = model(input_ids=x).logits
    ops = {e.key for e in prof.key_averages()}
    assert "mkldnn::_linear_pointwise" in ops and "aten::linear" not in ops  # really goose's kernels...
    torch.testing.assert_close(after, before, atol=1e-5, rtol=1e-5)  # ...for the same map
    with torch.enable_grad():  # gradients fall back to F.linear, bit for bit
        assert torch.equal(model(input_ids=x).logits.detach(), before)
    for prompt in PROMPTS:
        prompt = [int(t) for t in prompt]
        ref = reference(model, prompt, 40)  # model.generate runs the packed layers too
        for method in METHODS:
            out = generate(model, prompt, method=method, max_new_tokens=40, eos_token_id=[])
            assert out.tokens == ref, method
    assert "TRANSFORMERS_SDPA_FORCE_GQA" not in os.environ  # tree passes restore the switch


def test_linear_plans_are_described_by_row_ranges():
    from goose.kernels import PackedLinear, describe_linear_plans

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = PackedLinear(torch.nn.Linear(8, 8), plan=["onednn"] + ["mkl"] * 3 + ["onednn"] * 29)
            self.head = PackedLinear(torch.nn.Linear(8, 8), plan=["onednn", "weight-left"] + ["mkl"] * 31)

        def get_output_embeddings(self):
            return self.head

    assert describe_linear_plans(Model()) == "layers: mkl 1-3, onednn 4+; head: weight-left 1, mkl 2-32, onednn 33+"
    assert describe_linear_plans(torch.nn.Linear(2, 2)) == ""
