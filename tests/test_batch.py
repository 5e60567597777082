"""Batched speculative generation on tiny float64 models: every row exactly what it
would be alone, ragged rows leaving on their own, a cache that never holds a stale
position, per-row sampling with its own seed, best-of-N sharing one prefill."""

import json

import numpy as np
import pytest
import torch

from goose.engine import RowParts, decode_batch
from goose.hf import HFBatchTarget, HFTarget, Session, generate, generate_batch
from goose.methods import make_method
from goose.verify import GreedyVerifier

from .tiny import reference, tiny_gemma3, tiny_llama, tiny_qwen2

pytestmark = pytest.mark.model

MODELS = {"llama": tiny_llama, "gemma3": tiny_gemma3, "qwen2": tiny_qwen2}
RNG = np.random.default_rng(3)
# lengths 14, 20, 2 and 30: rows of different lengths, repetitive and random
PROMPTS = [[1, 5, 7, 9, 5, 7, 9, 5, 7, 3, 2, 5, 7, 9], [int(t) for t in RNG.integers(1, 64, 20)], [3, 4],
           [5, 6] * 15]


@pytest.mark.parametrize("arch", sorted(MODELS))
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_every_row_is_token_identical_to_generate_alone(arch, attn):
    # 40 new tokens: past gemma3's sliding window of 8; rows of 2..30 prompt tokens
    model = MODELS[arch](attn)
    refs = [reference(model, p, 40) for p in PROMPTS]
    for method in ("goose", "best-first", "tr"):
        out = generate_batch(model, PROMPTS, method=method, max_new_tokens=40, eos_token_id=[])
        assert [r.tokens for r in out] == refs, f"{method} diverged on {arch}/{attn}"
        assert out.forward_calls == out.steps + 1  # one batched prefill
        assert all(r.finish_reason == "length" for r in out)


class CheckedBatchTarget(HFBatchTarget):
    """Before every pass, each live row's cache holds exactly what a fresh prefill of
    its committed tokens (all but the root) holds, and no column past the longest row."""

    def __init__(self, model, committed):
        super().__init__(model)
        self.committed, self.live, self.checks = committed, list(range(len(committed))), 0
        self.fresh = HFTarget(model)

    def retire(self, keep):
        self.live = [self.live[i] for i in keep]
        super().retire(keep)

    def forward_trees(self, trees, argmax_only, bounded):
        if self.cache is not None:
            assert self.cache.get_seq_length() == max(self.past)
            for b, row in enumerate(self.live):
                tokens = self.committed[row][:-1]
                assert self.past[b] == len(tokens)
                self.fresh.prefill(tokens)
                # float64, but transformers computes rotary angles in float32: keys agree to ~1e-7,
                # and a stale or misplaced position would be off by O(1)
                for (k, v), layer in zip(self.row_cache(b), self.fresh.cache.layers, strict=True):
                    torch.testing.assert_close(k, layer.keys[0], rtol=1e-5, atol=1e-6)
                    torch.testing.assert_close(v, layer.values[0], rtol=1e-5, atol=1e-6)
                self.checks += 1
        return super().forward_trees(trees, argmax_only, bounded)


