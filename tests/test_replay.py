import json
from pathlib import Path

import numpy as np
import pytest

from goose.hf import generate
from goose.methods import make_method
from goose.sources import ContextNGramSource
from goose.trees import AutoBudgetShaper, DraftTree, TreeShaper
from sim import RowBook, load_trace, replay, replay_method
from sim._replay import TraceSource

from .tiny import tiny_llama

pytestmark = pytest.mark.model

PROMPTS = [[1, 5, 7, 9, 5, 7, 9, 5, 7, 3, 2, 5, 7, 9], [int(t) for t in np.random.default_rng(0).integers(1, 64, 20)]]


@pytest.mark.parametrize("method", ["pld", "goose", "tr", "paper", "best-first"])
def test_replay_reproduces_the_recorded_mat(tmp_path, method):
    model = tiny_llama()
    for i, prompt in enumerate(PROMPTS):
        path = tmp_path / f"{method}{i}.jsonl"
        out = generate(model, prompt, method=method, max_new_tokens=80, eos_token_id=[], trace=path)
        header, steps = load_trace(path)
        assert header["tokens"] == out.tokens and len(steps) == out.stats.steps
        assert all(s["reference"] == (prompt + out.tokens)[s["context_len"]:s["context_len"] + 32] for s in steps)
        r = replay_method(path)
        assert r.forward_calls == out.stats.forward_calls and r.mat == out.stats.mat
        assert r.rows_missing == 0  # a learning source is fed the rows the run recorded, every one of them
        assert r.calibration == out.stats.calibration and r.calibration  # every node's estimate, as the run had it


@pytest.mark.parametrize("method", ["tr", "goose"])
def test_a_trace_holds_every_verified_row_and_does_not_change_the_run(tmp_path, method):
    model = tiny_llama()
    for i, prompt in enumerate(PROMPTS):
        path = tmp_path / f"{method}{i}.jsonl"
        traced = generate(model, prompt, method=method, max_new_tokens=60, eos_token_id=[], trace=path)
        plain = generate(model, prompt, method=method, max_new_tokens=60, eos_token_id=[])
        assert traced.tokens == plain.tokens and traced.stats.forward_calls == plain.stats.forward_calls
        header, steps = load_trace(path)
        assert header["version"] == 3 and header["prefill"]["positions"]
        for s in steps:
            v = s["verified"]
            assert len(v["tokens"]) == len(v["parents"]) == len(v["ids"]) == len(v["probs"]) >= 1
            assert v["parents"][0] == -1 and v["tokens"][0] == (prompt + traced.tokens)[s["context_len"] - 1]
        assert [len(s["verified"]["tokens"]) for s in steps] == [1 + n for n in plain.stats.tree_sizes]


def test_a_run_that_stops_at_eos_replays_exactly_with_its_token_limit(tmp_path):
    """The replay cuts trees by the room the run had (its token limit, in the header),
    not by the text's end: a run that stopped at EOS drafted deeper trees near its end."""
    model = tiny_llama()
    free = generate(model, PROMPTS[0], method="paper", max_new_tokens=60, eos_token_id=[])
    path = tmp_path / "eos.jsonl"
    out = generate(model, PROMPTS[0], method="paper", max_new_tokens=60, eos_token_id=[free.tokens[20]], trace=path)
    assert out.finish_reason == "eos" and len(out.tokens) < 60
    r = replay_method(path)
    assert r.forward_calls == out.stats.forward_calls and r.rows_missing == 0
    # control: cut by the text's end (what a trace without the limit gets), the last trees differ
    header, *steps = path.read_text().splitlines()
    path.write_text("\n".join([json.dumps(json.loads(header) | {"max_new_tokens": None}), *steps]))
    assert replay_method(path).rows_missing > 0


