"""The CUDA path: skipped cleanly on machines without a GPU (CI has none)."""

import pytest
import torch

from goose.hf import generate
from goose.methods import METHODS

from .test_engine import check_tree_logits
from .tiny import tiny_gemma3, tiny_llama

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("make", [tiny_llama, tiny_gemma3])
def test_greedy_identity_on_cuda_float64(make):
    model = make("sdpa").cuda()
    prompt = [1, 5, 7, 9, 5, 7, 9, 5, 7, 3, 2, 5, 7, 9]
    ref = model.generate(torch.tensor([prompt], device="cuda"), do_sample=False, max_new_tokens=40,
                         min_new_tokens=40, pad_token_id=0, eos_token_id=None)[0, len(prompt):].tolist()
    for method in METHODS:
        assert generate(model, prompt, method=method, max_new_tokens=40, eos_token_id=[]).tokens == ref


def test_sampling_on_cuda_is_seeded():
    model = tiny_llama("sdpa").cuda()
    runs = [generate(model, [1, 2, 3, 1, 2], method="goose", temperature=0.8, top_p=0.95, seed=3,
                     max_new_tokens=20, eos_token_id=[]).tokens for _ in range(2)]
    assert runs[0] == runs[1]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("make", [tiny_llama, tiny_gemma3])
def test_half_precision_tree_pass_on_cuda(make, dtype):
    from goose.hf import HFTarget

    model = make("sdpa").to("cuda", dtype)
    # looser than the CPU test's 2: CUDA may run the maskless per-path forwards and the masked
    # tree pass on different attention kernels (passed on an H100, 2026-12-06)
    check_tree_logits(model, HFTarget, rtol_eps=8)
    out = generate(model, [1, 5, 7, 9, 5, 7, 9, 5, 7], method="goose", max_new_tokens=30, eos_token_id=[])
    assert len(out.tokens) == 30


@pytest.mark.parametrize("make", [tiny_llama, tiny_gemma3])
def test_batched_rows_on_cuda_are_identical_alone_with_a_fixed_budget_and_auto(make, tmp_path, monkeypatch):
    from goose.hf import generate_batch

    monkeypatch.setenv("GOOSE_CACHE", str(tmp_path))  # auto measures this GPU's cost curves
    model = make("sdpa").cuda()
    prompts = [[1, 5, 7, 9, 5, 7, 9, 5, 7, 3, 2, 5, 7, 9], [3, 4], [5, 6] * 15]
    refs = [model.generate(torch.tensor([p], device="cuda"), do_sample=False, max_new_tokens=40, min_new_tokens=40,
                           pad_token_id=0, eos_token_id=None)[0, len(p):].tolist() for p in prompts]
    for method in ("goose", "pld", "best-first"):
        for budget in (None, "auto"):
            out = generate_batch(model, prompts, method=method, budget=budget, max_new_tokens=40, eos_token_id=[])
            assert [r.tokens for r in out] == refs, (method, budget)

