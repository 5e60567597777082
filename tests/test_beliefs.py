"""The simulator's recorded beliefs: what real sources said, drawn with what happened,
so a method's own shaper and acceptance estimator can run in the simulator."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from goose.trees import ChainShaper
from sim import (
    Beliefs,
    BeliefWorld,
    ChainModel,
    RecordedChain,
    RecycledModel,
    RegimeModel,
    SimulationModel,
    fit_beliefs,
    load_trace,
    predict_bench,
    recorded_cost,
    simulate,
)
from sim._models import OTHER, SPINE


def one_step_trace() -> tuple[dict, list[dict]]:
    """A two-step trace: the text is 1 2 | 7 8 9 10 ...; step 1's chain is 7 8 5 (two
    tokens right), the recycled source answers at the root and at the first chain node."""
    header = {"type": "header", "prompt": [1, 2], "tokens": [7, 8, 9, 10, 11, 12]}
    rec = [{"query": [1, 2], "depth": 0, "tokens": [[7], [3]], "confidence": [[0.8], [0.1]],
            "keys": ["rank0", "rank1"]},
           {"query": [2, 7], "depth": 1, "tokens": [[4], [8]], "confidence": [[0.3], [0.2]],
            "keys": ["rank0", "rank1"]}]
    step1 = {"type": "step", "context_len": 2, "accepted": 2, "reference": [7, 8, 9, 10],
             "proposals": {"context": [{"query": [1, 2], "depth": 0, "tokens": [[7, 8, 5]],
                                        "confidence": [[0.5, 0.5, 0.5]], "keys": ["n2"]}],
                           "recycled": rec}}
    step2 = {"type": "step", "context_len": 5, "accepted": 0, "reference": [10, 11],
             "proposals": {"context": [], "recycled": []}}
    return header, [step1, step2]


def test_fit_beliefs_counts_a_trace_exactly():
    b = fit_beliefs([one_step_trace()])
    assert b.chains == (RecordedChain((0.5, 0.5, 0.5), "n2", 2), RecordedChain((), "", 0))
    # root: rank 0 is the chain's own token (one node with it); rank 1 missed
    # depth 1 (a chain node): rank 0 (4) missed, rank 1 is the chain token 8 again
    assert dict(b.recycled) == {"root-match/1/miss": (0.1,), "spine/0/miss": (0.3,)}
    # the chain was taken at both nodes: agreed at the root, not at depth 1
    assert b.agree == (0.5, 0.0)
    assert Beliefs.from_json(b.to_json()) == b


def model(alpha: float = 0.5, betas: tuple = (0.3, 0.1)) -> SimulationModel:
    return SimulationModel(ChainModel.from_hazards([alpha] * 4, match_prob=1.0), RecycledModel(betas))


def test_a_recorded_chain_decides_the_spine_and_keeps_the_recycled_rates():
    """Averaged over the recorded chains, a chain node's candidates are the fitted
    model's: the chain is taken with its hazard, the recycled ranks keep their rates."""
    m = model()
    chains = (RecordedChain((0.9,) * 3, "n3", 0), RecordedChain((0.9,) * 3, "n3", 3))  # hazard 1/2 at depth 1
    worlds = []
    for k in (0, 1):
        w = BeliefWorld(m, np.random.default_rng(0), 4, Beliefs(chains))
        w.recorded, w.chain_len = chains[k], 3
        worlds.append(w)
    miss, hit = (dict(w.candidates(())) for w in worlds)
    assert hit == {SPINE: 1.0, 2: 0.0, 3: 0.0}
    assert miss == pytest.approx({SPINE: 0.0, 2: 0.6, 3: 0.2})  # beta / (1 - a)
    average = {t: (miss[t] + hit[t]) / 2 for t in hit}
    assert average == pytest.approx(dict(m.candidates(worlds[0], ())))
    assert dict(worlds[1].candidates((SPINE,) * 3)) == {2: 0.3, 3: 0.1}  # below the chain's end


def test_recycled_confidences_follow_the_outcome():
    m = SimulationModel(None, RecycledModel((0.5, 0.3)))
    b = Beliefs((), {"root/0/hit": (0.9,), "root/0/miss": (0.2,), "root/1/hit": (0.7,), "root/1/miss": (0.05,)})
    seen = set()
    for seed in range(40):
        w = BeliefWorld(m, np.random.default_rng(seed), 4, b)
        props = w.propose("recycled", ())
        pick = w.choice(())
        seen.add(pick)
        want = {2: (0.9, 0.2), 3: (0.7, 0.05)}
        for p in props:
            hit, miss = want[p.tokens[0]]
            assert p.confidence == ((hit,) if p.tokens[0] == pick else (miss,))
    assert seen == {2, 3, OTHER}


def test_episodes_rebuild_the_shaper_and_stop_at_the_token_limit():
    """Every chain token is taken: a step of budget 4 makes 5 tokens, so a generation
    of 12 tokens is 5 + 5 + 2, and each starts with a fresh shaper."""
    certain = RegimeModel((SimulationModel(ChainModel.from_hazards([1.0]), None),))
    built = []

    def make():
        built.append(1)
        return ChainShaper()

    r = simulate(certain, make, 4, 9, seed=0, episode=12)
    assert r.histogram == [0, 3, 0, 0, 6]
    assert r.mat == pytest.approx(12 / 3)
    assert len(built) == 1 + 3


MATH = Path(__file__).parent / "data" / "traces-math-auto"
TRANSLATION = Path(__file__).parent / "data" / "traces-translation-auto"


