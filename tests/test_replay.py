import json

import numpy as np
import pytest

from goose.hf import generate
from goose.methods import make_method
from sim import load_trace, replay, replay_method
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
