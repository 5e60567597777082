"""Verifiers: decide what the target accepts of a tree.

:class:`GreedyVerifier` (argmax walk), :class:`SamplingVerifier`
(sample-and-match, deterministic drafts), :class:`RejectionVerifier` and
:class:`TraversalVerifier` (drafts drawn from q) are lossless; :class:`LooseVerifier` is **lossy** and opt-in.
:class:`Sampling` holds a generation's temperature, top-k, top-p and seed, validated
once. :class:`BoundedLogits` and :func:`sample_bounded` sample exactly from logits known
within bounds (a cheap approximate head, exact entries on demand).
"""

from ._base import Verdict, Verifier, check_logits, sample_and_match
from ._bounded import BoundedLogits, processed_probs, sample_bounded, sample_processed
from ._greedy import GreedyVerifier
from ._loose import LooseVerifier
from ._multidraft import (
    Randomness,
    TorchRandomness,
    children_acceptance,
    rejection_walk,
    slot_law,
    topk_acceptance,
    traversal_walk,
)
from ._params import GREEDY, Sampling, process_logits
from ._reference import completed_law, enumerate_law, enumerate_random_law, naive_greedy, target_law
from ._sampling import RejectionVerifier, SamplingVerifier, TraversalVerifier
from ._select import LOSSY_VERIFIERS, VERIFIERS, check_verifier_name, lossy_verifier, select_verifier

__all__ = [
    "GREEDY",
    "LOSSY_VERIFIERS",
    "VERIFIERS",
    "BoundedLogits",
    "GreedyVerifier",
    "Randomness",
    "TorchRandomness",
    "LooseVerifier",
    "RejectionVerifier",
    "Sampling",
    "SamplingVerifier",
    "TraversalVerifier",
    "check_verifier_name",
    "lossy_verifier",
    "Verdict",
    "Verifier",
    "check_logits",
    "children_acceptance",
    "completed_law",
    "enumerate_random_law",
    "rejection_walk",
    "slot_law",
    "traversal_walk",
    "enumerate_law",
    "naive_greedy",
    "process_logits",
    "processed_probs",
    "sample_bounded",
    "sample_processed",
    "sample_and_match",
    "select_verifier",
    "target_law",
    "topk_acceptance",
]
