"""End-to-end exactness of the engine on tiny float64 models built from configs."""

import json
from collections import Counter

import numpy as np
import pytest
import torch

from goose.engine import decode
from goose.hf import HFTarget, generate
from goose.methods import METHODS, make_method
from goose.testing import chi_square_pvalue, random_tree
from goose.trees import DraftTree
from goose.verify import GreedyVerifier, process_logits

from .tiny import reference, tiny_gemma3, tiny_llama, tiny_qwen2


def _fast_bf16() -> bool:
    from goose.hf import cpu_has_fast_bf16

    return cpu_has_fast_bf16()

def _bf16_reorder() -> bool:
    """Whether this CPU can pack a bfloat16 weight for oneDNN (what a forced bfloat16 head runs)."""
    try:
        torch.ops.mkldnn._reorder_linear_weight(torch.zeros(16, 16, dtype=torch.bfloat16), 1)
    except RuntimeError:
        return False
    return True


pytestmark = pytest.mark.model

MODELS = {"llama": tiny_llama, "gemma3": tiny_gemma3, "qwen2": tiny_qwen2}
# a repetitive prompt (the context source matches) and a random one (it mostly does not)
PROMPTS = [[1, 5, 7, 9, 5, 7, 9, 5, 7, 3, 2, 5, 7, 9], list(np.random.default_rng(0).integers(1, 64, 20))]


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_every_method_is_token_identical_to_generate(arch, attn):
    # 60 new tokens: contexts of 74-80 tokens, far past gemma3's sliding window of 8
    model = MODELS[arch](attn)
    for prompt in PROMPTS:
        prompt = [int(t) for t in prompt]
        ref = reference(model, prompt, 60)
        for method in METHODS:
            out = generate(model, prompt, method=method, max_new_tokens=60, eos_token_id=[])
            assert out.tokens == ref, f"{method} diverged on {arch}/{attn}"


class ShiftedPositions(HFTarget):
    """Deliberately wrong: positions count nodes in flattened order, not depth."""

    def forward_tree(self, tree, argmax_only=False, bounded=False):
        depths = tree.depths
        tree.depths = np.arange(tree.num_nodes)
        try:
            return super().forward_tree(tree, argmax_only, bounded)
        finally:
            tree.depths = depths


class NoWindow(HFTarget):
    """Deliberately wrong: forgets the sliding window in the tree mask."""

    def _mask(self, tree, window):
        return super()._mask(tree, None)


class CausalMask(HFTarget):
    """Deliberately wrong: a plain causal mask over the flattened tree."""

    def _mask(self, tree, window):
        m = super()._mask(tree, window)
        n = tree.num_nodes
        tri = torch.tril(torch.ones(n, n, dtype=torch.bool))
        if m.dtype == torch.bool:
            m[..., -n:] = tri
        else:
            blocked = torch.tensor(torch.finfo(m.dtype).min, dtype=m.dtype)
            m[..., -n:] = torch.where(tri, torch.zeros((), dtype=m.dtype), blocked)
        return m


def check_tree_logits(model, target_cls, seed=0, rtol_eps=None):
    """Every node's logits equal those of a plain forward over prefix + its path: to 1e-5 in
    float64, or in half precision to ``rtol_eps`` machine epsilons of the logits' scale."""
    rng = np.random.default_rng(seed)
    prompt = [int(t) for t in rng.integers(1, 64, 30)]  # longer than gemma3's window
    target = target_cls(model)
    for cut in range(4):
        prefix, root = prompt[: len(prompt) - 1 - cut], prompt[len(prompt) - 1 - cut]
        target.prefill(prefix)
        shape = random_tree(rng, 12, 64)
        tree = DraftTree([root, *shape.tokens[1:]], shape.parents)
        logits = target.forward_tree(tree)
        for v in range(tree.num_nodes):
            path = prefix + [root] + [int(tree.tokens[u]) for u in tree.path_to(v)]
            with torch.inference_mode():
                full = model(torch.tensor([path], device=model.device)).logits[0, -1]
            atol = 1e-5 if rtol_eps is None else rtol_eps * torch.finfo(model.dtype).eps * full.abs().max().item()
            assert torch.allclose(logits[v], full.float(), atol=atol), f"node {v} differs"


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_tree_pass_logits_equal_per_path_logits(arch, attn):
    check_tree_logits(MODELS[arch](attn), HFTarget)