def test_rows_of_one_text_agree_across_runs_and_trees(tmp_path):
    """A node's key is the text it follows, written as the recorded text's prefix plus
    the rest: two runs with different trees must have got the same row under one key.
    The control shifts one run's keys by a position and must find disagreements."""
    model = tiny_llama()
    books = []
    for method in ("tr", "goose", "best-first"):
        path = tmp_path / f"{method}.jsonl"
        generate(model, PROMPTS[1], method=method, max_new_tokens=60, eos_token_id=[], trace=path)
        books.append(RowBook(*load_trace(path)))
    shared = disagree = shifted_disagree = 0
    for a in range(len(books)):
        for b in range(a + 1, len(books)):
            ra, rb = books[a]._rows, books[b]._rows
            for key in ra.keys() & rb.keys():
                shared += 1
                disagree += not (np.array_equal(ra[key][0][:3], rb[key][0][:3])
                                 and np.allclose(ra[key][1], rb[key][1], atol=1e-4))
                moved = (key[0] + 1, key[1])
                if moved in rb:
                    shifted_disagree += not np.array_equal(ra[key][0][:3], rb[moved][0][:3])
    assert shared > 100 and disagree == 0
    assert shifted_disagree > 10


def test_a_learning_source_replays_from_another_methods_rows(tmp_path):
    """tr replayed from a pld trace: the old replay answered only what the traced run's
    recycled source said (pld has none: every tr step drafted nothing); the rows feed
    tr's own table wherever its trees meet the recorded ones, and the rest is counted."""
    model = tiny_llama()
    path = tmp_path / "pld.jsonl"
    generate(model, PROMPTS[1], method="pld", max_new_tokens=60, eos_token_id=[], trace=path)
    real = generate(model, PROMPTS[1], method="tr", max_new_tokens=60, eos_token_id=[])
    with_rows = replay_method(path, "tr")
    m = make_method("tr")
    old = replay(path, m.shaper, [TraceSource(s.name, load_trace(path)[1]) for s in m.sources], 80)
    assert old.mat == 60 / 60  # nothing to answer from
    assert with_rows.rows_known > 0 and with_rows.rows_missing > 0
    assert 1 < with_rows.mat <= real.stats.mat * 1.5


def test_replay_of_context_only_sources_is_exact_for_any_budget(tmp_path):
    model = tiny_llama()
    path = tmp_path / "pld.jsonl"
    generate(model, PROMPTS[0], method="pld", max_new_tokens=80, eos_token_id=[], trace=path)
    for budget in (1, 3, 20):
        m = make_method("pld")
        real = generate(model, PROMPTS[0], method="pld", budget=budget, max_new_tokens=80, eos_token_id=[])
        assert replay(path, m.shaper, m.sources, budget).mat == real.stats.mat


def test_trace_source_follows_the_table_over_time(tmp_path):
    steps = [{"context_len": 5, "proposals": {"recycled": [{"query": [1, 2], "depth": 0, "tokens": [[3]],
                                                            "confidence": [[0.5]], "keys": ["rank0"]}]}},
             {"context_len": 9, "proposals": {"recycled": [{"query": [4, 2], "depth": 0, "tokens": [[7]],
                                                            "confidence": [[0.4]], "keys": ["rank0"]}]}}]
    src = TraceSource("recycled", steps)
    assert src.propose([0] * 4 + [2]) and src.propose([0] * 4 + [2])[0].tokens == (3,)
    assert src.propose([0] * 9 + [2])[0].tokens == (7,)  # the row was overwritten later
    assert src.propose([0] * 9 + [5]) == []


def test_bad_trace_is_refused(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"type": "step"}) + "\n")
    with pytest.raises(ValueError, match="not a goose trace"):
        load_trace(bad)


def test_replay_of_real_traces_reproduces_the_recorded_calibration_table():
    """The calibration table the bench printed for a real SmolLM2 run (predicted vs
    realised acceptance per source, kind and bin) comes back from the trace alone,
    exactly; so a changed estimator's table can be read from recorded runs before a model run."""
    base = Path(__file__).parent / "data" / "traces-translation-auto"
    records = {r["question_id"]: r for r in map(json.loads, (base / "records.jsonl").read_text().splitlines())}
    for path in sorted((base / "traces").glob("*.jsonl.gz")):
        record = records[path.name.split(".")[0]]
        r = replay_method(path)
        assert r.forward_calls == record["forward_calls"]
        assert r.calibration == record["calibration"] and r.calibration


