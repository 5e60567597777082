"""Bad input gets one clear error, before anything heavy runs: the generation plan's
checks, the decode loop's runtime guards on prompts and trees, the context window, the
abort hook, and the command line's one-line errors. Each test names the input a user
gave and asserts the error's type and that its message names the culprit."""

import json
import os

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from goose.cli import app
from goose.engine import GenerationRequest, TreeError, decode, node_ceiling
from goose.methods import Drafting, Memory, Method
from goose.sources import ContextNGramSource, Proposal, TokenSource
from goose.trees import MAX_NODE_BUDGET, ChainShaper, DraftTree, TreeBuilder, TreeShaper
from goose.verify import GreedyVerifier, Sampling

runner = CliRunner()
NO_MODEL = "/nonexistent/goose-model"  # a load would fail on this: every error below comes first


def _run(shaper, sources=(), prompt=(1, 2, 3, 1, 2), vocab=24, max_new=12, budget=4, target=None):
    from goose.testing import ToyTarget

    return decode(target or ToyTarget(vocab), list(prompt), list(sources), shaper, GreedyVerifier(), budget, max_new)


# -- trees a shaper returns ------------------------------------------------------------
class Returns(TreeShaper):
    """A user shaper returning whatever ``make(context)`` gives."""

    def __init__(self, make):
        self.make = make

    def shape(self, context, sources, budget):
        return self.make(context)


def test_a_tree_rooted_elsewhere_is_refused_naming_the_shaper():
    with pytest.raises(TreeError, match=r"shaper Returns drafted a tree rooted at token 7, but the root must be"):
        _run(Returns(lambda ctx: DraftTree([7, 1], [-1, 0])))


def test_a_tree_over_budget_is_refused():
    with pytest.raises(TreeError, match="shaper Returns drafted 40 nodes at budget 4"):
        _run(Returns(lambda ctx: DraftTree.chain(ctx[-1], list(range(40)))))


def test_a_shaper_returning_none_is_refused():
    with pytest.raises(TreeError, match="Returns.shape returned NoneType, not a DraftTree"):
        _run(Returns(lambda ctx: None))


class Proposes(TokenSource):
    name = "context"

    def __init__(self, token):
        self.token = token

    def propose(self, context, path=()):
        return [Proposal((self.token,), (0.9,), self.name)] if context and not path else []


@pytest.mark.parametrize("token", [10**9, 24, 49152])
def test_an_out_of_vocabulary_draft_is_refused_naming_the_source(token):
    with pytest.raises(TreeError, match=rf"source 'context' \(through shaper ChainShaper\) drafted token {token}, "
                                        r"outside the vocabulary \[0, 24\)"):
        _run(ChainShaper(), [Proposes(token)])


def test_a_float_id_from_a_source_is_refused_not_truncated():
    with pytest.raises(ValueError, match="source 'context' proposed token 2.5: token ids must be integers"):
        _run(ChainShaper(), [Proposes(2.5)])
    with pytest.raises(ValueError, match="token ids must be int64 integers"):
        DraftTree([1, 2.5], [-1, 0])
    with pytest.raises(ValueError, match="token ids must be integers"):
        TreeBuilder(1).add(0, np.float64(3.0), "x", 0.5)


@pytest.mark.parametrize("prompt, message", [
    ([1, 99], r"prompt id 99 at position 1 is outside the vocabulary \[0, 24\)"),
    ([1, -3], r"prompt id -3 at position 1 is outside the vocabulary"),
    ([1.0, 2.5], "prompt ids must be integers"),
    ([], "the prompt is empty"),
])
def test_bad_prompt_ids_are_refused_before_the_prefill(prompt, message):
    with pytest.raises(ValueError, match=message):
        _run(ChainShaper(), [ContextNGramSource((2,))], prompt=prompt)


# -- the context window ------------------------------------------------------------------
def test_a_generation_that_fills_the_window_stops_there_with_what_it_made():
    from goose.testing import ToyTarget

    window = 12
    prompt = [1, 2, 3, 4, 1, 2, 3]  # 7 tokens: room for 5 new ones, though 24 were asked for
    out = _run(ChainShaper(), [ContextNGramSource((2, 1))], prompt=prompt, max_new=24, budget=8,
               target=ToyTarget(24, max_positions=window))
    assert out.finish_reason == "context"
    assert len(prompt) + len(out.tokens) == window
    assert out.tokens == ToyTarget(24).greedy(prompt, 5)
    assert _run(ChainShaper(), [ContextNGramSource((2,))], prompt=prompt, max_new=3).finish_reason == "length"


def test_a_prompt_that_fills_the_window_is_refused_up_front():
    from goose.testing import ToyTarget

    with pytest.raises(ValueError, match="the prompt has 12 tokens and the model's context window is 12: no room"):
        _run(ChainShaper(), [], prompt=list(range(12)), target=ToyTarget(24, max_positions=12))