@pytest.mark.parametrize("arch, broken", [("llama", ShiftedPositions), ("llama", CausalMask),
                                          ("gemma3", ShiftedPositions), ("gemma3", NoWindow)])
def test_wrong_mask_or_positions_are_caught(arch, broken):
    # Token identity alone is a weak detector on tiny random models (their argmax barely
    # depends on position); the per-node logits comparison is exact and catches each one.
    with pytest.raises(AssertionError):
        check_tree_logits(MODELS[arch]("eager"), broken)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_half_precision_tree_pass_matches_per_path_forwards(arch, attn, dtype):
    # Half precision is supported, not promised token-identical (a tree pass sums in another
    # order than a one-token pass; near-ties can flip). What must hold: every node's logits
    # agree with a plain forward over its own path to a few epsilons, and decoding runs.
    model = MODELS[arch](attn).to(dtype)
    check_tree_logits(model, HFTarget, rtol_eps=2)
    out = generate(model, [int(t) for t in PROMPTS[0]], method="goose", max_new_tokens=30, eos_token_id=[])
    assert len(out.tokens) == 30 and out.stats.forward_calls < 30


@pytest.mark.parametrize("arch, broken", [("llama", CausalMask), ("gemma3", CausalMask),
                                          ("gemma3", ShiftedPositions)])
def test_half_precision_tolerance_still_catches_a_wrong_tree(arch, broken):
    # measured in bfloat16, in eps x logit scale: correct trees 0.5 (llama) and 1.4 (gemma3),
    # a causal mask 41 and 108, shifted positions 172 on gemma3 but only 1.0 on the tiny
    # llama, whose logits barely depend on position (the float64 test above catches that one)
    with pytest.raises(AssertionError):
        check_tree_logits(MODELS[arch]("sdpa").to(torch.bfloat16), broken, rtol_eps=2)


def test_eos_inside_an_accepted_draft_stops_where_generate_stops():
    model = tiny_llama()
    prompt = [int(t) for t in PROMPTS[0]]
    free = reference(model, prompt, 60)
    inside_draft = 0  # cases where the EOS came as an accepted draft token, not as the bonus
    for eos in sorted(set(free[5:40])):
        ref = reference(model, prompt, 60, eos=eos)
        for method in ("goose", "pld", "tr", "paper"):
            out = generate(model, prompt, method=method, max_new_tokens=60, eos_token_id=eos)
            assert out.tokens == ref and out.tokens[-1] == eos
            inside_draft += out.kinds[-1] != "bonus"
    assert inside_draft > 0


def test_the_shaper_records_an_accepted_path_only_as_far_as_an_eos():
    """An oracle chain drafts past the EOS, and the target accepts it all; the step emits
    up to the EOS, and the shaper records the path only that far, as a replay of the
    trace (whose text stops at the EOS) records it. A cross-request estimator carried
    into the next request then holds the same counts in the run and in its replay."""
    from goose.testing import OracleSource, ToyTarget
    from goose.trees import ChainShaper

    target = ToyTarget(seed=3)
    prompt = [1, 2, 3, 4, 5]
    free = target.greedy(prompt, 40)
    at = next(i for i in range(3, 30) if free[i] not in free[:i])  # an EOS that first appears mid-text
    eos = free[at]
    recorded = []

    class Spy(ChainShaper):
        def record(self, tree, accepted):
            recorded.append((tree, list(accepted)))
            super().record(tree, accepted)

    oracle = OracleSource(prompt + free, max_len=8)
    out = decode(target, prompt, [oracle], Spy(source="oracle"), GreedyVerifier(), 8, 40, eos_token_ids=[eos])
    assert out.tokens == free[: at + 1] and out.finish_reason == "eos"
    tree, accepted = recorded[-1]
    assert int(tree.tokens[accepted[-1]]) == eos  # the recorded path ends at the EOS node ...
    assert out.stats.accept_lengths[-1] > len(accepted)  # ... though the target accepted nodes past it


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_output_never_exceeds_max_new_tokens(n):
    model = tiny_llama()
    prompt = [int(t) for t in PROMPTS[0]]
    ref = reference(model, prompt, n)
    for method in ("goose", "tr", "paper"):
        assert generate(model, prompt, method=method, max_new_tokens=n, eos_token_id=[]).tokens == ref