def test_ragged_rows_leave_on_their_own_and_the_cache_never_holds_a_stale_position():
    model = tiny_llama(vocab=32, seed=3)
    rng = np.random.default_rng(1)
    prompts = [[int(t) for t in rng.integers(1, 32, 5)], [int(t) for t in rng.integers(1, 32, 2000)],
               [1, 2, 3, 1, 2, 3, 1, 2], [int(t) for t in rng.integers(1, 32, 40)]]
    limits = [40, 40, 7, 40]  # row 2 hits its token limit long before row 0 does
    eos = 1  # plain decoding emits it first at new token 2 in row 1, at 0 in row 3 (so it leaves after
    # its prefill), and not within the limit in rows 0 and 2: the four rows leave at four different steps
    plain = [reference(model, p, n) for p, n in zip(prompts, limits, strict=True)]
    assert [row.index(eos) if eos in row else None for row in plain] == [None, 2, None, 0]
    refs = [reference(model, p, n, eos=eos) for p, n in zip(prompts, limits, strict=True)]
    committed = [list(p) for p in prompts]
    rows = []
    for i, (p, n) in enumerate(zip(prompts, limits, strict=True)):
        m = make_method("goose")
        rows.append(RowParts(p, m.sources, m.shaper, GreedyVerifier(), 8, n,
                             on_commit=lambda tokens, kinds, i=i: committed[i].extend(tokens)))
    target = CheckedBatchTarget(model, committed)
    out = decode_batch(target, rows, eos_token_ids=[eos])
    assert [r.tokens for r in out] == refs
    assert [r.finish_reason for r in out] == ["length", "eos", "length", "eos"]
    assert [len(r.tokens) for r in out] == [40, 3, 7, 1]
    assert out.live_rows[0] == 3 and out.live_rows[-1] == 1 and out.live_rows == sorted(out.live_rows, reverse=True)
    assert target.checks >= sum(out.live_rows) - len(prompts)  # every live row checked before every later pass
    assert target.cache is None  # the last row's leaving freed the cache


