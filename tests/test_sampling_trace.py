"""Sample-and-match MAT predicted from greedy traces: the sampling law on a recorded
row, a tree's expected accepted length, and the held-out prediction per task."""

import gzip
import json
from pathlib import Path

import pytest

from sim import expected_step_tokens, load_trace, predict_sampling, sampling_law

MATH = Path(__file__).parent / "data" / "traces-math-auto" / "traces"


def test_the_sampling_law_on_a_row():
    row = ([7, 8, 9], [0.5, 0.3, 0.2])  # the whole law: no tail
    assert sampling_law(*row) == pytest.approx({7: 0.5, 8: 0.3, 9: 0.2})
    assert sampling_law(*row, temperature=0.5) == pytest.approx({7: 0.25 / 0.38, 8: 0.09 / 0.38, 9: 0.04 / 0.38})
    # top-p 0.6: 7 (nothing above), 8 (0.5 above), not 9 (0.8 above)
    assert sampling_law(*row, top_p=0.6) == pytest.approx({7: 0.625, 8: 0.375})
    # a tail of 0.1 next to a last recorded probability of 0.1: one tail token of 0.1, at T = 0.5
    tailed = sampling_law([1, 2, 3], [0.7, 0.1, 0.1], temperature=0.5)
    assert tailed == pytest.approx({1: 0.49 / 0.52, 2: 0.01 / 0.52, 3: 0.01 / 0.52})
    with pytest.raises(ValueError, match="temperature"):
        sampling_law(*row, temperature=0)


def chain_step(p1: float, p2: float) -> dict:
    """A step whose tree is the chain root -> 5 -> 6, the target's rows giving 5 and 6
    probabilities ``p1`` and ``p2``."""
    return {"accepted": 0, "verified": {"tokens": [4, 5, 6], "prev": [3, 4, 5], "parents": [-1, 0, 1],
                                         "ids": [[5, 1], [6, 1], [2, 1]],
                                         "probs": [[p1, 1 - p1], [p2, 1 - p2], [0.5, 0.5]]}}


def test_a_trees_expected_tokens():
    assert expected_step_tokens(chain_step(0.6, 0.5)) == pytest.approx(1 + 0.6 + 0.6 * 0.5)
    assert expected_step_tokens({"accepted": 2, "verified": None}) is None  # a version 2 step


def test_the_greedy_limit_is_the_recorded_acceptance_on_real_traces(tmp_path):
    """At a temperature near 0 the law is the argmax, and each recorded step's expected
    tokens are exactly its accepted draft plus one: 254 steps of four real traces."""
    steps = 0
    for gz in sorted(MATH.glob("*.jsonl.gz")):
        path = tmp_path / gz.stem
        path.write_bytes(gzip.decompress(gz.read_bytes()))
        for s in load_trace(path)[1]:
            assert expected_step_tokens(s, temperature=1e-4) == pytest.approx(1 + s["accepted"])
            steps += 1
    assert steps == 254


def test_predict_sampling_holds_each_prompt_out(tmp_path):
    """Prompt a's greedy steps expect 1.9 tokens, b's 1.5; each sampled prompt is
    predicted from the other's, and ``own`` from its own."""
    folder = tmp_path / "traces" / "goose@auto"
    folder.mkdir(parents=True)
    for qid, (p1, p2) in {"a": (0.6, 0.5), "b": (0.5, 0.0)}.items():
        header = {"type": "header", "version": 3, "method": "goose", "requested": "auto"}
        lines = [header] + [{"type": "step"} | chain_step(p1, p2)] * 3
        (folder / f"{qid}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    sampled = [{"question_id": q, "task": "t", "method": "goose@auto", "new_tokens": 20, "forward_calls": 11}
               for q in "ab"]
    got = predict_sampling(tmp_path, sampled, temperature=1.0)["t"]["goose@auto"]
    assert got["measured"] == pytest.approx(40 / 22)
    assert got["predicted"] == pytest.approx(40 / ((1 + 19 / 1.5) + (1 + 19 / 1.9)))
    assert got["own"] == pytest.approx(40 / ((1 + 19 / 1.9) + (1 + 19 / 1.5)))
