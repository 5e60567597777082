"""goose bench: method and prompt parsing, the interleaved run, summaries and reports,
on a tiny float64 model (speed is measured by the command, never asserted here)."""

import json

import pytest
from typer.testing import CliRunner

from goose.bench import (
    Sampling,
    load_prompts,
    markdown,
    parse_methods,
    run_bench,
    summarize,
    trace_path,
    write_docs,
    write_outputs,
)
from goose.bench._columns import goose_columns
from goose.cli import app
from sim import fit_traces, load_trace, predict_bench

from .tiny import tiny_llama

runner = CliRunner()


def _said(res) -> str:
    """The CLI's output with rich's box drawing and line wrapping undone."""
    return " ".join(res.output.replace("│", " ").split())


def test_parse_methods_expands_budgets_and_hf_pld():
    ms = parse_methods("ar,hf_pld,hf_pld_k7,pld,tr,goose,paper@16,best-first@auto", budgets=["8", "auto"])
    assert [m.label for m in ms] == ["ar", "hf_pld_k4", "hf_pld_k10", "hf_pld_k7", "pld", "tr", "goose@8",
                                     "goose@auto", "paper@16", "best-first@auto"]
    assert [m.k for m in ms[:4]] == [0, 4, 10, 7]
    assert ms[6].budget == 8 and ms[7].budget == "auto" and ms[8].budget == 16
    assert [m.label for m in parse_methods("goose,paper")] == ["goose", "paper"]  # their default budgets
    # single-source baselines take a budget only when it is named: the equal-budget comparisons
    assert [(m.label, m.budget) for m in parse_methods("pld@8,tr@auto", budgets=["4"])] == [
        ("pld@8", 8), ("tr@auto", "auto")]


@pytest.mark.parametrize("text, message", [
    ("ar,nope", "unknown method 'nope'"), ("", "no methods"), ("goose@0", "must be an integer >= 1"),
    ("goose@x", "integer >= 1 or 'auto'"), ("ar@8", "takes no budget"), ("hf_pld_k4@3", "takes no budget"),
    ("paper@auto", "node budget"),
    ("goose@8,goose@8", "given twice"), ("hf_pld_k0", "unknown method"),
])
def test_parse_methods_bad_input(text, message):
    with pytest.raises(ValueError, match=message):
        parse_methods(text)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_load_prompts_files_tasks_ids_and_errors(tmp_path):
    f = _jsonl(tmp_path / "p.jsonl", [
        {"question_id": 1, "task": "chat", "turns": ["hello there", "second turn"]},
        {"question_id": 2, "task": "chat", "turns": ["again"]},
        {"question_id": "c-1", "task": "code", "prompt": "def f(x):"},
    ])
    ps = load_prompts([str(f)], per_task=1)
    assert [(p.qid, p.task, p.chat, p.text) for p in ps] == [("1", "chat", True, "hello there"),
                                                              ("c-1", "code", False, "def f(x):")]
    assert [p.qid for p in load_prompts([str(f)], ids=["c-1", "2"])] == ["c-1", "2"]
    with pytest.raises(ValueError, match="not found.*nope"):
        load_prompts([str(f)], ids=["nope"])
    with pytest.raises(ValueError, match="unknown task 'poetry'"):
        load_prompts(["poetry"], data=tmp_path)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="empty.jsonl holds no prompts"):
        load_prompts([str(tmp_path / "empty.jsonl")])
    bad = _jsonl(tmp_path / "bad.jsonl", [{"turns": ["ok"]}, {"question": "no prompt field"}])
    with pytest.raises(ValueError, match="bad.jsonl:2: a record needs"):
        load_prompts([str(bad)])
    with pytest.raises(ValueError, match="does not exist"):
        load_prompts([str(tmp_path / "missing.jsonl")])
    spec = _jsonl(tmp_path / "spec_bench_dev.jsonl", [{"question_id": 9, "task": "qa", "turns": ["why?"]}])
    assert [p.qid for p in load_prompts(["qa"], data=spec.parent)] == ["9"]
    with pytest.raises(ValueError, match="no prompts for task"):
        load_prompts(["rag"], data=spec.parent)


class CharTokenizer:
    """Characters to ids 1..63; no chat template (chat prompts are encoded raw)."""

    chat_template = None

    def __call__(self, text):
        return {"input_ids": [1 + ord(c) % 63 for c in text]}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    prompts = _jsonl(out / "prompts.jsonl", [
        {"question_id": 1, "task": "rep", "prompt": "abcabcabcabcabcabc"},
        {"question_id": 2, "task": "rep", "turns": ["xyzzy xyzzy xyzzy"]},
        {"question_id": 3, "task": "other", "prompt": "the quick brown fox"},
        {"question_id": 4, "task": "other", "prompt": ""},
        {"question_id": 5, "task": "other", "prompt": "z" * 100},
    ])
    model = tiny_llama(max_positions=96)
    methods = parse_methods("ar,hf_pld_k4,pld,tr,pld@8,tr@8,goose@4,goose@8,best-first@8,paper@16")
    ps = load_prompts([str(prompts)], per_task=None)
    logs = []
    records = run_bench(model, CharTokenizer(), ps, methods, 24, out, trace_method=["goose@8", "tr"], progress=False,
                        log=logs.append)
    return out, records, methods, logs