def test_kv_cache_tracks_committed_length_over_1000_tokens():
    model = tiny_llama(vocab=32, seed=1)
    target = HFTarget(model)
    prompt = [1, 2, 3, 4, 1, 2, 3]
    committed = list(prompt)
    checks = []

    def on_commit(tokens, kinds):
        committed.extend(tokens)
        checks.append(target.cache_length() == len(committed) - 1)  # the root is not cached yet

    storages = []

    def recorder(step):  # where layer 0's keys live: the cache appends in place, reallocating only to grow
        storages.append(target.cache.layers[0].keys.untyped_storage().data_ptr())

    m = make_method("goose")
    out = decode(target, prompt, m.sources, m.shaper, GreedyVerifier(), 12, 1000, on_commit=on_commit,
                 recorder=recorder)
    assert len(out.tokens) == 1000 and all(checks) and len(checks) == out.stats.steps + 1
    assert out.tokens == reference(model, prompt, 1000)
    assert len(set(storages)) <= 4  # 256 -> 512 -> 1024 -> 2048 positions, not one copy per step (torch.cat)


def test_bad_inputs_raise_clear_errors():
    model = tiny_llama(max_positions=64)
    with pytest.raises(ValueError, match="empty"):
        generate(model, [], method="goose")
    with pytest.raises(ValueError, match="context window"):
        generate(model, [1, 2] * 32, method="goose")  # 64 ids: the window is full before any new token
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, [1, 2], max_new_tokens=0)
    with pytest.raises(ValueError, match="unknown method"):
        generate(model, [1, 2], method="medusa")
    with pytest.raises(ValueError, match="budget"):
        generate(model, [1, 2], budget=0)
    with pytest.raises(ValueError, match="tokenizer"):
        generate(model, "hello")
    with pytest.raises(ValueError, match=r"prompt id 64 at position 1 is outside the vocabulary \[0, 64\)"):
        generate(model, [1, 64])  # the tiny model's vocabulary is 64: one past it, before torch sees it
    model.config._attn_implementation = "flash_attention_2"
    with pytest.raises(ValueError, match="flash_attention_2"):
        generate(model, [1, 2])


def test_unsupported_architecture_is_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=32, n_embd=16, n_layer=1, n_head=2)).eval()
    with pytest.raises(ValueError, match="architecture 'gpt2' is not supported"):
        generate(model, [1, 2, 3])


