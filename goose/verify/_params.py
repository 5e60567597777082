"""What a generation samples with: :class:`Sampling` (temperature, top-k, top-p, seed),
validated once where it enters, and :func:`process_logits`, the exact warpers of
transformers' ``generate`` that turn the target's logits into ``p``."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch

__all__ = ["GREEDY", "Sampling", "process_logits"]


def _integer(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Sampling:
    """How one generation draws its tokens, checked once here and trusted after.

    ``temperature == 0`` is greedy decoding (token-identical to
    ``model.generate(do_sample=False)``); then ``top_k`` and ``top_p`` play no part
    (:meth:`ignored` names any that were set). ``temperature > 0`` samples the target's
    distribution after temperature, then top-k (``0``: off), then top-p (``1``: off),
    exactly as transformers' warpers do; ``seed`` (``>= 0``) seeds the verifier's draws
    and a stochastic drafter's.

    Raises:
        ValueError: naming the field, for a negative or non-finite temperature, a
            non-integer or negative ``top_k`` or ``seed``, or ``top_p`` outside ``(0, 1]``.

    Example:
        >>> Sampling(temperature=0.8, top_p=0.95).greedy
        False
        >>> Sampling(top_p=0.9).ignored()
        ['top_p=0.9']
    """

    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("temperature", "top_p"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must lie in (0, 1] (1 is off), got {self.top_p}")
        if _integer(self.top_k, "top_k") < 0:
            raise ValueError(f"top_k must be >= 0 (0 is off), got {self.top_k}")
        if _integer(self.seed, "seed") < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))
        object.__setattr__(self, "top_k", int(self.top_k))
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def greedy(self) -> bool:
        """Temperature 0: the argmax at every step."""
        return self.temperature == 0

    def ignored(self) -> list[str]:
        """The options set that greedy decoding ignores (empty when sampling)."""
        if not self.greedy:
            return []
        return [f"{name}={value}" for name, value, off in (("top_k", self.top_k, 0), ("top_p", self.top_p, 1.0))
                if value != off]

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded with ``seed + offset`` (draws happen on the CPU,
        whatever the model's device)."""
        return torch.Generator().manual_seed(self.seed + offset)

    def to_json(self) -> dict:
        return {"temperature": self.temperature, "top_k": self.top_k, "top_p": self.top_p, "seed": self.seed}


GREEDY = Sampling()
"""Greedy decoding."""


def process_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """Apply temperature, then top-k, then top-p, exactly as transformers' warpers do
    in ``generate`` (filtered entries become ``-inf``).

    Args:
        logits: ``[n, vocab]`` raw target logits.

    Returns:
        ``[n, vocab]`` processed scores, float32 (float64 stays float64); ``softmax`` of
        a row is ``p``.
    """
    scores = logits.to(torch.promote_types(logits.dtype, torch.float32))
    if temperature != 1.0:
        scores = scores / temperature
    if top_k > 0:
        k = min(top_k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]  # [n, 1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)  # [n, vocab]
        cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        drop_sorted = cum <= (1 - top_p)
        drop_sorted[..., -1:] = False  # keep at least one token
        drop = drop_sorted.scatter(1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores
