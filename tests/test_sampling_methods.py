"""Every sampling method against plain sampling on a tiny model: the first 4 emitted
tokens (the 1st from the prefill, the others from verified trees), seeded.

Chi-square goodness of fit to the exact float64 law of plain sampling (enumerated
from the model), at alpha = 1e-6 per method: a correct method fails with
probability 1e-6 per test (about 1e-5 over this file). Negative controls show the
test has power: greedy decoding, and a drafter that reports q but takes its most
likely tokens instead of drawing them, are rejected at the same alpha (the biased
drafter's p-value at N = 1000 was 2e-74 when measured, far below alpha). (A rejection
sampler that skips renormalising its residual is too subtle to show at this sample
size on this model; the exact-law tests in test_multidraft.py catch it.)
"""

import copy
from collections import Counter

import numpy as np
import pytest
import torch

from goose.hf import generate
from goose.trees import StochasticShaper

from .test_engine import chi_square_p, first_tokens_law
from .tiny import tiny_llama

pytestmark = [pytest.mark.model, pytest.mark.slow]

N, ALPHA, T, TOP_P = 1000, 1e-6, 0.8, 0.95
# 40 random tokens: every token of the vocabulary of 16 occurs, so the STAND table has
# rows for whatever is sampled and the stochastic drafters draft from the first step
PROMPT = [int(t) for t in np.random.default_rng(1).integers(0, 16, 40)]
SAMPLERS = ["goose", "pld", "stand-topk", "stand/rrs", "stand/traversal", "goose-stand/rrs",
            "goose-stand/traversal", "ddte", "bf16-draft@3/rrs", "bf16-draft@3/traversal", "bf16-draft-topk@3"]


@pytest.fixture(scope="module")
def setting():
    model = tiny_llama(vocab=16, seed=3)
    with torch.no_grad():  # sharpen the random model so the law has few, well-filled outcomes
        model.lm_head.weight.mul_(8.0)
    return model, first_tokens_law(model, PROMPT, 4, T, TOP_P)


def sample(model, method, n=N, **kw):
    name, _, verifier = method.partition("/")
    return Counter(tuple(generate(model, PROMPT, method=name, verifier=verifier or None, temperature=T, top_p=TOP_P,
                                  seed=s, max_new_tokens=4, eos_token_id=[], **kw).tokens) for s in range(n))


@pytest.mark.parametrize("method", SAMPLERS)
def test_first_four_tokens_follow_plain_sampling(setting, method):
    model, law = setting
    counts = sample(model, method)
    assert set(counts) <= set(law)
    assert chi_square_p(counts, law) > ALPHA


@pytest.mark.parametrize("verifier", ["rrs", "traversal"])
def test_delayed_expansion_in_force_follows_plain_sampling(setting, verifier):
    # ddte decides its delay from estimates that a 4-token generation barely has, so
    # here the delay is fixed: one drawn path down to depth 2, branches below it
    model, law = setting
    counts = Counter(tuple(generate(model, PROMPT, method="goose-stand", verifier=verifier, temperature=T, top_p=TOP_P,
                                    seed=s, shaper=StochasticShaper(T, seed=s, delay=2), max_new_tokens=4,
                                    eos_token_id=[]).tokens) for s in range(N))
    assert set(counts) <= set(law)
    assert chi_square_p(counts, law) > ALPHA


def test_a_table_shared_across_samples_keeps_each_sample_exact(setting):
    # stand-shared drafts every later sample from the table the earlier ones filled
    # (best-of-N); the law of each sample must not depend on what is in the table
    from goose.methods import Memory

    model, law = setting
    memory = Memory()
    counts = sample(model, "stand-shared/rrs", memory=memory)
    assert "stand-table" in memory and len(memory.setdefault("stand-table", dict)) > 0
    assert set(counts) <= set(law)
    assert chi_square_p(counts, law) > ALPHA


@pytest.mark.parametrize("method", ["goose", "pld@auto"])
def test_bounded_passes_follow_plain_sampling(setting, method):
    # a float32 copy: its tree passes are read through the bfloat16 head's bounds
    # (goose.verify.sample_bounded); the law is the float64 model's, equal up to rounding
    from goose.hf import HFTarget

    model, law = setting
    model32 = copy.deepcopy(model).float()
    if not HFTarget(model32).bounded_logits:
        pytest.skip("no native bfloat16 on this CPU: every pass gives float32 rows")
    counts = sample(model32, method)
    assert set(counts) <= set(law)
    assert chi_square_p(counts, law) > ALPHA


class NoNoise:
    def gumbel(self, size):
        return np.zeros(size)


class ArgmaxDrafter(StochasticShaper):
    """Deliberately wrong: says its children were drawn from q, takes q's top-k."""

    def begin(self, prompt):
        self._rng = NoNoise()


def test_negative_controls_are_rejected(setting):
    model, law = setting
    greedy = Counter(tuple(generate(model, PROMPT, method="goose", max_new_tokens=4, eos_token_id=[]).tokens)
                     for _ in range(N))
    assert chi_square_p(greedy, law) < ALPHA
    biased = Counter(tuple(generate(model, PROMPT, method="stand", temperature=T, top_p=TOP_P, seed=s,
                                    shaper=ArgmaxDrafter(T), max_new_tokens=4, eos_token_id=[]).tokens)
                     for s in range(N))
    assert chi_square_p(biased, law) < ALPHA