def auto_prediction(tmp_path: Path, data: Path = MATH, task: str = "math_reasoning", **options) -> dict:
    """``predict_bench`` on four shipped ``goose@auto`` traces of one task (held out:
    each prompt from a fit on the other three), under their recorded curve."""
    (tmp_path / "traces").mkdir(exist_ok=True)
    for gz in (data / "traces").glob("*.jsonl.gz"):
        (tmp_path / "traces" / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    records = [json.loads(line) for line in (data / "records.jsonl").read_text().splitlines()]
    pred = predict_bench(tmp_path, records, steps=2000, progress=False, cost=recorded_cost(tmp_path), **options)
    return pred[task]["goose@auto"]


@pytest.mark.slow
def test_auto_is_predicted_by_its_own_shaper_on_beliefs_and_not_by_an_oracle(tmp_path):
    """On four real math_reasoning traces of ``goose@auto``, the default prediction (the
    method's own shaper and estimator on recorded beliefs, one generation at a time)
    is within 5% of the measured MAT; the oracle shaper, which knows the true
    acceptances and so keeps longer chains, is more than 15% high. Seeded and
    deterministic (2000 steps per prompt)."""
    own = auto_prediction(tmp_path)
    oracle = auto_prediction(tmp_path, beliefs=False)
    assert own["replay"] == pytest.approx(own["measured"])  # the traces replay exactly
    assert abs(own["sim"] / own["measured"] - 1) <= 0.05, own
    assert oracle["sim"] / oracle["measured"] - 1 > 0.15, oracle
    assert own["sim_speedup"] > 1.0  # under the recorded curve


@pytest.mark.slow
def test_a_learning_shaper_is_predicted_from_one_world_per_prompt(tmp_path):
    """On four real translation traces of ``goose@auto`` (MAT 1.5 to 5.9 per prompt), each
    fitted prompt simulated as its own world predicts the task within 10% (-8.8%: the
    copying prompt cannot be foreseen from the other three); pooling the fitted prompts'
    steps into one world, where the estimator learns from a mixture of a copying prompt
    and free ones, is more than 12% low (-15.9%). Seeded and deterministic (2000 steps
    per prompt)."""
    worlds = auto_prediction(tmp_path, TRANSLATION, "translation")
    pooled = auto_prediction(tmp_path, TRANSLATION, "translation", per_prompt=False)
    assert abs(worlds["sim"] / worlds["measured"] - 1) <= 0.10, worlds
    assert pooled["sim"] / pooled["measured"] - 1 < -0.12, pooled


def test_a_prompt_gives_the_shaper_the_context_a_real_run_would_have():
    """With ``prompt``, step i of a generation sees the prompt and the tokens made so
    far: 100, 105, 110 and again from 100 after a generation of 12 tokens."""
    certain = RegimeModel((SimulationModel(ChainModel.from_hazards([1.0]), None),))
    seen = []

    class Watching(ChainShaper):
        def shape(self, context, sources, budget):
            seen.append(len(context))
            return super().shape(context, sources, budget)

    simulate(certain, Watching, 4, 6, seed=0, episode=12, prompt=100)
    assert seen == [100, 105, 110] * 2


@pytest.mark.parametrize("bad, message", [({"episode": 0}, "episode must be >= 1"), ({"prompt": 0}, "prompt must")])
def test_simulate_refuses_empty_generations_and_contexts(bad, message):
    certain = RegimeModel((SimulationModel(ChainModel.from_hazards([1.0]), None),))
    with pytest.raises(ValueError, match=message):
        simulate(certain, ChainShaper, 4, 10, **bad)


def test_a_learning_shaper_gets_one_world_per_trace_unless_one_lacks_a_source():
    """``fit_worlds`` (shared by ``predict_bench`` and ``goose predict``): the four real
    translation traces are four worlds; unsplit, one; when one trace alone never saw the
    recycled source, all four are one world again; a source no trace saw leaves none."""
    from sim._fit import fit_worlds
    traces = [load_trace(p) for p in sorted((TRANSLATION / "traces").glob("*.jsonl.gz"))]
    names = {"context", "recycled"}
    worlds = fit_worlds(traces, names)
    assert [w for w, _ in worlds] == [[t] for t in traces]
    assert all(set(m.source_names()) == names for _, m in worlds)
    assert [len(w) for w, _ in fit_worlds(traces, names, split=False)] == [4]
    header, steps = traces[0]
    blind = (header, [s | {"proposals": {k: v for k, v in s["proposals"].items() if k != "recycled"}}
                      if "proposals" in s else s for s in steps])
    assert [len(w) for w, _ in fit_worlds([blind, *traces[1:]], names)] == [4]
    assert fit_worlds(traces, names | {"suffix"}) == []


@pytest.mark.slow
def test_auto_is_cut_by_the_recorded_curve_and_priced_by_its_monotone_fit(tmp_path, monkeypatch):
    """The recorded curve of the shipped translation traces has c(2) < c(1) (a timing dip):
    the simulated ``auto`` cuts its trees by it as the run did (the same predicted MAT
    either way), while steps are priced by the curve made non-decreasing, which lowers the
    predicted speed-up (a node is no longer priced below nothing)."""
    from goose.theory import CostCurve
    (tmp_path / "traces").mkdir()
    for gz in (TRANSLATION / "traces").glob("*.jsonl.gz"):
        (tmp_path / "traces" / gz.stem).write_bytes(gzip.decompress(gz.read_bytes()))
    curve = recorded_cost(tmp_path)
    assert curve(2) < curve(1) and curve.monotone()(2) >= curve.monotone()(1)
    priced = auto_prediction(tmp_path, TRANSLATION, "translation")
    monkeypatch.setattr(CostCurve, "monotone", lambda self: self)
    raw = auto_prediction(tmp_path, TRANSLATION, "translation")
    assert priced["sim"] == raw["sim"]
    assert priced["sim_speedup"] < raw["sim_speedup"] - 0.05
