"""A draft model as a token source: its own next-token law, run on each node's path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..sources import DraftDist, Proposal, TokenSource
from ._cache import new_cache

__all__ = ["DraftModelSource"]


class DraftModelSource(TokenSource):
    """Proposes the ``k`` most likely next tokens of a draft model run on the node's own
    path, and carries the draft model's law over them as ``q``.

    The draft model keeps its own KV cache of the last sequence it read. A query feeds
    only what that cache lacks: the new tail of the committed context, then the draft
    path (after cropping back to the longest common prefix when the tree branches). A
    chain therefore costs one single-token pass per node. ``q`` is the softmax of the
    draft logits at temperature 1, cut to its ``k`` most likely tokens (the rest is the
    :class:`DraftDist`'s ``rest``); :class:`~goose.trees.StochasticShaper` tempers it
    and draws from it, and the verifier is told exactly that law, so the output law is
    the target's whatever the draft model is.

    With the target's own bfloat16 copy (:meth:`HFTarget.low_precision_copy`, the
    ``bf16-draft`` method) ``q`` is the target's own law up to bfloat16 rounding: on
    SmolLM2 at T = 0.8, top-p 0.95 it shares 96% of its mass with the target's, and a
    single-token pass costs ~60% of the float32 one on a CPU with native bfloat16
    (``benchmarks/early_exit_q.py`` measures the overlap, next to cheaper drafts that
    come nowhere near). A draft the size of the target pays only as far as its passes
    are cheaper than the target's.

    Args:
        model: the draft causal LM (same tokenizer as the target).
        k: tokens listed in ``q`` (and proposed) per node.
        name: the source's name in statistics.
    """

    kind = "spine"
    prefill_positions = "none"

    def __init__(self, model: Any, k: int = 32, name: str = "draft") -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.model, self.k, self.name = model, int(k), name
        self._device = next(model.parameters()).device
        self._cache: Any = None
        self._fed: list[int] = []  # the tokens whose keys and values the draft cache holds
        self._seen: dict[tuple[int, ...], list[Proposal]] = {}  # this step's answers, by path

    def begin(self, prompt: Sequence[int]) -> None:
        self._cache, self._fed, self._seen = new_cache(), [], {}

    def commit(self, new_tokens: Sequence[int]) -> None:
        self._seen = {}

    def _logits(self, seq: list[int]) -> torch.Tensor:
        """The draft model's logits after ``seq``, feeding only what its cache lacks."""
        n, limit = 0, min(len(self._fed), len(seq) - 1)  # feed at least the last token
        while n < limit and self._fed[n] == seq[n]:
            n += 1
        if n < len(self._fed):
            self._cache.crop(n - len(self._fed))
        ids = torch.tensor([seq[n:]], device=self._device)
        with torch.no_grad():
            out = self.model(input_ids=ids, past_key_values=self._cache, use_cache=True, logits_to_keep=1)
        self._fed = seq
        return out.logits[0, -1].float()

    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        if not context:
            return []
        key = tuple(int(t) for t in path)
        if key not in self._seen:
            logits = self._logits([int(t) for t in context] + list(key))
            probs, ids = logits.softmax(-1).topk(min(self.k, logits.shape[-1]))
            probs = probs.double().cpu().numpy()
            probs /= max(1.0, float(probs.sum()))  # float rounding may sum past 1
            q = DraftDist(tuple(int(t) for t in ids.cpu()), tuple(float(p) for p in probs))
            self._seen[key] = [Proposal((t,), (p,), self.name, "draft", q=q)
                               for t, p in zip(q.ids, q.probs, strict=True) if p > 0]
        return self._seen[key]
