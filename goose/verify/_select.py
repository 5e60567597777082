"""Which verifier a generation uses: follows from temperature and what the trees carry."""

from __future__ import annotations

import re

from ._base import Verifier
from ._greedy import GreedyVerifier
from ._loose import LooseVerifier
from ._params import Sampling
from ._sampling import RejectionVerifier, SamplingVerifier, TraversalVerifier

__all__ = ["LOSSY_VERIFIERS", "VERIFIERS", "check_verifier_name", "lossy_verifier", "select_verifier"]

VERIFIERS = {"match": SamplingVerifier, "rrs": RejectionVerifier, "traversal": TraversalVerifier}
"""Sampling verifiers by name: sample-and-match (deterministic drafts), recursive
rejection sampling and Traversal Verification (drafts drawn from q)."""

LOSSY_VERIFIERS = {"loose": LooseVerifier}
"""**Lossy** verifiers by name: greedy only, opt-in, never chosen by ``auto``. Their
outputs can differ from the target's own and are labelled lossy wherever they
appear. ``loose`` takes its settings in the name: ``loose-w4`` (window 4),
``loose-e0.5`` (entropy threshold 0.5), ``loose-w4-e0.5``."""

_LOOSE = re.compile(r"loose(?:-w(\d+))?(?:-e(\d+(?:\.\d*)?|\.\d+))?")


def lossy_verifier(name: str | None) -> LooseVerifier | None:
    """The lossy verifier ``name`` asks for (see :data:`LOSSY_VERIFIERS`), or ``None``
    when ``name`` is not a lossy verifier's name.

    >>> v = lossy_verifier("loose-w4-e0.5")
    >>> (v.window, v.entropy_threshold, v.lossless)
    (4, 0.5, False)
    >>> lossy_verifier("rrs") is None
    True
    """
    hit = _LOOSE.fullmatch(name) if isinstance(name, str) else None
    if hit is None:
        return None
    window, entropy = hit.groups()
    return LooseVerifier(**({"window": int(window)} if window else {}),
                         **({"entropy_threshold": float(entropy)} if entropy else {}))


def check_verifier_name(name: str | None) -> None:
    """Refuse a verifier name goose does not know (``None`` and ``auto`` choose one)."""
    if name in (None, "auto", *VERIFIERS) or lossy_verifier(name) is not None:
        return
    raise ValueError(f"unknown verifier {name!r}; known: auto, {', '.join(VERIFIERS)}, and the lossy "
                     "loose[-wW][-eH] (greedy only)")


def select_verifier(name: str | None, draws: bool, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
                    seed: int = 0, *, sampling: Sampling | None = None) -> Verifier:
    """The verifier of a generation.

    Args:
        name: ``None`` or ``"auto"`` (greedy at temperature 0; else Traversal
            Verification when the drafter draws from q, sample-and-match when it does
            not: always lossless), a name of :data:`VERIFIERS` to force one, or, at
            temperature 0 and only on request, a **lossy** one (:data:`LOSSY_VERIFIERS`).
        draws: whether the drafter's trees carry children drawn from q.
        temperature: the sampling temperature (0: greedy), with ``top_k``, ``top_p``
            and ``seed`` beside it; or
        sampling: all four as one :class:`Sampling` (what the generation plan passes).

    Raises:
        ValueError: an unknown name, a sampling verifier at temperature 0, a lossy
            one at temperature > 0, a q-reading verifier forced
            on a deterministic drafter (it has no q to read), or sample-and-match
            forced on a drafter that draws (it would not be lossless).
    """
    if sampling is None:
        sampling = Sampling(temperature, top_k, top_p, seed)
    check_verifier_name(name)
    lossy = lossy_verifier(name)
    if lossy is not None:
        if not sampling.greedy:
            raise ValueError(f"verifier {name!r} loosens greedy verification (lossy): it needs temperature 0")
        return lossy
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