def test_sampled_rows_are_what_each_row_draws_alone():
    """Row i of a sampled batch draws with seed + i exactly what generate draws alone with
    that seed: each row's law is the single-sequence law, which the sampling tests check
    against plain sampling (exactly on small trees, statistically on the model)."""
    model = tiny_llama("sdpa")
    for method, temp in (("goose", 0.8), ("stand", 1.0)):
        out = generate_batch(model, PROMPTS[:2], method=method, n=3, max_new_tokens=24, temperature=temp,
                             top_p=0.95, seed=5, eos_token_id=[])
        alone = [generate(model, PROMPTS[i // 3], method=method, max_new_tokens=24, temperature=temp, top_p=0.95,
                          seed=5 + i, eos_token_id=[]).tokens for i in range(6)]
        assert [r.tokens for r in out] == alone
        assert len({tuple(r.tokens) for r in out}) > 1  # the samples differ
        assert out.forward_calls == out.steps + 1  # six rows, one prefill pass of two distinct prompts


def test_best_of_n_shares_the_prefill_and_a_shared_table():
    model = tiny_llama()
    calls = []
    decoder = model.get_decoder()
    hook = decoder.register_forward_pre_hook(lambda mod, args, kwargs: calls.append(kwargs["input_ids"].shape),
                                             with_kwargs=True)
    try:
        out = generate_batch(model, [PROMPTS[0]], method="stand-shared", n=4, max_new_tokens=16, temperature=1.0,
                             eos_token_id=[])
    finally:
        hook.remove()
    assert calls[0] == (1, len(PROMPTS[0]))  # one prefill of one row
    assert all(shape[0] <= 4 for shape in calls[1:]) and calls[1][0] == 4  # then the four rows together
    assert len(out) == 4 and all(len(r.tokens) == 16 for r in out)


def test_several_prompts_to_generate_decode_as_a_batch():
    model = tiny_llama()
    refs = [reference(model, p, 12) for p in PROMPTS[:2]]
    out = generate(model, PROMPTS[:2], max_new_tokens=12, eos_token_id=[])
    assert [r.tokens for r in out] == refs
    same = torch.tensor([PROMPTS[0], PROMPTS[0]])
    assert [r.tokens for r in generate(model, same, max_new_tokens=12, eos_token_id=[])] == [refs[0]] * 2
    assert generate(model, [PROMPTS[0]], max_new_tokens=12, eos_token_id=[]).tokens == refs[0]  # one row: one result
    session = Session(model)
    assert [r.tokens for r in session.generate_batch(PROMPTS[:2], max_new_tokens=12, eos_token_id=[])] == refs


def test_bad_batches_get_one_clear_error():
    model = tiny_llama()
    with pytest.raises(ValueError, match="non-empty list of prompts"):
        generate_batch(model, [])
    with pytest.raises(ValueError, match=r"n \(samples per prompt\)"):
        generate_batch(model, [[1, 2]], n=0)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        generate_batch(model, [[1, 2], [3, 10**6]])
    with pytest.raises(ValueError, match="shared by every row"):
        generate_batch(model, [[1, 2], [3, 4]], sources=make_method("pld").sources)


def test_a_raising_row_aborts_every_row():
    model = tiny_llama()
    heard = []

    class Boom(GreedyVerifier):
        def verify(self, tree, logits):
            if tree.num_nodes > 1:
                raise RuntimeError("boom")
            return super().verify(tree, logits)

    rows = []
    for i in range(3):
        m = make_method("goose")
        for s in m.sources:
            s.abort = lambda tokens, i=i: heard.append(i)
        rows.append(RowParts(PROMPTS[0], m.sources, m.shaper, Boom() if i == 1 else GreedyVerifier(), 8, 30))
    with pytest.raises(RuntimeError, match="boom"):
        decode_batch(HFBatchTarget(model), rows)
    assert sorted(set(heard)) == [0, 1, 2]


def test_every_batched_pass_is_timed_with_its_rows_and_width():
    out = generate_batch(tiny_llama(), PROMPTS, method="goose", max_new_tokens=12, eos_token_id=[])
    assert len(out.passes) == out.steps and [r for r, _, _ in out.passes] == out.live_rows
    # the widest row's tree sets the width (root included): at least 1, at most budget + 1
    assert all(1 <= w <= 9 for _, w, _ in out.passes) and any(w > 1 for _, w, _ in out.passes)
    assert all(sec > 0 for _, _, sec in out.passes) and out.to_json()["passes"] == [list(p) for p in out.passes]


def test_the_batched_bench_compares_with_batched_generate(tmp_path):
    from goose.bench import batch_markdown, load_prompts, parse_methods, run_batch_bench, summarize_batch

    from .test_bench import CharTokenizer, _jsonl

    spec = _jsonl(tmp_path / "prompts.jsonl", [
        {"question_id": 1, "task": "rep", "prompt": "abcabcabcabcabcabc"},
        {"question_id": 2, "task": "rep", "prompt": "xyzzy xyzzy xyzzy"},
        {"question_id": 3, "task": "other", "prompt": "the quick brown fox"},
        {"question_id": 4, "task": "other", "prompt": "z" * 100},  # too long for 96 positions: left out
        {"question_id": 5, "task": "other", "prompt": "jumps over the lazy dog"},
    ])
    logs = []
    records = run_batch_bench(tiny_llama(max_positions=96), CharTokenizer(), load_prompts([str(spec)], per_task=None),
                              parse_methods("ar,goose@8,tr"), 16, tmp_path / "o", [1, 2], progress=False,
                              log=logs.append)
    assert any("prompt 4" in x and "left out" in x for x in logs)
    assert {(r["batch_size"], r["method"]) for r in records} == {(b, m) for b in (1, 2) for m in ("ar", "goose@8", "tr")}
    assert all("error" not in r for r in records)
    goose_rows = [s for r in records if r["method"] != "ar" for s in r["identical_to_alone"]]
    assert len(goose_rows) == 2 * 2 * 4 and all(goose_rows)  # 2 methods x 2 sizes x 4 prompts, each as alone
    summary = summarize_batch(records)
    assert set(summary) == {"1", "2"} and summary["2"]["goose@8"]["identical"] == "4/4"
    assert summary["2"]["goose@8"]["speedup_vs_ar"] > 0 and len(summary["2"]["goose@8"]["per_batch"]) == 2
    md = batch_markdown(summary)
    assert "### batch size 2" in md and "| goose@8 |" in md


def test_the_batched_bench_prices_each_pass_of_an_auto_column_by_the_batched_curve(tmp_path, monkeypatch):
    from goose.bench import batch_markdown, load_prompts, parse_methods, run_batch_bench, summarize_batch
    from goose.hf import calibrate_batch

    from .test_bench import CharTokenizer, _jsonl

    monkeypatch.setenv("GOOSE_CACHE", str(tmp_path))
    spec = _jsonl(tmp_path / "prompts.jsonl", [{"question_id": 1, "task": "rep", "prompt": "abcabcabcabcabcabc"},
                                               {"question_id": 2, "task": "rep", "prompt": "xyzzy xyzzy xyzzy"}])
    model = tiny_llama(max_positions=96)
    records = run_batch_bench(model, CharTokenizer(), load_prompts([str(spec)], per_task=None),
                              parse_methods("ar,pld@auto,pld@4"), 12, tmp_path / "o", [2], progress=False)
    by = {r["method"]: r for r in records}
    curve = calibrate_batch(model)  # the cached curve the cut read
    passes = by["pld@auto"]["batch_passes"]
    assert len(passes) == by["pld@auto"]["forward_calls"] - 1 and all(len(p) == 4 for p in passes)
    assert all(p[3] == curve(p[1], context=p[0]) for p in passes)
    assert all(len(p) == 3 for p in by["pld@4"]["batch_passes"])  # a fixed budget reads no curve
    summary = summarize_batch(records)
    assert summary["2"]["pld@auto"]["cost"]["passes"] == len(passes) and summary["2"]["pld@4"]["cost"] is None
    assert "#### Cost curve vs measured passes" in batch_markdown(summary)


def test_the_batched_bench_times_repeated_runs_by_their_median(tmp_path, monkeypatch):
    """``repeats``: every column runs that many times per batch, in alternating order;
    the record keeps the first run's tokens, all wall times, and their median."""
    import goose.bench._batch as gbatch
    from goose.bench import load_prompts, parse_methods, run_batch_bench

    from .test_bench import CharTokenizer, _jsonl

    spec = _jsonl(tmp_path / "prompts.jsonl", [{"question_id": i, "task": "t", "prompt": p}
                                               for i, p in enumerate(["abcabcabc", "xyzxyzxy"])])
    walls = iter([5.0, 1.0, 4.0, 2.0, 3.0, 6.0])  # the runs in the order they happen
    order = []
    real = gbatch._run_one

    def timed(session, model, m, *args):
        order.append(m.label)
        return real(session, model, m, *args) | {"wall_s": next(walls)}

    monkeypatch.setattr(gbatch, "_run_one", timed)
    args = (tiny_llama(max_positions=96), CharTokenizer(), load_prompts([str(spec)], per_task=None),
            parse_methods("ar,goose@8"), 8, tmp_path / "o", [2])
    records = run_batch_bench(*args, progress=False, repeats=3)
    assert order == ["ar", "goose@8", "goose@8", "ar", "ar", "goose@8"]  # each round in the other order
    by = {r["method"]: r for r in records}
    assert by["ar"]["walls_s"] == [5.0, 2.0, 3.0] and by["ar"]["wall_s"] == 3.0
    assert by["goose@8"]["walls_s"] == [1.0, 4.0, 6.0] and by["goose@8"]["wall_s"] == 4.0
    assert by["goose@8"]["tokens_per_s"] == by["goose@8"]["new_tokens"] / 4.0
    assert by["goose@8"]["identical_to_alone"] == [True, True]
    assert not any("repeats_differ" in r for r in records)  # greedy runs repeat exactly
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        run_batch_bench(*args, progress=False, repeats=0)


def test_a_batched_column_that_fails_runs_no_more_repeats_and_a_failed_repeat_fails_it(tmp_path, monkeypatch):
    """Under ``repeats``, a column whose run raised on a batch is not run again there, and
    a repeat that raises after a good run turns the batch's record into that error (the
    median of the runs that did finish would hide it)."""
    import goose.bench._batch as gbatch
    from goose.bench import load_prompts, parse_methods, run_batch_bench

    from .test_bench import CharTokenizer, _jsonl

    spec = _jsonl(tmp_path / "prompts.jsonl", [{"question_id": i, "task": "t", "prompt": p}
                                               for i, p in enumerate(["abcabcabc", "xyzxyzxy"])])
    order, real = [], gbatch._run_one

    def flaky(session, model, m, *args):
        order.append(m.label)
        if m.label == "pld@4" or (m.label == "goose@8" and order.count("goose@8") == 2):
            return {"method": m.label, "error": f"RuntimeError: {m.label} failed"}
        return real(session, model, m, *args)

    monkeypatch.setattr(gbatch, "_run_one", flaky)
    records = run_batch_bench(tiny_llama(max_positions=96), CharTokenizer(),
                              load_prompts([str(spec)], per_task=None), parse_methods("ar,goose@8,pld@4"), 8,
                              tmp_path / "o", [2], progress=False, repeats=3)
    assert order.count("pld@4") == 1 and order.count("goose@8") == 2 and order.count("ar") == 3
    by = {r["method"]: r for r in records}
    assert by["pld@4"]["error"] == "RuntimeError: pld@4 failed"
    assert by["goose@8"]["error"] == "RuntimeError: goose@8 failed" and "wall_s" not in by["goose@8"]
    assert "error" not in by["ar"] and len(by["ar"]["walls_s"]) == 3


def test_calibrate_batch_keeps_its_curve_until_asked_to_measure_anew(tmp_path, monkeypatch):
    """``goose calibrate --batch`` refreshes the cached batched curve that batch-aware
    ``auto`` reads; a plain call reads the cache without measuring."""
    import json

    from goose.hf import calibrate_batch

    monkeypatch.setenv("GOOSE_CACHE", str(tmp_path))
    model, args = tiny_llama(), {"rows": (1, 2), "widths": (1, 3), "reps": 1}
    first = calibrate_batch(model, **args)
    assert list(first.tokens) == [1, 3] and list(first.contexts) == [1, 2]
    assert all(first(w, context=r) > 0 for w in (1, 3) for r in (1, 2))
    (cached,) = (tmp_path / "cost").glob("*.json")
    planted = json.loads(cached.read_text())
    planted["seconds"] = [[7.0, 7.0], [7.0, 7.0]]  # a curve no measurement gives
    cached.write_text(json.dumps(planted))
    calls = []
    real = HFBatchTarget.forward_trees
    monkeypatch.setattr(HFBatchTarget, "forward_trees", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    assert calibrate_batch(model, **args)(1, context=1) == 7.0 and not calls  # read, not measured
    fresh = calibrate_batch(model, **args, refresh=True)
    assert len(calls) == 2 * 2 * 2  # rows x widths x (warm-up + 1 rep)
    assert fresh(1, context=1) < 7.0 and calibrate_batch(model, **args).to_json() == fresh.to_json()



@pytest.mark.parametrize(("flags", "kinds", "batched"), [
    ([], [(True, False)], None),
    (["--sampling"], [(False, True), (False, False)], None),
    (["--sampling", "--batch"], [(False, True), (False, False)], False),
    (["--batch"], [(True, False)], True),
])
def test_goose_calibrate_refreshes_the_curves_that_auto_reads(flags, kinds, batched, tmp_path, monkeypatch):
    """``goose calibrate`` measures anew the curve of every kind of pass the runs it names
    cut by (``GenerationRequest.cost_kind``): greedy's argmax-only passes by default; with
    ``--sampling``, sample-and-match's bounded logits and the float32 logits of verifiers
    that read the target's law; with ``--batch``, the batched curve of the same kind."""
    from typer.testing import CliRunner

    import goose.hf as gh
    from goose.cli import app
    from goose.engine import GenerationRequest
    from goose.verify import Sampling

    model, calls = tiny_llama(), []
    monkeypatch.setenv("GOOSE_CACHE", str(tmp_path))
    monkeypatch.setattr(gh, "load_model", lambda *a, **k: (model, None))
    real, real_batch = gh.calibrate, gh.calibrate_batch
    monkeypatch.setattr(gh, "calibrate", lambda m, **k: calls.append(("single", k)) or real(
        m, sizes=(1, 2), context=8, reps=1, cache=False, argmax_only=k["argmax_only"], bounded=k["bounded"]))
    monkeypatch.setattr(gh, "calibrate_batch", lambda m, **k: calls.append(("batch", k)) or real_batch(
        m, rows=(1, 2), widths=(1, 2), context=8, reps=1, cache=False, argmax_only=k["argmax_only"]))
    out = tmp_path / "curve.json"
    result = CliRunner().invoke(app, ["calibrate", "--out", str(out), *flags])
    assert result.exit_code == 0, result.output
    assert [(k["argmax_only"], k["bounded"]) for w, k in calls if w == "single"] == kinds
    assert all(k["refresh"] for _, k in calls)
    assert [k["argmax_only"] for w, k in calls if w == "batch"] == ([] if batched is None else [batched])
    assert json.loads(out.read_text())["tokens"] == [1.0, 2.0]
    # the kinds are those the requests of each regime ask their curve for
    assert GenerationRequest("pld", "auto").cost_kind == (True, False)
    assert GenerationRequest("pld", "auto", Sampling(temperature=0.8)).cost_kind == (False, True)
    assert GenerationRequest("pld", "auto", Sampling(temperature=0.8), verifier="traversal").cost_kind == (False, False)

class TreeLog(HFBatchTarget):
    """Records every pass's trees (tokens and parents per row)."""

    def __init__(self, model):
        super().__init__(model)
        self.log = []

    def forward_trees(self, trees, argmax_only, bounded):
        self.log.append([(t.tokens.tolist(), t.parents.tolist()) for t in trees])
        return super().forward_trees(trees, argmax_only, bounded)


def _cut_passes(model, method, monkeypatch, full):
    import goose.engine._batch as eb

    if full:  # every row drafts its whole budget before the cut (no small tree first)
        monkeypatch.setattr(eb, "_shape_and_cut", lambda rows, cost: eb.cut_batch([r.shape() for r in rows], cost))
    rows = [RowParts(p, *_parts(method, 16), 40) for p in PROMPTS]
    target = TreeLog(model)
    out = decode_batch(target, rows, batch_cost=lambda rows, width: 1.0 + 0.03 * rows * width)
    monkeypatch.undo()
    return target.log, [r.tokens for r in out]


@pytest.mark.parametrize("method", ["pld", "best-first", "goose"])
def test_the_batch_cut_from_small_trees_first_passes_what_full_budgets_pass(method, monkeypatch):
    model = tiny_llama()
    small, tokens = _cut_passes(model, method, monkeypatch, full=False)
    full, tokens_full = _cut_passes(model, method, monkeypatch, full=True)
    assert tokens == tokens_full == [reference(model, p, 40) for p in PROMPTS]
    assert small == full  # every pass holds the trees the full budgets would have been cut to
    assert max(len(t[0]) for step in full for t in step) > 1  # and some drafts were kept


def _parts(method, budget=8):
    m = make_method(method)
    return m.sources, m.shaper, GreedyVerifier(), budget


def test_the_small_tree_batch_check_catches_a_growth_bound_that_lies(monkeypatch):
    from goose.trees import BestFirstShaper

    model = tiny_llama()
    full, _ = _cut_passes(model, "best-first", monkeypatch, full=True)
    monkeypatch.setattr(BestFirstShaper, "growth_bound", lambda self, tree: 0.0)
    lie, tokens = _cut_passes(model, "best-first", monkeypatch, full=False)
    assert tokens == [reference(model, p, 40) for p in PROMPTS]  # greedy tokens never depend on the trees
    assert lie != full
