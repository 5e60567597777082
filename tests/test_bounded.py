"""Exact sampling from bounded logits (goose.verify._bounded).

Two references: ``process_logits`` (transformers' warpers, dense) for the processed
distribution, and :func:`reference_sample`, the same Gumbel-max draws on the exact row.
The bounded sampler must pick the very token the reference picks from the same noise,
whatever the bounds: that makes its law the reference's, which is ``p`` (Gumbel-max,
then rejection outside the nucleus; checked by chi-square below).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from goose.verify import BoundedLogits, process_logits, processed_probs, sample_bounded, sample_processed
from goose.verify._bounded import MAX_TRIES, gumbel


def reference_sample(row: torch.Tensor, generator: torch.Generator, temperature: float, top_p: float) -> int:
    """Gumbel-max on the exact row, redrawn until the draw is in the nucleus."""
    ids, _ = processed_probs(row, temperature, 0, top_p)
    for _ in range(MAX_TRIES):
        y = int((row.double() / temperature + gumbel(row.shape[0], generator)).argmax())
        if top_p >= 1.0 or bool((ids == y).any()):
            return y
    return sample_processed(row, generator, temperature, 0, top_p)


def dense(row: torch.Tensor, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    return process_logits(row[None], temperature, top_k, top_p).softmax(-1)[0].double().numpy()


rows = st.tuples(st.integers(2, 300), st.floats(0.1, 8.0), st.integers(0, 2**31 - 1), st.booleans())


def make_row(n: int, spread: float, seed: int, with_inf: bool) -> torch.Tensor:
    row = torch.randn(n, generator=torch.Generator().manual_seed(seed)) * spread
    if with_inf and n > 2:
        row[::3] = float("-inf")
        row[1] = 0.0
    return row


@given(rows, st.sampled_from([0.3, 0.8, 1.0, 1.7]), st.sampled_from([0, 1, 3, 50]),
       st.sampled_from([1.0, 0.99, 0.9, 0.5, 0.05]))
def test_processed_probs_equal_the_warpers(spec, temperature, top_k, top_p):
    row = make_row(*spec)
    ids, probs = processed_probs(row, temperature, top_k, top_p)
    got = np.zeros(row.shape[0])
    got[ids.numpy()] = probs.double().numpy()
    want = dense(row, temperature, top_k, top_p)
    assert set(ids.tolist()) == set(np.flatnonzero(want > 0).tolist()) or np.allclose(got, want, atol=1e-7)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_processed_probs_wide_nucleus_sorts_the_whole_row():
    row = torch.zeros(5000)  # flat: the nucleus is wider than the fast path looks
    ids, probs = processed_probs(row, 1.0, 0, 0.9)
    want = dense(row, 1.0, 0, 0.9)
    assert ids.numel() == int((want > 0).sum()) > 1024
    np.testing.assert_allclose(probs.double().numpy(), want[ids.numpy()], atol=1e-9)


@given(rows, st.sampled_from([0.0, 0.05, 0.5, 3.0]), st.sampled_from([0.5, 0.8, 1.0, 1.3]),
       st.sampled_from([1.0, 0.95, 0.8, 0.3]), st.integers(0, 2**31 - 1))
def test_bounded_sampler_draws_what_the_exact_reference_draws(spec, radius, temperature, top_p, seed):
    # same noise, same token: for tight bounds (radius 0), loose ones (3.0: most columns
    # are candidates) and every nucleus width; -inf columns included
    row = make_row(*spec)
    bounded = BoundedLogits.around(row[None], radius, torch.Generator().manual_seed(seed))
    for i in range(5):
        g1, g2 = torch.Generator().manual_seed(seed + i), torch.Generator().manual_seed(seed + i)
        assert sample_bounded(bounded, 0, g1, temperature, 0, top_p) == reference_sample(row, g2, temperature, top_p)


def test_a_bound_that_lies_is_caught():
    # approximations off by more than the radius they claim: the sampler may miss the
    # true winner, and the pathwise comparison must notice
    row = torch.randn(400, generator=torch.Generator().manual_seed(0)) * 2
    noise = torch.randn(400, generator=torch.Generator().manual_seed(1)) * 2.0
    lying = BoundedLogits((row + noise)[None], lambda i: torch.full((400,), 0.01), lambda i, c: row[c],
                          lambda i: row)
    mismatches = 0
    for i in range(200):
        g1, g2 = torch.Generator().manual_seed(i), torch.Generator().manual_seed(i)
        mismatches += sample_bounded(lying, 0, g1, 1.0, 0, 0.9) != reference_sample(row, g2, 1.0, 0.9)
    assert mismatches > 20


def test_a_sampler_without_the_nucleus_check_is_caught():
    row = torch.randn(400, generator=torch.Generator().manual_seed(0)) * 2
    bounded = BoundedLogits.around(row[None], 0.5, torch.Generator().manual_seed(2))
    mismatches = 0
    for i in range(300):
        g1, g2 = torch.Generator().manual_seed(i), torch.Generator().manual_seed(i)
        mismatches += sample_bounded(bounded, 0, g1, 1.0, 0, 1.0) != reference_sample(row, g2, 1.0, 0.5)
    assert mismatches > 30


@pytest.mark.slow
@pytest.mark.parametrize("temperature,top_p", [(0.8, 0.95), (1.0, 1.0), (0.6, 0.7)])
def test_bounded_sampler_law_is_p(temperature, top_p):
    # chi-square goodness of fit, 40,000 draws, alpha = 1e-6 per case (false failure <= 3e-6)
    row = torch.randn(30, generator=torch.Generator().manual_seed(5)) * 1.5
    want = dense(row, temperature, 0, top_p)
    bounded = BoundedLogits.around(row[None], 0.7, torch.Generator().manual_seed(6))
    gen = torch.Generator().manual_seed(7)
    counts = np.bincount([sample_bounded(bounded, 0, gen, temperature, 0, top_p) for _ in range(40_000)],
                         minlength=30)
    support = want > 0
    assert counts[~support].sum() == 0
    assert stats.chisquare(counts[support], 40_000 * want[support] / want[support].sum()).pvalue > 1e-6


def test_exact_work_is_small_for_tight_bounds():
    row = torch.randn(50_000, generator=torch.Generator().manual_seed(0)) * 3
    bounded = BoundedLogits.around(row[None], 0.05, torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    for _ in range(20):
        sample_bounded(bounded, 0, gen, 0.8, 0, 0.95)
    assert bounded.exact_rows == 0
    assert bounded.exact_entries < 20 * 2000


@pytest.mark.model
def test_sampling_on_a_model_reads_bounded_passes():
    # the decode loop hands sample-and-match bounded passes wherever the head gives bounds,
    # and float32 rows to the verifiers that read q
    from goose.hf import HFTarget, generate
    from goose.verify import RejectionVerifier, SamplingVerifier

    from .tiny import tiny_llama

    model = tiny_llama(vocab=64, seed=0).float()  # bounds come from the bfloat16 copy of a float32 head
    if not HFTarget(model).bounded_logits:
        pytest.skip("no native bfloat16 on this CPU: every pass gives float32 rows")
    seen: dict[str, list[type]] = {}
    for verifier in (SamplingVerifier(0.8, top_p=0.95), RejectionVerifier(0.8, top_p=0.95)):
        log = seen.setdefault(type(verifier).__name__, [])
        inner = verifier.verify
        verifier.verify = lambda tree, logits, inner=inner, log=log: log.append(type(logits)) or inner(tree, logits)
        generate(model, [1, 2, 3, 1, 2, 3], method="goose" if verifier.reads_bounds else "stand",
                 verifier=verifier, temperature=0.8, top_p=0.95, max_new_tokens=12, eos_token_id=[])
    # the first call verifies the prefill's float32 row; every tree pass after it:
    assert set(seen["SamplingVerifier"][1:]) == {BoundedLogits}
    assert set(seen["RejectionVerifier"][1:]) == {torch.Tensor}