def test_bench_runs_every_method_and_reports_failing_prompts(tiny_run):
    out, records, methods, logs = tiny_run
    assert len(records) == 5 * len(methods)
    assert [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()] == records
    bad = {r["question_id"]: r["error"] for r in records if "error" in r}
    assert set(bad) == {"4", "5"}
    assert "empty" in bad["4"] and "exceeds the model's context window (96)" in bad["5"]
    assert any("prompt 5 (prompts.jsonl:5) skipped" in s for s in logs)
    good = [r for r in records if "error" not in r]
    assert all(r["identical_to_ar"] for r in good), [(r["question_id"], r["method"]) for r in good]
    for r in good:
        assert r["new_tokens"] == len(r["tokens"]) == 24
        if r["method"] == "ar":
            assert r["forward_calls"] == 24  # the hook counted every forward of model.generate
        if r["method"].startswith("goose"):
            assert r["forward_calls"] == 1 + len(r["accept_lengths"])
    assert sorted(p.name for p in (out / "traces").glob("*.jsonl")) == ["1.jsonl", "2.jsonl", "3.jsonl"]
    assert sorted(p.name for p in (out / "traces" / "tr").glob("*.jsonl")) == ["1.jsonl", "2.jsonl", "3.jsonl"]


def test_bench_summary_pools_tokens_calls_and_time(tiny_run):
    _, records, methods, _ = tiny_run
    s = summarize(records)
    assert s["methods"] == [m.label for m in methods]
    rep = [r for r in records if r["task"] == "rep" and r["method"] == "goose@8"]
    cell = s["tasks"]["rep"]["goose@8"]
    assert cell["mat"] == pytest.approx(sum(r["new_tokens"] for r in rep) / sum(r["forward_calls"] for r in rep))
    ar = [r for r in records if r["task"] == "rep" and r["method"] == "ar"]
    rate = sum(r["new_tokens"] for r in rep) / sum(r["wall_s"] for r in rep)
    assert cell["speedup_vs_ar"] == pytest.approx(rate / (sum(r["new_tokens"] for r in ar) /
                                                         sum(r["wall_s"] for r in ar)))
    assert cell["identical_count"] == "2/2" and s["overall"]["goose@8"]["identical_count"] == "3/3"
    assert s["overall"]["goose@8"]["errors"] == 2
    assert set(cell["accept"]) == {"context", "recycled"}
    assert set(s["gap"]) == {"rep", "other", "overall"}
    assert len(s["errors"]) == 2 * len(methods)


def test_auto_columns_are_predicted_under_the_runs_cost_curve(tmp_path):
    """An ``@auto`` column replays (and is simulated) with the cost curve its trees were
    cut by: from its own trace the replay is exact, context-only or not. A renamed
    column (``g2=goose@auto``) is predicted as the method it ran."""
    import goose.hf as gh

    prompts = _jsonl(tmp_path / "prompts.jsonl", [
        {"question_id": 1, "task": "rep", "prompt": "abcabcabcabcabcabc"},
        {"question_id": 2, "task": "rep", "turns": ["xyzzy xyzzy xyzzy"]},
    ])
    model = tiny_llama()
    out = tmp_path / "run"
    records = run_bench(model, CharTokenizer(), load_prompts([str(prompts)], per_task=None),
                        parse_methods("ar,pld@auto,goose@auto,g2=goose@auto"), 24, out, trace_method=["goose@auto"],
                        progress=False)
    assert predict_bench(out, records, steps=200) == {}  # no curve: nothing to cut auto's trees by
    pred = predict_bench(out, records, steps=200, cost=gh.calibrate(model))["rep"]
    for label in ("pld@auto", "goose@auto", "g2"):
        assert pred[label]["replay"] == pytest.approx(pred[label]["measured"]) and pred[label]["sim"] >= 1
        # speed-ups: the run's (it has an ar column) and the simulated steps' under the curve
        walls = [sum(r["wall_s"] for r in records if r["method"] == m) for m in ("ar", label)]
        assert pred[label]["speedup"] == pytest.approx(walls[0] / walls[1]) and pred[label]["sim_speedup"] > 0
    assert pred["goose@auto"]["own_trace"] and pred["goose@auto"]["rows_missing"] == 0


def test_a_shared_column_is_traced_and_replayed_as_it_ran(tmp_path):
    """A cross-request column (``best-first-shared@auto``) carries its estimates from
    prompt to prompt: its trace runs start from a copy of its memory as it was before
    the prompt's timed run, so each trace records the very generation that was timed
    (the same accepted lengths, step by step), and ``predict_bench`` replays the column
    prompt by prompt with one memory, exactly (replayed MAT = measured)."""
    import goose.hf as gh
    from goose.engine import GenerationRequest
    from goose.methods import Memory
    from sim import replay, replay_sources

    texts = ["abcabcabcabcabcabc", "abcdabcdabcdabcd", "xyzzy xyzzy xyzzy", "abcabcabcxyzzy abcabc"]
    prompts = _jsonl(tmp_path / "prompts.jsonl",
                     [{"question_id": i, "task": "rep", "prompt": t} for i, t in enumerate(texts)])
    model = tiny_llama()
    out = tmp_path / "run"
    label = "best-first-shared@auto"
    records = run_bench(model, CharTokenizer(), load_prompts([str(prompts)], per_task=None),
                        parse_methods(f"ar,{label}"), 24, out, trace_method=[label], progress=False)
    timed = [r for r in records if r["method"] == label]
    for r in timed:
        _, steps = load_trace(out / "traces" / f"{r['question_id']}.jsonl")
        assert [s["accepted"] for s in steps] == r["accept_lengths"]
    cost = gh.calibrate(model)
    pred = predict_bench(out, records, steps=200, cost=cost)["rep"][label]
    assert pred["replay"] == pytest.approx(pred["measured"]) and pred["own_trace"]

    def replayed_calls(memory_per_prompt):
        calls, memory = 0, Memory()
        for r in timed:
            plan = GenerationRequest(label).plan(cost, label=label, memory=Memory() if memory_per_prompt else memory)
            path = out / "traces" / f"{r['question_id']}.jsonl"
            sources, rows = replay_sources(plan.sources, *load_trace(path))
            calls += replay(path, plan.shaper, sources, plan.budget, rows=rows).forward_calls
        return calls

    assert replayed_calls(False) == sum(r["forward_calls"] for r in timed)
    # the control: each prompt replayed from a fresh memory is not the column that ran
    assert replayed_calls(True) != sum(r["forward_calls"] for r in timed)


