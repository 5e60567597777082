"""Which verifier a generation uses: follows from temperature and what the trees carry."""

from __future__ import annotations

from ._base import Verifier
from ._greedy import GreedyVerifier
from ._params import Sampling
from ._sampling import RejectionVerifier, SamplingVerifier, TraversalVerifier

__all__ = ["VERIFIERS", "select_verifier"]

VERIFIERS = {"match": SamplingVerifier, "rrs": RejectionVerifier, "traversal": TraversalVerifier}
"""Sampling verifiers by name: sample-and-match (deterministic drafts), recursive
rejection sampling and Traversal Verification (drafts drawn from q)."""


def select_verifier(name: str | None, draws: bool, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                    seed: int = 0, *, sampling: Sampling | None = None) -> Verifier:
    """The verifier of a generation.

    Args:
        name: ``None`` or ``"auto"`` (greedy at temperature 0; else Traversal
            Verification when the drafter draws from q, sample-and-match when it does
            not), or a name of :data:`VERIFIERS` to force one.
        draws: whether the drafter's trees carry children drawn from q.
        temperature: the sampling temperature (0: greedy), with ``top_k``, ``top_p``
            and ``seed`` beside it; or
        sampling: all four as one :class:`Sampling` (what the generation plan passes).

    Raises:
        ValueError: a sampling verifier at temperature 0, a q-reading verifier forced
            on a deterministic drafter (it has no q to read), or sample-and-match
            forced on a drafter that draws (it would not be lossless).
    """
    if sampling is None:
        sampling = Sampling(temperature, top_k, top_p, seed)
    if name not in (None, "auto", *VERIFIERS):
        raise ValueError(f"unknown verifier {name!r}; known: auto, {', '.join(VERIFIERS)}")
    if sampling.greedy:
        if name not in (None, "auto"):
            raise ValueError(f"verifier {name!r} samples: it needs temperature > 0 (temperature 0 is greedy)")
        return GreedyVerifier()
    if name in (None, "auto"):
        name = "traversal" if draws else "match"
    cls = VERIFIERS[name]
    if cls.reads_q and not draws:
        raise ValueError(f"verifier {name!r} reads the draft distribution q, but this method drafts deterministic "
                         "trees (no q): use 'match' (sample-and-match, already optimal there) or a stochastic "
                         "method such as 'stand'")
    if not cls.reads_q and draws:
        raise ValueError("verifier 'match' ignores q and is lossless only for deterministic drafts; this method "
                         "draws its children from q: use 'rrs' or 'traversal'")
    return cls(sampling.temperature, sampling.top_k, sampling.top_p, sampling.generator())