def test_sampling_is_seeded_and_reproducible():
    model = tiny_llama()
    runs = [generate(model, PROMPTS[0], method="goose", temperature=0.8, top_p=0.95, seed=s,
                     max_new_tokens=30, eos_token_id=[]).tokens for s in (7, 7, 8)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def first_tokens_law(model, prompt, k, temperature, top_p):
    """Exact law of the first k sampled tokens of plain sampling (float64)."""
    law = {(): 1.0}
    for _ in range(k):
        nxt = {}
        for seq, p in law.items():
            with torch.inference_mode():
                logits = model(torch.tensor([prompt + list(seq)])).logits[0, -1:]
            probs = process_logits(logits, temperature, 0, top_p).softmax(-1)[0].double().numpy()
            for t in np.nonzero(probs)[0]:
                nxt[seq + (int(t),)] = p * probs[t]
        law = nxt
    return law


def chi_square_p(counts, law):
    assert sum(law[k] * sum(counts.values()) >= 5 for k in law) >= 3, "too few well-filled outcomes"
    return chi_square_pvalue(counts, law)


@pytest.mark.slow
def test_sampled_first_tokens_follow_plain_sampling():
    # First 3 tokens: the 1st comes from prefill, the 2nd and 3rd from a verified tree.
    # Chi-square at alpha = 1e-6: a correct implementation fails with probability 1e-6.
    model = tiny_llama(vocab=16, seed=3)
    with torch.no_grad():  # sharpen the random model so the law has few, well-filled outcomes
        model.lm_head.weight.mul_(25.0)
    prompt = [1, 5, 7, 9, 5, 7, 9, 5, 7]
    law = first_tokens_law(model, prompt, 3, 0.8, 0.95)
    n = 2000
    counts = Counter(tuple(generate(model, prompt, method="goose", temperature=0.8, top_p=0.95, seed=s,
                                    max_new_tokens=3, eos_token_id=[]).tokens) for s in range(n))
    assert set(counts) <= set(law)
    assert chi_square_p(counts, law) > 1e-6
    # power: greedy decoding (a verifier that ignores the randomness) is rejected
    greedy = Counter(tuple(generate(model, prompt, method="goose", max_new_tokens=3, eos_token_id=[]).tokens)
                     for _ in range(200))
    assert chi_square_p(greedy, law) < 1e-6


def test_stats_account_for_every_token():
    model = tiny_llama()
    out = generate(model, PROMPTS[0], method="goose", max_new_tokens=60, eos_token_id=[])
    s = out.stats
    assert s.forward_calls == 1 + s.steps
    assert sum(s.accepted.values()) + s.steps + 1 >= s.new_tokens  # cut tokens are counted as accepted
    assert s.mat == pytest.approx(s.new_tokens / s.forward_calls)
    assert len(out.kinds) == len(out.tokens) and out.kinds[0] == "bonus"


def test_every_pass_is_timed_with_its_width_and_context():
    """``stats.passes``: per tree pass, the tokens passed (root included), the committed
    tokens before it (the context ``auto`` priced it at) and a positive time."""
    model = tiny_llama()
    out = generate(model, PROMPTS[0], method="goose", max_new_tokens=40, eos_token_id=[])
    s = out.stats
    assert len(s.passes) == s.steps and [n for n, _, _ in s.passes] == [t + 1 for t in s.tree_sizes]
    contexts = [c for _, c, _ in s.passes]
    # one bonus token after the prefill; then each step adds its accepted nodes and its bonus
    assert contexts[0] == len(PROMPTS[0]) + 1
    assert np.diff(contexts).tolist() == [a + 1 for a in s.accept_lengths[:-1]]
    assert all(sec > 0 for _, _, sec in s.passes) and s.to_json()["passes"] == [list(p) for p in s.passes]
    assert sum(sec for _, _, sec in s.passes) == pytest.approx(s.time_forward)


def test_auto_budget_is_lossless_and_calibration_is_cached(tmp_path, monkeypatch):
    from goose.hf import calibrate

    monkeypatch.setenv("GOOSE_CACHE", str(tmp_path))
    model = tiny_llama()
    curve = calibrate(model, sizes=(1, 2, 4), context=16, reps=2)
    assert curve.tokens.tolist() == [1, 2, 4] and (curve.seconds > 0).all() and curve.contexts is None
    assert len(list((tmp_path / "cost").glob("*.json"))) == 1
    assert calibrate(model, sizes=(1, 2, 4), context=16, reps=2).seconds.tolist() == curve.seconds.tolist()
    # a stale curve in the cache is read as it is until refresh measures anew and replaces it
    (cached,) = (tmp_path / "cost").glob("*.json")
    cached.write_text(json.dumps(json.loads(cached.read_text()) | {"seconds": [7.0, 7.0, 7.0]}))
    assert calibrate(model, sizes=(1, 2, 4), context=16, reps=2)(1) == 7.0
    fresh = calibrate(model, sizes=(1, 2, 4), context=16, reps=2, refresh=True)
    assert fresh(1) < 7.0 and calibrate(model, sizes=(1, 2, 4), context=16, reps=2).to_json() == fresh.to_json()
    # several lengths: one row each; lengths past the window (2048) are left out
    rows = calibrate(tiny_llama(max_positions=64), sizes=(1, 2), context=(8, 32, 4096), reps=1, cache=False)
    assert rows.contexts.tolist() == [8, 32] and rows.seconds.shape == (2, 2) and (rows.seconds > 0).all()
    assert rows.prefill[:, 0].tolist() == [8, 32] and (rows.prefill[:, 1] > 0).all()  # each length's prefill, timed
    assert curve.prefill[:, 0].tolist() == [16] and rows.prefill_cost(16) > 0
    # a window shorter than every length asked for: as much context as fits (64 - 2 - 1)
    short = calibrate(tiny_llama(max_positions=64), sizes=(1, 2), context=(100, 4096), reps=1, cache=False)
    assert short.contexts.tolist() == [61]
    for prompt in PROMPTS:
        prompt = [int(t) for t in prompt]
        ref = reference(model, prompt, 40)
        for method in ("goose", "best-first", "tr"):
            assert generate(model, prompt, method=method, budget="auto", max_new_tokens=40, eos_token_id=[]).tokens == ref
    with pytest.raises(ValueError, match="auto"):
        generate(model, PROMPTS[0], budget="big")




















@pytest.mark.parametrize("arch", ["llama", "gemma3"])  # gemma3: soft-capped logits
@pytest.mark.skipif(not _bf16_reorder(), reason="oneDNN's bfloat16 weights need AVX512 (bw, vl, dq) or AVX-NE-CONVERT")
def test_bfloat16_prompt_seeding_only_shapes_drafts(arch):
    make = {"llama": tiny_llama, "gemma3": tiny_gemma3}[arch]
    model = make("sdpa", vocab=256).float()
    with torch.no_grad():  # peaked distributions, as a trained model's are
        model.get_output_embeddings().weight.mul_(30)
    prompt = [int(t) for t in torch.randint(1, 256, (60,), generator=torch.Generator().manual_seed(3))]
    exact = HFTarget(model)
    exact.head.bf16 = False
    exact.prefill(prompt)
    ids, probs = exact.prefill_topk(10)
    fast = HFTarget(model)
    fast.head.bf16 = True
    fast.prefill(prompt)
    ids16, probs16 = fast.prefill_topk(10)
    assert ids16.shape == ids.shape == (60, 10)
    # bfloat16 rounding moves probabilities a little and may swap near-ties, no more
    assert probs[:, 0].mean() > 0.3
    np.testing.assert_allclose(np.log(probs16[:, 0]), np.log(probs[:, 0]), atol=0.1)
    assert (ids16[:, 0] == ids[:, 0]).mean() >= 0.9
    # drafts seeded either way verify to the same tokens: plain greedy's
    for bf16 in (False, True):
        target = HFTarget(model)
        target.head.bf16 = bf16
        m = make_method("goose")
        out = decode(target, prompt, m.sources, m.shaper, GreedyVerifier(), 8, 24)
        assert out.tokens == reference(model, prompt, 24)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])  # gemma3: soft-capped logits