def test_a_predicted_speed_up_prices_the_prompt_by_a_measured_prefill():
    """The prefill, the same for a method and for plain decoding, is priced by the curve's
    measured prefills, else by the run's own prefill of the prompt, else (no measurement
    at all) by the curve's passes extrapolated: a 1,000-token prompt priced as a draft
    pass made long-prompt speed-ups look 16-35% better than measured (runs/trace31)."""
    from goose.theory import CostCurve
    from sim import prefill_seconds

    passes = CostCurve([1, 24, 32], [0.1, 0.2, 0.2])  # flat past 24 tokens, as a monotone fit often is
    timed = CostCurve([1, 24, 32], [0.1, 0.2, 0.2], prefill=[(256, 1.0), (1024, 4.5)])
    record = {"prompt_tokens": 1000, "time": {"prefill": 4.2}}
    assert prefill_seconds(timed, record) == pytest.approx(1.0 + 3.5 * 744 / 768)  # the curve's, measured
    assert prefill_seconds(passes, record) == 4.2
    assert prefill_seconds(passes, {"prompt_tokens": 1000}) == 0.2
    assert prefill_seconds(lambda n: 0.001 * n, {"prompt_tokens": 1000, "time": {}}) == 1.0

def test_bench_outputs_predictions_and_docs_page(tiny_run, tmp_path):
    out, records, _, _ = tiny_run
    summary = write_outputs(out, records, {"command": "goose bench (test)", "model": "tiny"},
                            predict_bench(out, records))
    pred = summary["predictions"]
    assert set(pred) == {"rep", "other"}
    for rows in pred.values():
        assert {"pld", "tr", "pld@8", "tr@8", "goose@4", "goose@8", "best-first@8", "paper@16"} == set(rows)
        assert all(v["measured"] >= 1 and v["replay"] >= 1 for v in rows.values())
    # held out: "rep" (2 prompts) predicts each from the other; "other" (1 prompt) has none to fit on
    assert all(v["sim"] >= 1 for v in pred["rep"].values())
    assert all(v["sim"] is None for v in pred["other"].values())
    # replaying a traced configuration from its own trace (context exact, recycled fed the recorded rows) is
    # exact, for tr (traced second, its own folder) as for goose@8; the others replay goose@8's trace
    for task in pred:
        for label in ("goose@8", "tr"):
            assert pred[task][label]["own_trace"] and pred[task][label]["rows_missing"] == 0
            assert pred[task][label]["replay"] == pytest.approx(pred[task][label]["measured"])
        assert not pred[task]["tr@8"]["own_trace"] and pred[task]["pld"]["rows_missing"] is None
    for name in ("summary.json", "results.md", "bench_mat.png", "bench_speedup.png", "bench_gap.png",
                 "bench_mat_vs_budget.png"):
        assert (out / name).stat().st_size > 200, name
    md = (out / "results.md").read_text()
    assert "## Acceptance gap" in md and "## Predicted vs measured MAT" in md and "| overall |" in md
    assert "| rep | tr | " in md and "(*own*) | +0.0% | 0.0% |" in md
    assert "## Either source at equal budget" in md and "| goose@8 / max(pld@8, tr@8) |" in md
    assert "## Either source: combined trees vs single sources at their own sizes" in md
    page = write_docs(out, tmp_path / "docs" / "benchmarks.md")
    text = page.read_text()
    assert "goose bench (test)" in text and "(figures/bench_mat.png)" in text
    assert (tmp_path / "docs" / "figures" / "bench_gap.png").is_file()
    # a titled section (a sampling run) is written next to the page and survives a full rewrite
    write_docs(out, page, section="Sampling at T = 0.8")
    text = page.read_text()
    assert text.count("## Sampling at T = 0.8") == 1 and "### MAT (tokens per target forward)" in text
    assert (tmp_path / "docs" / "figures" / "sampling-at-t---0-8_bench_mat.png").is_file()
    page.write_text(page.read_text() + "\n## A note by hand\n\nKept.\n")  # after the last section
    write_docs(out, page, section="Sampling at T = 0.8")
    write_docs(out, page, section="Sampling at T = 1.0")
    write_docs(out, page)
    again = page.read_text()
    assert again.count("## Sampling at T = 0.8") == 1 and again.startswith("# Benchmarks")
    assert again.count("## A note by hand\n\nKept.") == 1 and again.rstrip().endswith("Kept.")


def test_markdown_marks_missing_speedups():
    rec = [{"question_id": "1", "task": "t", "method": "pld", "new_tokens": 4, "forward_calls": 2, "wall_s": 1.0,
            "identical_to_ar": None, "accept": {}}]
    md = markdown(summarize(rec))
    assert "| t | 2.00 |" in md and "| t | - |" in md  # no ar: no speed-up, nothing invented