# -- a generation that raises: the abort hook ----------------------------------------------
class Ledger(TreeShaper):
    """A cross-request drafter keeping its open requests in the caller's memory (as a
    serving-side cache does), raising at its ``fail_at``-th tree."""

    def __init__(self, open_requests: set, fail_at: int):
        self.open, self.fail_at, self.calls = open_requests, fail_at, 0

    def begin(self, prompt):
        self.open.add(id(self))

    def end(self, tokens):
        self.open.discard(id(self))

    def shape(self, context, sources, budget):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("the drafter's backend went away")
        return DraftTree([context[-1]], [-1])


def test_a_generation_that_raises_leaves_the_callers_memory_consistent():
    memory = Memory()
    ledger = Method("ledger", lambda ctx: Drafting([], Ledger(ctx.memory.setdefault("open", set), fail_at=3), 2),
                    cross_request=True)
    plan = GenerationRequest(ledger, max_new_tokens=12).plan(memory=memory)
    from goose.testing import ToyTarget

    with pytest.raises(RuntimeError, match="went away"):
        decode(ToyTarget(), [1, 2, 3], plan.sources, plan.shaper, plan.verifier, plan.budget, 12)
    assert memory.setdefault("open", set) == set(), "the failed generation left its request open"
    plan = GenerationRequest(ledger, max_new_tokens=12).plan(memory=memory)
    plan.shaper.fail_at = 0
    decode(ToyTarget(), [1, 2, 3], plan.sources, plan.shaper, plan.verifier, plan.budget, 12)
    assert memory.setdefault("open", set) == set()


def test_abort_is_what_the_hooks_hear_when_a_generation_raises():
    heard = []

    class Listener(TokenSource):
        name = "listener"

        def propose(self, context, path=()):
            return []

        def end(self, tokens):
            heard.append(("end", len(tokens)))

        def abort(self, tokens):
            heard.append(("abort", len(tokens)))

    with pytest.raises(TreeError):
        _run(Returns(lambda ctx: None), [Listener()], prompt=[1, 2, 3])
    assert heard == [("abort", 4)]  # the prompt and the prefill's token, then the bad tree


# -- the plan's checks, before any model ---------------------------------------------------
@pytest.mark.parametrize("kwargs, error, message", [
    ({"method": "best-first", "budget": 10000}, ValueError, f"ceiling of {MAX_NODE_BUDGET} draft nodes"),
    ({"method": "best-first@10000"}, ValueError, "ceiling"),
    ({"max_new_tokens": 2.5}, ValueError, "max_new_tokens must be an integer >= 1, got 2.5"),
    ({"max_new_tokens": 0}, ValueError, "max_new_tokens must be an integer >= 1"),
    ({"budget": 2.5}, ValueError, "budget must be an integer >= 1"),
    ({"budget": True}, ValueError, "budget must be an integer >= 1"),
    ({"verifier": "bogus"}, ValueError, "unknown verifier 'bogus'"),
    ({"verifier": "rrs"}, ValueError, "verifier 'rrs' samples: it needs temperature > 0"),
    ({"method": "os:getcwd"}, ValueError, "'os:getcwd' is neither a goose Method nor a factory"),
    ({"method": "goose@4", "budget": 5}, ValueError, "names budget 4, but budget=5"),
])
def test_a_bad_request_is_refused_naming_the_culprit(kwargs, error, message):
    with pytest.raises(error, match=message):
        GenerationRequest(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -1}, "temperature must be >= 0"),
    ({"temperature": float("nan")}, "temperature must be a finite number"),
    ({"top_p": 1.5}, r"top_p must lie in \(0, 1\]"),
    ({"top_k": -2}, "top_k must be >= 0"),
    ({"top_k": 2.5}, "top_k must be an integer"),
    ({"seed": -1}, "seed must be a non-negative integer"),
])
def test_bad_sampling_options_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Sampling(**kwargs)


def test_greedy_names_the_sampling_options_it_ignores():
    assert Sampling(top_k=3, top_p=0.5).ignored() == ["top_k=3", "top_p=0.5"]
    assert Sampling(0.8, top_k=3).ignored() == []


def test_the_node_ceiling_follows_the_vocabulary():
    assert node_ceiling(None) == node_ceiling(24) == MAX_NODE_BUDGET
    assert node_ceiling(262_144) == 255  # 256 rows of float32 logits fit in 256 MiB
    with pytest.raises(ValueError, match="above this target's ceiling of 63 draft nodes"):
        GenerationRequest("best-first", 100).plan(vocab_size=1 << 20)


def test_prompt_rows_are_checked_before_the_model_is_used():
    from goose.hf import generate, generate_batch

    # several rows are a batch (tests/test_batch.py); a tensor of more dimensions is refused
    with pytest.raises(ValueError, match=r"one row of ids \(\[n\] or \[1, n\]\), got shape \(1, 2, 3\)"):
        generate(None, torch.tensor([[[1, 2, 3], [4, 5, 6]]]))
    with pytest.raises(ValueError, match="prompt ids must be integers"):
        generate(None, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="prompt ids must be integers"):
        generate_batch(None, [[1, 2], [3.5, 4]])
    with pytest.raises(ValueError, match="the prompt is empty"):
        generate(None, [[1, 2], []])