def test_prompt_seeding_over_a_candidate_vocabulary(arch):
    """Seeding reads the logits of the ``SEED_VOCAB`` lowest ids and the prompt's own
    tokens: its top-k is the whole head's top-k among those ids, with probabilities
    normalised over them, in the single and the batched target (each row by its own
    prompt); a vocabulary at most twice ``SEED_VOCAB`` is read whole; and drafts seeded
    so still verify to plain greedy's tokens."""
    from goose.hf import HFBatchTarget

    make = {"llama": tiny_llama, "gemma3": tiny_gemma3}[arch]
    model = make("sdpa", vocab=256).float()
    g = torch.Generator().manual_seed(5)
    prompts = [[int(t) for t in torch.randint(1, 256, (n,), generator=g)] for n in (40, 25)]
    target = HFTarget(model)
    target.head.bf16 = False
    target.prefill(prompts[0])
    assert target.head.seed_vocab(prompts[0]) is None  # 256 ids: read whole
    target.head.SEED_VOCAB = 64
    batched = HFBatchTarget(model, single=target)
    batched.prefill(prompts)
    for row, prompt in enumerate(prompts):
        vocab = target.head.seed_vocab(prompt)
        assert vocab.tolist() == list(range(64)) + sorted({t for t in prompt if t >= 64})
        target.prefill(prompt)
        hidden = target._hidden.clone()
        ids, probs = target.prefill_topk(10)
        with torch.inference_mode():
            logits = target.head.logits(hidden)[:, vocab]  # the whole head, read at the candidates
        top = torch.topk(logits, 10, dim=-1)
        np.testing.assert_array_equal(ids, vocab[top.indices].numpy())
        np.testing.assert_allclose(probs, torch.softmax(logits, -1).gather(1, top.indices).numpy(), rtol=1e-5)
        again = batched.prefill_topk(row, 10)
        np.testing.assert_array_equal(again[0], ids)
        assert not np.isin(ids, np.setdiff1d(np.arange(256), vocab.numpy())).any()
    m = make_method("goose")
    out = decode(target, prompts[0], m.sources, m.shaper, GreedyVerifier(), 8, 24)
    assert out.tokens == reference(model, prompts[0], 24)