def test_checks_compare_at_equal_budget_and_flag_shortfalls():
    def rec(task, method, fwd):
        return {"question_id": task, "task": task, "method": method, "new_tokens": 12, "forward_calls": fwd,
                "wall_s": 1.0, "accept": {}}

    names = ("pld", "tr", "pld@auto", "tr@auto", "balanced-k3@8", "goose@8", "goose@auto")
    rows = [rec(t, m, f) for t, fs in (("a", (6, 4, 6, 8, 5, 3, 6)), ("b", (6, 6, 6, 4, 4, 4, 3)))
            for m, f in zip(names, fs, strict=True)]
    md = markdown(summarize(rows))
    # equal budget, auto: a: max(pld@auto 2.0, tr@auto 1.5) -> goose@auto 2.0; b: max(2.0, 3.0) -> 4.0
    assert "| task | goose@auto / max(pld@auto, tr@auto) |" in md
    assert "| a | 2.00 / 2.00 = 1.00x ok |" in md and "| b | 4.00 / 3.00 = 1.33x ok |" in md
    # own sizes: a: max(pld 2.0, tr 3.0) = 3.0 -> goose@8 4.0 ok, goose@auto 2.0 below; b: max(2, 2)
    assert "| a | 4.00 / 3.00 = 1.33x ok | 2.00 / 3.00 = 0.67x BELOW |" in md
    assert "| b | 3.00 / 2.00 = 1.50x ok | 4.00 / 2.00 = 2.00x ok |" in md
    # anisotropy at budget 8 only (auto has no equal-budget balanced tree): (4/2.4 + 3/3) / 2
    assert "| 8 | goose@8 / balanced-k3@8 | 1.33x | 1.00x |" in md and "goose@auto / balanced" not in md
    rows[-1]["forward_calls"] = 12  # goose@auto on b: MAT 1.0 < 3.0
    assert "| b | 1.00 / 3.00 = 0.33x BELOW |" in markdown(summarize(rows))


def test_release_section_checks_fidelity_and_speed_targets_on_the_release_prompts_only():
    from goose.bench import load_reference

    ref = load_reference("release-dev")  # the release's numbers are data, not code
    RELEASE_DEV_IDS, RELEASE_MAT = ref["ids"], {int(b): v for b, v in ref["mat"].items()}

    def rec(task, qid, method, fwd, wall):
        return {"question_id": qid, "task": task, "method": method, "new_tokens": 100, "forward_calls": fwd,
                "wall_s": wall, "accept": {}, "identical_to_ar": True}

    rows = []
    for task, qids in RELEASE_DEV_IDS.items():
        for q in qids:  # paper@60 exactly the release's MAT, paper@16 6% above it on translation
            b16 = RELEASE_MAT[16][task] * (1.06 if task == "translation" else 1.0)
            rows += [rec(task, q, "ar", 100, 10.0), rec(task, q, "hf_pld_k4", 60, 8.0),
                     rec(task, q, "paper@60", 100 / RELEASE_MAT[60][task], 9.0),
                     rec(task, q, "paper@16", 100 / b16, 7.0),
                     rec(task, q, "goose@auto", 50, 10.0 / (1.6 if task != "qa" else 0.9)),
                     rec(task, q, "pld@auto", 70, 10.0 / 1.7),
                     rec(task, q, "pld@6/loose", 30, 4.0) | {"lossless": False},  # LOSSY and faster
                     rec(task, q, "peer", 30, 4.0) | {"tags": ["third-party"]},  # a plug-in, faster
                     rec(task, q, "peer_module:drafter", 30, 4.0)]  # one recorded before the tag
    md = markdown(summarize(rows))
    assert goose_columns(summarize(rows)) == ["paper@60", "paper@16", "goose@auto", "pld@auto", "pld@6/loose"]
    assert "| translation | 4.01 / 4.01 = 1.000 ok | 3.57 / 3.37 = 1.060 OFF |" in md
    assert "| mt_bench | 2.94 / 2.94 = 1.000 ok | 2.51 / 2.51 = 1.000 ok |" in md
    # pld@auto (one source) 1.7x everywhere; goose@auto 1.6x but 0.9x on qa, pooled the
    # fastest method drawing on both sources: the targets are checked for both; the LOSSY
    # column and the third-party ones, faster still (2.5x), never count
    assert "goose's fastest lossless method here is `pld@auto`, 1.70x `ar` overall; its fastest drawing on both " \
           "sources is `goose@auto`" in md
    assert "| target | `pld@auto` | `goose@auto` |" in md
    assert "| >= 1.00x `ar` on every task | 1.70x yes (slowest: mt_bench) | 0.90x no (slowest: qa) |" in md
    assert "| >= 1.25x transformers' prompt lookup (best K: `hf_pld_k4`, 1.25x) | 1.36x yes | " in md
    assert "| >= 1.15x the reference's best CPU configuration (1.32x `ar`) | 1.29x yes | " in md
    # one prompt fewer: not the release's prompt set, no comparison with its numbers
    assert "Against the reference run `release-dev`" in md
    assert "Against the reference run" not in markdown(summarize([r for r in rows if r["question_id"] != "85"]))