# -- the command line: one line, exit code 2, before the model loads -------------------------
def _line(res) -> str:
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert res.exit_code == 2, res.output
    assert len(lines) == 1 and lines[0].startswith("goose: error: "), res.output
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["--method", "os:getcwd"], "'os:getcwd' is neither a goose Method nor a factory"),
    (["--seed", "-1"], "--seed must be a non-negative integer"),
    (["--temperature", "0.8", "--top-p", "1.5"], r"--top-p must lie in (0, 1]"),
    (["--temperature", "0", "--top-p", "1.5", "--top-k", "3"], r"--top-p must lie in (0, 1]"),
    (["--verifier", "bogus", "--temperature", "0.8"], "unknown verifier 'bogus'"),
    (["--method", "best-first", "--budget", "10000"], "ceiling of 256 draft nodes"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be an integer >= 1"),
    (["--verifier", "loose", "--temperature", "0.8"], "(lossy): it needs --temperature 0"),
    (["--verifier", "loose-w1"], "window must be >= 2"),
])
def test_cli_generate_refuses_bad_options_in_one_line(args, message):
    assert message in _line(runner.invoke(app, ["generate", "hi", "--model", NO_MODEL, *args]))


def test_cli_generate_refuses_an_empty_prompt_and_unwritable_outputs(tmp_path):
    assert "the prompt is empty" in _line(runner.invoke(app, ["generate", "", "--model", NO_MODEL]))
    said = _line(runner.invoke(app, ["generate", "hi", "--model", NO_MODEL, "--json", str(tmp_path)]))
    assert f"--json {tmp_path} is a directory" in said
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    said = _line(runner.invoke(app, ["generate", "hi", "--model", NO_MODEL, "--json", str(blocker / "out.json")]))
    assert "--json" in said and "cannot make its folder" in said


def test_cli_generate_refuses_bad_batch_files_before_the_model_loads(tmp_path):
    def said(lines, *args):
        f = tmp_path / "p.jsonl"
        f.write_text("\n".join(lines) + "\n")
        return _line(runner.invoke(app, ["generate", "--model", NO_MODEL, "--batch-file", str(f), *args]))

    good = json.dumps({"turns": ["hello"]})
    assert "p.jsonl:2: a record needs 'turns' (chat) or 'prompt'" in said([good, json.dumps({"text": "x"})])
    assert "p.jsonl:1: not JSON" in said(["{oops"])
    assert "p.jsonl:2: the prompt is empty" in said([good, json.dumps({"prompt": "  "})])
    assert "--n (samples per prompt) must be >= 1, got 0" in said([good], "--n", "0")
    assert "--n > 1 draws samples: pass --temperature > 0" in said([good], "--n", "4")
    assert "--batch-file takes no PROMPT" in said([good], "a prompt too")
    missing = _line(runner.invoke(app, ["generate", "--model", NO_MODEL, "--batch-file", str(tmp_path / "none.jsonl")]))
    assert "does not exist" in missing


def test_cli_generate_warns_of_sampling_options_greedy_ignores():
    res = runner.invoke(app, ["generate", "hi", "--model", NO_MODEL, "--top-k", "3"])
    assert "warning: --top-k 3 is ignored at --temperature 0 (greedy)" in res.output
    assert res.exit_code == 2  # then the missing model, in one line too
    assert res.output.strip().splitlines()[-1].startswith("goose: error: ")


def test_cli_bench_refuses_an_unwritable_out(tmp_path):
    existing = tmp_path / "results.json"
    existing.write_text("{}")
    said = _line(runner.invoke(app, ["bench", "--model", NO_MODEL, "--out", str(existing), "--methods", "ar"]))
    assert f"--out {existing} is a file" in said
    said = _line(runner.invoke(app, ["bench", "--model", NO_MODEL, "--out", str(existing / "sub"), "--methods", "ar"]))
    assert "--out" in said and "cannot make the folder" in said


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_cli_bench_refuses_a_read_only_out(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    said = _line(runner.invoke(app, ["bench", "--model", NO_MODEL, "--out", str(locked / "o"), "--methods", "ar"]))
    assert "--out" in said


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "4,x"], "--batch-size must be comma-separated integers"),
    (["--batch-size", "0"], "--batch-size and --samples-per-prompt take integers >= 1"),
    (["--samples-per-prompt", "8"], "--samples-per-prompt > 1 draws samples: pass --temperature > 0"),
])
def test_cli_bench_refuses_bad_batch_options_before_the_model_loads(tmp_path, args, message):
    said = _line(runner.invoke(app, ["bench", "--model", NO_MODEL, "--out", str(tmp_path / "o"), "--methods", "ar",
                                     *args]))
    assert message in said