def _near_tie_hidden(weight: torch.Tensor, rows: int, margin: float, seed: int) -> torch.Tensor:
    """Hidden states whose two best logits (tokens a < b) differ by ``margin`` in b's
    favour, far below bfloat16's resolution, and far above every other logit."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(rows):
        a, b = sorted(torch.randperm(weight.shape[0], generator=g)[:2].tolist())
        wa, wb = weight[a].double(), weight[b].double()
        x = 4.0 * (wa + wb) / (wa + wb).norm() ** 2 * weight.shape[1] ** 0.5
        d = wb - wa
        x = x + (margin - float(d @ x)) / float(d @ d) * d  # now (wb - wa) . x == margin
        out.append(x.float())
    return torch.stack(out)


@pytest.mark.skipif(not _fast_bf16(), reason="needs a CPU with native bfloat16 (AVX512-BF16 or AMX)")
def test_argmax_only_logits_are_exact_at_the_argmax_and_top_entries(monkeypatch):
    model = tiny_llama("sdpa", vocab=512).float()
    target = HFTarget(model)
    assert target.argmax_only_logits
    weight = model.get_output_embeddings().weight.detach()
    g = torch.Generator().manual_seed(1)
    hidden = torch.cat([torch.randn(32, weight.shape[1], generator=g) * 4,  # ordinary rows
                        _near_tie_hidden(weight, 96, 2e-3, seed=2)])  # near-ties bfloat16 cannot order
    with torch.inference_mode():
        exact = target.head.logits(hidden)
        fast = target.head.argmax_exact_logits(hidden)
        bf16 = hidden.bfloat16() @ weight.bfloat16().t()
    # the near-ties do trip bfloat16 on its own, so the exact fix-up is what this checks
    assert (bf16.argmax(-1) != exact.argmax(-1)).sum() >= 10
    assert torch.equal(fast.argmax(-1), exact.argmax(-1))
    # the 10 largest entries of each row, which the drafting sources read, are float32's too
    head = target.head
    top_fast, top_exact = fast.topk(head.EXACT_TOP_K, dim=-1), exact.topk(head.EXACT_TOP_K, dim=-1)
    assert torch.equal(top_fast.indices, top_exact.indices)
    torch.testing.assert_close(top_fast.values, top_exact.values, rtol=1e-6, atol=1e-5)
    # approximate entries sit within the bound of the exact ones
    err = (fast - exact).abs()
    bound = (head.BF16_DOT_ERROR * weight.norm(dim=-1)[None] * hidden.norm(dim=-1)[:, None]
             + head.BF16_OUT_ERROR * fast.abs())
    assert bool((err <= bound).all())
    # nearly flat rows take the float32 head whole
    monkeypatch.setattr(type(head), "EXACT_ENTRIES_MAX", 0)
    with torch.inference_mode():
        assert torch.equal(head.argmax_exact_logits(hidden[:8]), exact[:8])


@pytest.mark.skipif(not _fast_bf16(), reason="needs a CPU with native bfloat16 (AVX512-BF16 or AMX)")
def test_greedy_decoding_reads_argmax_only_logits_and_stays_identical(monkeypatch):
    model = tiny_llama("sdpa", vocab=256).float()
    with torch.no_grad():  # peaked distributions, as a trained model's are
        model.get_output_embeddings().weight.mul_(30)
    from goose.hf import VerifyHead

    calls = []
    fast = VerifyHead.argmax_exact_logits
    monkeypatch.setattr(VerifyHead, "argmax_exact_logits", lambda self, h: calls.append(len(h)) or fast(self, h))
    prompt = [int(t) for t in torch.randint(1, 256, (40,), generator=torch.Generator().manual_seed(4))]
    for name in ("pld", "goose", "best-first"):
        m = make_method(name)
        out = decode(HFTarget(model), prompt, m.sources, m.shaper, GreedyVerifier(), m.budget, 32)
        assert out.tokens == reference(model, prompt, 32)
    assert len(calls) > 20  # every tree pass went through the bfloat16 head
    # sampling reads whole distributions: it never gets the argmax-only head
    calls.clear()
    m = make_method("goose")
    from goose.verify import SamplingVerifier

    decode(HFTarget(model), prompt, m.sources, m.shaper, SamplingVerifier(1.0, generator=torch.Generator().manual_seed(0)),
           m.budget, 8)
    assert calls == []


def test_passes_are_summarised_only_for_sources_that_learn_from_them(monkeypatch):
    import goose.engine._loop as loop

    model = tiny_llama("sdpa", vocab=128).float()
    seen = Counter()
    summarise, harvest = loop.Observation, HFTarget.prefill_topk
    monkeypatch.setattr(loop, "Observation", lambda *a: seen.update(["pass"]) or summarise(*a))
    monkeypatch.setattr(HFTarget, "prefill_topk", lambda self, *a: seen.update(["prompt"]) or harvest(self, *a))
    prompt = [5, 9, 3, 5, 9, 3, 5, 9] * 3
    m = make_method("pld")  # the context source reads the text itself: top-k summaries would be wasted
    assert decode(HFTarget(model), prompt, m.sources, m.shaper, GreedyVerifier(), m.budget, 12).tokens == \
        reference(model, prompt, 12)
    assert seen == Counter()
    m = make_method("goose")  # the recycling table is filled from them
    out = decode(HFTarget(model), prompt, m.sources, m.shaper, GreedyVerifier(), m.budget, 12)
    assert seen["prompt"] == 1 and seen["pass"] == out.stats.steps + 1  # the prompt's summary, then each pass


@pytest.mark.parametrize("edit", ["load_state_dict", "add_under_no_grad"])
def test_weights_edited_in_place_are_seen_by_every_derived_copy(edit):
    # goose derives copies of the weights (oneDNN / MKL packed layers, the bfloat16 head):
    # keyed on storage and version, an in-place edit makes fresh ones, so goose stays
    # identical to plain greedy decoding of a model that never had copies
    from goose.kernels import PackedLinear, pack_linears

    model = tiny_llama("sdpa", vocab=256).float()
    with torch.no_grad():  # peaked distributions: the bfloat16 head's exact fix-up is exercised
        model.get_output_embeddings().weight.mul_(30)
    pack_linears(model)
    for m in model.modules():
        if isinstance(m, PackedLinear):
            m.set_plan(["onednn"] * (PackedLinear.PLAN_ROWS + 1))
    target = HFTarget(model)
    prompt = PROMPTS[0]
    m = make_method("goose")
    decode(target, prompt, m.sources, m.shaper, GreedyVerifier(), 8, 16)  # every copy is made now
    state = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(7)
    for v in state.values():
        if v.is_floating_point():
            v.add_(torch.randn(v.shape, generator=g, dtype=v.dtype) * 0.3)
    if edit == "load_state_dict":
        model.load_state_dict(state)
    else:
        with torch.no_grad():
            for name, p in model.named_parameters():
                p.add_(state[name] - p)
    plain = tiny_llama("sdpa", vocab=256).float()
    plain.load_state_dict(state)
    ref = reference(plain, prompt, 30)
    m = make_method("goose")
    assert decode(target, prompt, m.sources, m.shaper, GreedyVerifier(), 8, 30).tokens == ref
    # edits through .data bypass the version counter: the stale copies are then used...
    with torch.no_grad():
        for p in model.parameters():
            p.data.mul_(1.5)
    plain.load_state_dict({k: v * 1.5 if v.is_floating_point() else v for k, v in state.items()})
    ref = reference(plain, prompt, 30)
    m = make_method("goose")
    stale = decode(target, prompt, m.sources, m.shaper, GreedyVerifier(), 8, 30).tokens
    target.repack()  # ...until repack(), which the docs prescribe for that case
    m = make_method("goose")
    assert decode(target, prompt, m.sources, m.shaper, GreedyVerifier(), 8, 30).tokens == ref
    assert stale != ref  # the negative control: without repack() the copies were stale


@pytest.mark.model
def test_a_reused_prompt_prefill_gives_what_a_fresh_one_gives():
    # many samples of one prompt skip its prefill; the output must not change, greedy or sampled
    import goose.hf as gh

    model = tiny_llama(vocab=64, seed=1)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5]
    calls = []
    hook = model.get_decoder().register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        reuse, fresh = gh.Session(model, reuse_prompt=True), gh.Session(model)
        for kw in ({}, {"temperature": 0.9, "top_p": 0.9, "seed": 4}, {"temperature": 1.0, "seed": 5}):
            for method in ("goose", "best-first"):
                a = [reuse.generate(prompt, method=method, max_new_tokens=12, **kw).tokens for _ in range(3)]
                b = fresh.generate(prompt, method=method, max_new_tokens=12, **kw).tokens
                assert a == [b, b, b]
        before = len(calls)
        out = reuse.generate(prompt, method="goose", max_new_tokens=5)
        assert len(calls) - before == out.stats.forward_calls - 1  # every pass but the prefill
        other = reuse.generate(prompt[:-1], method="goose", max_new_tokens=5)  # another prompt: a real prefill
        assert other.tokens == fresh.generate(prompt[:-1], method="goose", max_new_tokens=5).tokens
    finally:
        hook.remove()


class StaleDraftCache:
    """Deliberately broken: feeds only the newest token and never crops the draft cache."""

    @staticmethod
    def logits(src, seq):
        ids = torch.tensor([seq[-1:] if src._fed else seq])
        with torch.no_grad():
            out = src.model(input_ids=ids, past_key_values=src._cache, use_cache=True, logits_to_keep=1)
        src._fed = seq
        return out.logits[0, -1].float()


@pytest.mark.parametrize("arch", ["llama", "gemma3"])  # gemma3: sliding windows in the draft's own pass
def test_a_model_draft_reads_each_path_as_a_fresh_pass_would(arch):
    from goose.hf._draft import DraftModelSource

    model = MODELS[arch]("sdpa")
    context = [int(t) for t in PROMPTS[1]]
    # a branching walk: down one path, back up, across, down again, then a commit
    queries = [(context, ()), (context, (5,)), (context, (5, 7)), (context, (9,)), (context, (5, 7, 9)),
               (context, (9, 3)), (context + [5, 7], ()), (context + [5, 7], (2,)), (context + [5, 7, 2, 4], ())]

    def walk(src):
        src.begin(context)
        out, committed = [], len(context)
        for ctx, path in queries:
            if len(ctx) > committed:
                src.commit(ctx[committed:])
                committed = len(ctx)
            props = src.propose(ctx, path)
            out.append((props[0].q, [p.tokens for p in props]))
        return out

    got = walk(DraftModelSource(model, k=8))
    for (ctx, path), (q, tokens) in zip(queries, got, strict=True):
        with torch.no_grad():
            fresh = model(torch.tensor([ctx + list(path)])).logits[0, -1].float().softmax(-1)
        want = fresh.topk(8)
        assert q.ids == tuple(want.indices.tolist()) and tokens == [(t,) for t in q.ids]
        np.testing.assert_allclose(q.probs, want.values.double().numpy(), rtol=1e-5, atol=1e-7)
    broken = DraftModelSource(model, k=8)
    broken._logits = lambda seq: StaleDraftCache.logits(broken, seq)
    assert [q.ids for q, _ in walk(broken)] != [q.ids for q, _ in got]  # the check has teeth


def test_session_keeps_a_callers_empty_memory():
    # bool(Memory()) is False: an empty memory of the caller's must still be the one used
    from goose.hf import Session
    from goose.methods import Memory

    session = Session(tiny_llama())
    mine = Memory()
    session.generate(PROMPTS[0], method="stand-shared", max_new_tokens=8, temperature=0.8)
    assert len(mine) == 0 and "stand-shared" in session.memories
    session.memories.clear()
    session.generate(PROMPTS[0], method="stand-shared", max_new_tokens=8, temperature=0.8, memory=mine)
    assert "stand-table" in mine, "the caller's empty memory was replaced by the session's"
    assert "stand-shared" not in session.memories


def test_a_generation_that_fills_the_context_window_returns_what_it_made():
    # the window is 40 positions and the prompt 34: six new tokens fit, though 24 were asked for
    model = tiny_llama(max_positions=40)
    prompt = (PROMPTS[0] * 3)[:34]
    out = generate(model, prompt, method="goose", max_new_tokens=24, eos_token_id=[])
    assert out.finish_reason == "context" and len(out.tokens) == 6
    assert out.tokens == reference(model, prompt, 6)
    with pytest.raises(ValueError, match="the prompt has 40 tokens and the model's context window is 40"):
        generate(model, (PROMPTS[0] * 3)[:40], max_new_tokens=4)