def test_fit_traces_counts_root_frequencies(tmp_path):
    def step(ref, chain, ranks):
        props = {"context": [{"query": [0, 0], "depth": 0, "tokens": [chain] if chain else [],
                              "confidence": [], "keys": []}],
                 "recycled": [{"query": [0, 0], "depth": 0, "tokens": [[t] for t in ranks],
                               "confidence": [], "keys": []}]}
        return {"type": "step", "reference": ref, "proposals": props}

    steps = [step([5, 6, 7], [5, 6, 9], [5, 8]),   # chain: 2 accepted then a miss; rank 0 right, overlaps
             step([5, 6, 7], [4], [8, 5]),         # chain misses at depth 1; rank 1 right
             step([3, 1, 1], None, [2, 9]),        # no match; no rank right
             step([5, 6, 7], [5, 6, 7], [5, 1])]   # chain all right; rank 0 right, overlaps
    path = _jsonl(tmp_path / "t.jsonl", [{"type": "header"}, *steps])
    m = fit_traces([path], ranks=2, min_trials=1)
    assert m.chain.match_prob == pytest.approx(3 / 4)
    assert m.chain.alpha == pytest.approx(2 / 3)
    # depth 2: 2/2, depth 3: 1/2 -> ratios (1 / (2/3), 0.5 / 1) = (1.5, 0.5) -> mean 1.0
    assert m.chain.decay == pytest.approx(1.0)
    assert m.recycled.overlap == pytest.approx(2 / 3)
    # raw betas (2/4, 1/4) sum to 0.75 > 1 - alpha: scaled to fit sibling exclusivity
    assert sum(m.recycled.betas) == pytest.approx(1 / 3)
    assert m.recycled.betas[0] == pytest.approx(2 * m.recycled.betas[1])
    with pytest.raises(ValueError, match="no traces"):
        fit_traces([])


@pytest.mark.parametrize("args, message", [
    (["--methods", "ar,warp"], "unknown method 'warp'"),
    (["--tasks", "poetry"], "unknown task 'poetry'"),
    (["--budget", "0", "--methods", "goose"], "must be an integer >= 1"),
    (["--batch-size", "4", "--repeats", "0"], "--repeats must be >= 1"),
    (["--repeats", "3"], "--repeats times batched runs"),
])
def test_cli_bench_bad_inputs_fail_before_loading_a_model(args, message, tmp_path):
    res = runner.invoke(app, ["bench", "--model", str(tmp_path / "no-model"), "--out", str(tmp_path / "o"), *args])
    assert res.exit_code != 0
    assert message in _said(res)