def test_a_trace_lacking_rows_fields_is_refused_with_one_clear_error():
    """A version 3 trace whose header or recorded rows lack a field the replay reads
    raises one ValueError naming it, not a KeyError from inside the row book."""
    header, steps = load_trace(Path(__file__).parent / "data" / "traces-math-auto" / "traces" / "433.jsonl.gz")
    RowBook(header, steps)  # the whole trace reads
    step = next(i for i, s in enumerate(steps) if s.get("verified"))
    cut = [dict(s) for s in steps]
    cut[step] = cut[step] | {"verified": {k: v for k, v in steps[step]["verified"].items() if k != "parents"}}
    with pytest.raises(ValueError, match="lacks parents"):
        RowBook(header, cut)
    with pytest.raises(ValueError, match="header lacks tokens"):
        RowBook({k: v for k, v in header.items() if k != "tokens"}, steps)


def test_replay_of_a_default_auto_run_reproduces_it_for_context_sources(tmp_path, monkeypatch):
    # goose generate's default is --budget auto: the trace records that and the cost curve
    # its trees were cut by, so the replay cuts them the same way (exactly, for pld)
    monkeypatch.setenv("GOOSE_CACHE", str(tmp_path))
    model = tiny_llama()
    path = tmp_path / "auto.jsonl"
    out = generate(model, PROMPTS[0], method="pld", budget="auto", max_new_tokens=80, eos_token_id=[], trace=path)
    header, _ = load_trace(path)
    assert header["requested"] == "auto" and header["cost_curve"]["tokens"]
    r = replay_method(path)
    assert r.forward_calls == out.stats.forward_calls and r.mat == out.stats.mat
    header["cost_curve"] = None
    broken = tmp_path / "no_curve.jsonl"
    broken.write_text("\n".join(json.dumps(x) for x in [header]) + "\n")
    with pytest.raises(ValueError, match="cost curve"):
        replay_method(broken)


class _ChainAudit(AutoBudgetShaper):
    """AutoBudgetShaper that checks, at every step, the tree it keeps against every chain
    of the tree it was offered, both scored by its own objective (recomputed here)."""

    def __init__(self, inner, cost, skip_chains=False):
        super().__init__(inner, cost)
        self.skip_chains, self.margins = skip_chains, []

    def choose(self, tree, prob, cost):
        keep, chain = super().choose(tree, prob, cost)
        if self.skip_chains:  # deliberately broken: prefixes only
            chain = None
        kept = chain if chain is not None else np.arange(keep + 1)
        kept_score = self.objective(np.array([1.0 + prob[kept[1:]].sum()]), np.array([cost[len(kept) - 1]]))[0]
        for v in range(1, tree.num_nodes):
            path, u = [], v
            while u > 0:
                path.append(u)
                u = int(tree.parents[u])
            chain_score = self.objective(np.array([1.0 + prob[path].sum()]), np.array([cost[len(path)]]))[0]
            self.margins.append(kept_score - chain_score)
        return keep, chain


class _BreadthFirst(TreeShaper):
    """The inner shaper's tree renumbered breadth-first: a valid growth order whose
    prefixes are not the best trees of their sizes (every node of depth 1 comes first)."""

    def __init__(self, inner):
        self.inner = inner

    def record(self, tree, accepted):
        self.inner.record(tree, accepted)

    def shape(self, context, sources, budget):
        t = self.inner.shape(context, sources, budget)
        order = np.lexsort((np.arange(t.num_nodes), t.depths))
        new = np.empty_like(order)
        new[order] = np.arange(order.size)
        parents = np.where(t.parents[order] >= 0, new[np.maximum(t.parents[order], 0)], -1)
        return DraftTree(t.tokens[order], parents, [t.sources[i] for i in order], t.confidences[order],
                         [t.keys[i] for i in order], [t.kinds[i] for i in order], priors=t.priors[order])


