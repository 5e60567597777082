"""Verifiers: decide what the target accepts of a tree.

:class:`GreedyVerifier` (argmax walk) and :class:`SamplingVerifier`
(sample-and-match) are lossless; :class:`LooseVerifier` is **lossy** and opt-in.
"""

from ._base import Verdict, Verifier, check_logits, sample_and_match
from ._greedy import GreedyVerifier
from ._loose import LooseVerifier
from ._reference import enumerate_law, naive_greedy, target_law
from ._sampling import SamplingVerifier, process_logits

__all__ = [
    "GreedyVerifier",
    "LooseVerifier",
    "SamplingVerifier",
    "Verdict",
    "Verifier",
    "check_logits",
    "enumerate_law",
    "naive_greedy",
    "process_logits",
    "sample_and_match",
    "target_law",
]