def test_cli_bench_empty_prompt_file(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    res = runner.invoke(app, ["bench", "--tasks", str(tmp_path / "e.jsonl"), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "holds no prompts" in _said(res)


def test_cli_bench_docs_needs_a_run(tmp_path):
    res = runner.invoke(app, ["bench-docs", str(tmp_path)])
    assert res.exit_code != 0 and "holds no summary.json" in _said(res)


@pytest.mark.model
def test_sampling_bench_runs_every_sampler_and_reports_the_pairs(tmp_path):
    prompts = _jsonl(tmp_path / "prompts.jsonl", [
        {"question_id": 1, "task": "rep", "prompt": "abcabcabcabcabcabc"},
        {"question_id": 2, "task": "other", "prompt": "the quick brown fox"},
    ])
    model = tiny_llama(max_positions=96)
    methods = parse_methods("ar,hf_pld_k4,goose,stand/rrs,stand/traversal,stand-topk")
    draw = Sampling(0.8, top_p=0.95, seed=3)
    records = run_bench(model, CharTokenizer(), load_prompts([str(prompts)], per_task=None), methods, 16,
                        tmp_path / "out", progress=False, sampling=draw)
    assert all("error" not in r for r in records), [r.get("error") for r in records]
    assert all(r["identical_to_ar"] is None and r["sampling"]["temperature"] == 0.8 for r in records)
    assert {r["sampling"]["seed"] for r in records} == {3, 4}  # prompt i is seeded 3 + i, by every method
    assert all(r["new_tokens"] == 16 for r in records)
    # seeded: the same bench again draws the same tokens
    again = run_bench(model, CharTokenizer(), load_prompts([str(prompts)], per_task=None), methods, 16,
                      tmp_path / "again", progress=False, sampling=draw)
    assert [r["tokens"] for r in again] == [r["tokens"] for r in records]
    summary = summarize(records)
    md = markdown(summary, {"sampling": draw.to_json()})
    assert "Identical to `ar`" not in md
    assert "| stand/traversal / stand-topk |" in md and "| stand/traversal / stand/rrs |" in md
    with pytest.raises(ValueError, match="unknown verifier 'nope'"):
        parse_methods("stand/nope")
    with pytest.raises(ValueError, match="takes no goose verifier"):
        parse_methods("ar/rrs")


def test_homogeneity_test_accepts_one_law_and_rejects_two():
    from collections import Counter

    import numpy as np

    from goose.bench import homogeneity_pvalue

    rng = np.random.default_rng(0)
    p, q = [0.5, 0.3, 0.15, 0.05], [0.4, 0.4, 0.15, 0.05]
    same = [homogeneity_pvalue(Counter(rng.choice(4, 2000, p=p).tolist()), Counter(rng.choice(4, 2000, p=p).tolist()))
            for _ in range(20)]
    assert min(same) > 1e-3  # each fails with probability 1e-3 at this alpha
    assert homogeneity_pvalue(Counter(rng.choice(4, 2000, p=p).tolist()),
                              Counter(rng.choice(4, 2000, p=q).tolist())) < 1e-6
    assert homogeneity_pvalue(Counter({1: 3}), Counter({1: 5})) == 1.0  # one column: nothing to compare


@pytest.mark.model
def test_verifiers_compared_on_the_same_drawn_trees():
    from goose.bench import same_tree_mat

    model = tiny_llama(vocab=16, seed=3)
    prompt = [int(t) for t in range(16)] * 2
    res = same_tree_mat(model, [prompt, prompt[::-1]], "stand", ("rrs", "traversal"), repeats=4, temperature=1.0,
                        max_new_tokens=10, progress=False)
    assert res["trees"] > 0 and set(res["mean_accepted"]) == {"rrs", "traversal"}
    diff = res["vs_rrs"]["traversal"]
    assert diff["ratio_of_mat"] == pytest.approx((1 + res["mean_accepted"]["traversal"]) /
                                                 (1 + res["mean_accepted"]["rrs"]))
    with pytest.raises(ValueError, match="read q"):
        same_tree_mat(model, [prompt], "stand", ("match", "traversal"), max_new_tokens=4, progress=False)
    with pytest.raises(ValueError, match="no tree with a drawn node"):
        same_tree_mat(model, [prompt], "goose", ("rrs", "traversal"), max_new_tokens=4, progress=False)


@pytest.mark.model
def test_drawing_compared_with_its_top_k_control_on_the_same_nodes():
    from goose.bench import drafting_gain

    model = tiny_llama(vocab=16, seed=3)
    prompt = [int(t) for t in range(16)] * 2
    res = drafting_gain(model, [prompt, prompt[::-1]], "stand", temperature=1.0, max_new_tokens=10, progress=False)
    parts = res["by_depth"]
    assert parts["all"]["nodes"] == res["nodes"] > 0
    assert parts["root"]["nodes"] + parts.get("below", {"nodes": 0})["nodes"] == res["nodes"]
    for r in parts.values():
        assert 0 < r["drawn"] <= 1 and 0 < r["topk"] <= 1
        assert r["ratio"] == pytest.approx(r["drawn"] / r["topk"])
    with pytest.raises(ValueError, match="drew no children"):
        drafting_gain(model, [prompt], "stand-topk", max_new_tokens=4, progress=False)
    # best-of-N: the later samples of a prompt draft from the table the first one filled
    shared = drafting_gain(model, [prompt], "stand-shared", temperature=1.0, max_new_tokens=10, samples=3,
                           progress=False)
    split = shared["by_sample"]
    assert split["first"]["nodes"] + split["later"]["nodes"] == shared["nodes"]
    with pytest.raises(ValueError, match="samples"):
        drafting_gain(model, [prompt], "stand", samples=0, progress=False)
    for r in (*parts.values(), *split.values()):
        assert max(r["drawn"], r["topk"]) <= r["best_of_both"] <= r["drawn"] + r["topk"]
        assert 0 < r["q_top1"] <= r["p_max"] <= 1 and 0 < r["overlap"] <= 1


def test_the_drafting_judge_reads_slot_one_off_the_overlap_of_p_and_q():
    """A node with one drawn child and no deterministic one is accepted with probability
    1 - TV(p, q) averaged over the draw (slot 1): the judge's rows say so, with q's top-1
    and p's maximum; a second drawn child recovers part of what the first one missed."""
    import numpy as np
    import torch

    from goose.bench import DraftingJudge
    from goose.trees import TreeBuilder
    from goose.verify import select_verifier

    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5, 0.2]] + [[0.0] * 6] * 2, dtype=torch.float64)  # [nodes, vocab]
    p = torch.softmax(logits[0], -1).numpy()
    q_ids, q_probs = np.array([0, 3, 4]), np.array([0.2, 0.5, 0.3])  # too little on p's top token 0

    def judged(*children: int) -> tuple:
        b = TreeBuilder(root=0)
        b.set_q(0, q_ids, q_probs)
        for x in children:
            b.add(0, x, "stand", 0.5, drawn=True)
        judge = DraftingJudge(select_verifier(None, True, 1.0, 0, 1.0, 0))
        judge.verify(b.build(), logits[:len(children) + 1])
        (row,) = judge.rows
        return row

    overlap = np.minimum(p[q_ids], q_probs).sum()
    rows = [judged(x) for x in q_ids]
    for depth, _, topk, row_overlap, q_top1, p_max in rows:
        assert depth == 0 and topk == pytest.approx(p[3]) and q_top1 == pytest.approx(p[3])
        assert row_overlap == pytest.approx(overlap) and p_max == pytest.approx(p.max())
    assert sum(w * r[1] for w, r in zip(q_probs, rows, strict=True)) == pytest.approx(overlap, abs=1e-12)
    depth, drawn, topk, *_ = judged(3, 0)
    assert drawn > judged(3)[1] and topk == pytest.approx(p[[3, 4]].sum())


def test_columns_can_be_labelled_and_goose_ar_is_reachable():
    ms = parse_methods("hf_ar,goose_ar=ar,sfx=best-first@8,bf=best-first", budgets=["4", "auto"])
    assert [(m.label, m.kind) for m in ms] == [("ar", "hf"), ("goose_ar", "goose"), ("sfx", "goose"),
                                               ("bf@4", "goose"), ("bf@auto", "goose")]
    assert ms[1].method.name == "ar" and ms[2].budget == 8  # goose's own plain decoding, beside transformers'
    for bad, message in [("a:b=pld", "must be a plain name"), ("=pld", "must be a plain name"),
                         ("k4=hf_pld", "transformers' columns keep their own names")]:
        with pytest.raises(ValueError, match=message):
            parse_methods(bad)