@pytest.mark.parametrize("method", ["tr", "goose", "best-first", "goose/breadth-first"])
def test_auto_is_never_predicted_slower_than_a_chain_on_recorded_traces(tmp_path, method):
    name, _, order = method.partition("/")
    model = tiny_llama()
    path = tmp_path / f"{name}.jsonl"
    generate(model, PROMPTS[0], method=name, max_new_tokens=80, eos_token_id=[], trace=path)
    _, steps = load_trace(path)

    def audit(skip_chains):
        m = make_method(name)
        sources = [s if isinstance(s, ContextNGramSource) else TraceSource(s.name, steps) for s in m.sources]
        inner = _BreadthFirst(m.shaper) if order else m.shaper
        shaper = _ChainAudit(inner, cost=lambda n: 1.0 + 0.1 * (n - 1), skip_chains=skip_chains)
        replay(path, shaper, sources, 16)
        return np.array(shaper.margins)

    margins = audit(skip_chains=False)
    assert margins.size > 100 and margins.min() >= -1e-9
    if order:  # the control: without the chain check a chain beats every prefix of these trees
        assert audit(skip_chains=True).min() < -1e-3


class _Kept(AutoBudgetShaper):
    """AutoBudgetShaper that records every tree it keeps and counts the nodes its inner
    shaper drafts; ``full`` always shapes the whole budget (no small tree first), ``lie``
    makes the inner shaper claim that nothing a larger budget adds can be worth anything
    (a broken growth bound)."""

    def __init__(self, inner, cost, full=False, lie=False):
        super().__init__(inner, cost)
        self.kept, self.drafted = [], 0
        if full:
            self.MIN_REACH = 10**6
        if lie:
            inner.growth_bound = lambda tree: 0.0
        shape = inner.shape

        def counted(context, sources, budget):
            tree = shape(context, sources, budget)
            self.drafted += tree.size
            return tree

        inner.shape = counted

    def shape(self, context, sources, budget):
        tree = super().shape(context, sources, budget)
        self.kept.append((tree.tokens.tolist(), tree.parents.tolist()))
        return tree


def _kept_trees(method, **kw):
    model, kept = tiny_llama(), []
    for prompt in PROMPTS:
        m = make_method(method)
        shaper = _Kept(m.shaper, lambda n: 1.0 + 0.05 * (n - 1), **kw)
        out = generate(model, prompt, sources=m.sources, shaper=shaper, budget=24, max_new_tokens=80, eos_token_id=[])
        kept.append((shaper.kept, out.tokens, shaper.drafted))
    return kept


def _check_small_first(method, **kw):
    full, small = _kept_trees(method, full=True), _kept_trees(method, **kw)
    for (trees_full, tokens_full, drafted_full), (trees, tokens, drafted) in zip(full, small, strict=True):
        assert tokens == tokens_full
        assert trees == trees_full  # every step keeps the tree the full budget gives
        assert drafted <= drafted_full  # from no more drafted nodes...
    assert sum(k[2] for k in small) < sum(k[2] for k in full)  # ...and fewer over both prompts


@pytest.mark.parametrize("method", ["pld", "best-first", "goose"])
def test_auto_drafts_a_small_tree_first_and_keeps_what_the_full_budget_keeps(method):
    _check_small_first(method)


def test_the_small_tree_check_catches_a_growth_bound_that_lies():
    full, lie = _kept_trees("best-first", full=True), _kept_trees("best-first", lie=True)
    assert [k[1] for k in lie] == [k[1] for k in full]  # greedy tokens never depend on the trees...
    assert [k[0] for k in lie] != [k[0] for k in full]  # ...but the check on the kept trees fails
    with pytest.raises(AssertionError):
        _check_small_first("best-first", lie=True)