def test_loose_columns_parse_and_are_refused_where_they_cannot_run(tmp_path):
    ms = parse_methods("ar,goose@8,goose@8/loose,pld/loose-w4-e0.5")
    assert [(m.label, m.verifier) for m in ms[2:]] == [("goose@8/loose", "loose"), ("pld/loose-w4-e0.5", "loose-w4-e0.5")]
    for bad in ("pld/loosen", "pld/loose-w", "pld/"):
        with pytest.raises(ValueError, match="unknown verifier"):
            parse_methods(bad)
    with pytest.raises(ValueError, match="greedy only"):  # loose verification loosens greedy verification
        run_bench(None, None, [], ms, 8, tmp_path, sampling=Sampling(0.8), progress=False)


@pytest.mark.model
def test_a_lossy_column_is_labelled_and_scored_and_every_run_splits_its_time(tmp_path):
    from goose.bench._run import target_logprob
    from goose.hf import encode_prompt

    prompts = load_prompts([str(_jsonl(tmp_path / "prompts.jsonl", [
        {"question_id": 1, "task": "rep", "prompt": "abcabcabcabcabcabc"},
        {"question_id": 2, "task": "other", "prompt": "the quick brown fox"},
    ]))], per_task=None)
    model, tok = tiny_llama(max_positions=96), CharTokenizer()
    # window 2 and entropy threshold 0: a mismatch is accepted whenever the next draft token matches
    records = run_bench(model, tok, prompts, parse_methods("ar,goose@8,goose@8/loose-w2-e0"), 24, tmp_path / "o",
                        progress=False)
    by = {(r["question_id"], r["method"]): r for r in records}
    for p in prompts:
        ids = encode_prompt(tok, p.text, p.chat)
        ar, lossless, lossy = (by[p.qid, m] for m in ("ar", "goose@8", "goose@8/loose-w2-e0"))
        assert lossless["lossless"] and not lossy["lossless"] and "target_logprob" not in lossless
        assert lossy["ar_target_logprob"] == pytest.approx(target_logprob(model, ids, ar["tokens"]))
        assert lossy["target_logprob"] == pytest.approx(target_logprob(model, ids, lossy["tokens"]))
        diff = next((i for i, (a, b) in enumerate(zip(lossy["tokens"], ar["tokens"], strict=True)) if a != b), None)
        assert lossy["first_divergence"] == diff and lossy["identical_to_ar"] == (diff is None)
        for r in (lossless, lossy):  # the split covers the call: its parts add up to the wall time
            t = r["time"]
            parts = t["prefill"] + t["draft"] + t["forward"] + t["verify"] + t["commit"] + t["other"]
            assert parts == pytest.approx(r["wall_s"]) and t["total"] == r["wall_s"]
            assert t["steps"] == len(r["accept_lengths"])
            assert t["nodes"] == pytest.approx(t["steps"] * r["mean_tree_size"])
            # calibration: each accepted node had its chance and was counted once as accepted
            assert sum(sum(c["accepted"]) for c in r["calibration"].values()) == sum(r["accept_lengths"])
    assert any(by[p.qid, "goose@8/loose-w2-e0"]["first_divergence"] is not None for p in prompts)  # it loosened
    summary = summarize(records)
    cell = summary["overall"]["goose@8"]["time"]
    assert cell["steps"] == sum(by[p.qid, "goose@8"]["time"]["steps"] for p in prompts)
    assert 0 <= cell["overhead_share"] <= 1
    assert summary["overall"]["goose@8/loose-w2-e0"]["lossless"] is False
    md = markdown(summary)
    assert "## LOSSY columns: gain and loss" in md and "## Where a step's time goes" in md
    # every table names the lossy column with its label, and only it
    assert md.count("goose@8/loose-w2-e0 (LOSSY)") == md.count("goose@8/loose-w2-e0") > 3
    assert "goose@8 (LOSSY)" not in md


@pytest.mark.model
def test_a_sampled_bench_traces_each_column_with_its_own_draws(tmp_path):
    """Under sampling, the traced run of a column draws what the column drew (prompt i
    seeded seed + i), so its trace holds the sampled text and the trees that law drafted."""
    prompts = _jsonl(tmp_path / "prompts.jsonl", [{"question_id": 1, "task": "rep", "prompt": "abcabcabcabcabcabc"},
                                                  {"question_id": 2, "task": "rep", "prompt": "the quick brown fox"}])
    draw = Sampling(0.8, top_p=0.95, seed=3)
    records = run_bench(tiny_llama(max_positions=96), CharTokenizer(), load_prompts([str(prompts)], per_task=None),
                        parse_methods("ar,goose@8"), 16, tmp_path / "out", trace_method="goose@8", progress=False,
                        sampling=draw)
    for r in (r for r in records if r["method"] == "goose@8"):
        header, steps = load_trace(trace_path(tmp_path / "out", r["question_id"]))
        assert header["tokens"] == r["tokens"] and len(steps) == r["forward_calls"] - 1


def test_the_calibration_table_states_the_noise_a_calibrated_estimate_would_show():
    # one bin of 400 nodes predicted 0.5 on average: 2 sd of a calibrated share is 0.05;
    # a bin under 200 nodes is left out
    from goose.bench._columns import calibration_table
    cal = {"n": [0.0] * 5 + [400.0, 150.0, 0.0, 0.0, 0.0], "predicted": [0.0] * 5 + [200.0, 97.5, 0.0, 0.0, 0.0],
           "accepted": [0.0] * 5 + [236.0, 90.0, 0.0, 0.0, 0.0]}
    lines = calibration_table({"overall": {"pld@auto": {"calibration": {"context/spine": cal}}}})
    rows = [line for line in lines if line.startswith("| pld@auto")]
    assert rows == ["| pld@auto | context/spine | 0.5-0.6 | 400 | 0.500 | 0.590 | +0.090 | 0.050 |"]


def test_never_worse_than_a_chain_is_judged_against_the_noise_of_a_repeated_column():
    # bf2 runs best-first@auto again: its difference from best-first@auto is the noise of
    # the task; on mt_bench the tree is 0.962x the chain inside a 5.8% noise, on qa 0.833x
    # outside a 1.7% one
    def rec(task, method, wall, spec=None, tags=()):
        return {"question_id": task, "task": task, "method": method, "new_tokens": 100, "forward_calls": 60,
                "wall_s": wall, "accept": {}, "identical_to_ar": True, "spec": spec or method, "tags": list(tags)}

    both = ("both-sources", "anisotropic")
    rows = [rec(t, "ar", 10.0) for t in ("mt_bench", "qa")]
    rows += [rec(t, "pld@auto", 5.0, tags=("context-only",)) for t in ("mt_bench", "qa")]
    rows += [rec("mt_bench", "best-first@auto", 5.2, tags=both), rec("qa", "best-first@auto", 6.0, tags=both),
             rec("mt_bench", "bf2", 4.9, "best-first@auto", both), rec("qa", "bf2", 5.9, "best-first@auto", both)]
    md = markdown(summarize(rows))
    assert "## Never worse than a chain" in md and "(`best-first@auto` and `bf2`)" in md
    assert "| mt_bench | 0.962x yes | 5.8% |" in md
    assert "| qa | 0.833x no | 1.7% |" in md
    assert "| bf2" not in md.split("## Never worse than a chain")[1]  # a repeat is not a column of its own here
    lone = markdown(summarize([r for r in rows if r["method"] != "bf2"]))
    assert "| mt_bench | 0.962x | - |" in lone and "the run has no repeated column" in lone


def test_the_cost_check_sets_every_pass_beside_its_curve_by_width():
    # 30 one-token passes took twice the curve, 25 passes of 4-5 tokens took it exactly
    # (c(5) = 0.3125 between its points), 5 of 20 tokens are too few to show: overall
    # (30 * 0.2 + 20 * 0.3 + 5 * 0.3125 + 5 * 0.5) / (30 * 0.1 + 20 * 0.3 + 5 * 0.3125 + 5 * 0.5)
    from goose.bench._cost import cost_table, pool_costs, priced
    from goose.theory import CostCurve

    curve = CostCurve([1, 4, 20], [0.1, 0.3, 0.5])
    passes = [(1, 50, 0.2)] * 30 + [(4, 60, 0.3)] * 20 + [(5, 60, 0.3125)] * 5 + [(20, 70, 0.5)] * 5
    rec = {"passes": priced(passes, curve)}
    assert rec["passes"][0] == [1, 50, 0.2, 0.1] and rec["passes"][-1] == [20, 70, 0.5, 0.5]
    cell = pool_costs([rec, {"passes": [[1, 10, 0.1]]}])  # an unpriced pass (no auto) is left out
    assert cell["passes"] == 60 and list(cell["bins"]) == ["1", "4-7", "16+"]
    assert cell["measured_s"] / cell["curve_s"] == pytest.approx(16.0625 / 13.0625)
    lines = cost_table({"pld@auto": cell, "ar": None})
    assert lines[1] == "## Cost curve vs measured passes"
    assert lines[-1] == "| pld@auto | 60 | 1.23 | 2.00 (30) | - | 1.00 (25) | - | - |"
    # a batch's passes (rows, width, seconds) are priced at c(width, context=rows) and pooled by width
    rows = CostCurve([1, 4], [[0.1, 0.2], [0.3, 0.6]], contexts=[1, 4])
    (one,) = priced([(2, 4, 0.9)], rows, batched=True)  # 2 rows of 4: between the 1- and 4-row curves
    assert one[:3] == [2, 4, 0.9] and one[3] == pytest.approx(0.2 + (0.6 - 0.2) / 3)
    assert list(pool_costs([{"batch_passes": [[4, 2, 0.3, 0.2]]}])["bins"]) == ["2-3"]
    assert cost_table({}) == []


@pytest.mark.model
def test_the_bench_prices_every_pass_of_an_auto_column_by_its_curve(tmp_path, monkeypatch):
    from goose.hf import calibrate

    monkeypatch.setenv("GOOSE_CACHE", str(tmp_path))
    prompts = _jsonl(tmp_path / "prompts.jsonl", [{"question_id": 1, "task": "rep", "prompt": "abcabcabcabcabcabc"}])
    model = tiny_llama(max_positions=96)
    records = run_bench(model, CharTokenizer(), load_prompts([str(prompts)], per_task=None),
                        parse_methods("ar,pld@auto,pld@4"), 16, tmp_path / "out", progress=False)
    by = {r["method"]: r for r in records}
    curve = calibrate(model)  # the cached curve the run read
    auto = by["pld@auto"]["passes"]
    assert len(auto) == by["pld@auto"]["forward_calls"] - 1
    assert all(p[3] == curve(p[0], context=p[1]) for p in auto)
    assert all(len(p) == 3 for p in by["pld@4"]["passes"])  # a fixed budget reads no curve
    summary = summarize(records)
    assert summary["overall"]["pld@auto"]["cost"]["passes"] == len(auto)
    assert summary["overall"]["pld@4"]["cost"] is None
    table = markdown(summary).split("## Cost curve vs measured passes")[1]
    assert f"| pld@auto | {len(auto)} |" in table and "| pld@4 |" not in table
