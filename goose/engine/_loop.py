"""The decode loop: sources -> shaper -> one target pass over the tree -> verifier.

Model-agnostic: a :class:`Target` scores trees (the Hugging Face adapter in
``goose.hf`` is one; tests also use small pure-torch targets). Conventions:

* the **root** of every tree is the last committed token; it is *not* yet in the
  target's cache when the step starts (after prefill the cache holds the prompt and
  the first generated token is the root of step 1);
* after verification the target keeps, in its cache, the root and the accepted
  nodes, so it always holds ``committed[:-1]``;
* every source and the shaper see the :class:`~goose.sources.Lifecycle` hooks:
  ``begin(prompt)``, ``commit(new_tokens)`` after each step (the tokens actually
  appended, after the EOS / length cut) and ``end(tokens)``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import torch

from ..sources import Lifecycle, Observation, TokenSource
from ..trees import DraftTree, TreeShaper, check_budget
from ..verify import BoundedLogits, Verifier
from ._stats import GenerationResult, GenerationStats

__all__ = ["GenerationResult", "GenerationStats", "Target", "decode"]

PREFILL_POSITIONS = ("all", "last-pair", "last-token", "none")


class Target(Protocol):
    """What the decode loop needs from a model. A target may also have an integer
    ``max_positions`` (its context window): the loop then keeps trees inside it."""

    argmax_only_logits: bool
    """Whether :meth:`forward_tree` can return logits exact only at each row's argmax
    (and its top entries) when asked with ``argmax_only=True``, faster."""

    def prefill(self, prompt: Sequence[int]) -> torch.Tensor:
        """Process the prompt into a fresh cache; ``[vocab]`` logits after its last token."""

    def prefill_topk(self, k: int, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-k ids and probabilities after the given prompt positions of the last
        prefill (all when ``None``; ``[len(positions), k]`` each), or ``None`` if not
        available."""

    def forward_tree(self, tree: DraftTree, argmax_only: bool = False) -> torch.Tensor:
        """``[num_nodes, vocab]`` logits after every node of ``tree`` (root = last
        committed token, not yet cached). Appends the nodes to the cache.

        A target whose ``bounded_logits`` attribute is true also takes ``bounded=True``
        (passed only when the verifier reads them, ``Verifier.reads_bounds``) and may
        then return :class:`~goose.verify.BoundedLogits`: approximate logits with
        rigorous bounds, exact entries and rows on demand.

        ``argmax_only=True`` (passed only when the verifier reads nothing but each
        row's argmax, :attr:`Verifier.argmax_only`, and ``argmax_only_logits`` is
        true) lets the logits be exact only at each row's argmax (any other entry
        below it). The sources' summaries of the pass read the top entries, so
        drafts are best when those are exact too, as ``HFTarget`` makes its top 10."""

    def commit(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        """Keep only the root and the ``accepted`` nodes of the last tree in the cache."""

    def rewind(self, n: int) -> None:
        """Drop the last ``n`` positions of the cache (``n >= 0``)."""

    def cache_length(self) -> int:
        """Number of positions in the cache."""


def prefill_positions(prompt: Sequence[int], needs: set[str]) -> np.ndarray | None:
    """The prompt positions sources with these ``prefill_positions`` need to observe
    (ascending), ``None`` for all."""
    unknown = needs - set(PREFILL_POSITIONS)
    if unknown:
        raise ValueError(f"unknown prefill_positions {sorted(unknown)}: use {', '.join(PREFILL_POSITIONS)}")
    if "all" in needs:
        return None
    tokens = np.asarray(prompt, dtype=np.int64)
    if "last-pair" in needs:
        prev = np.concatenate([[-1], tokens[:-1]])
        keys = prev * (int(tokens.max()) + 2) + tokens  # one integer per (prev, token) pair
    elif "last-token" in needs:
        keys = tokens
    else:
        return np.empty(0, dtype=np.int64)
    _, first_in_reversed = np.unique(keys[::-1], return_index=True)
    return np.sort(len(keys) - 1 - first_in_reversed)


def _watchers(sources: Sequence[TokenSource]) -> list[TokenSource]:
    """The sources that learn from passes (override ``observe``); checks every
    source's ``prefill_positions``."""
    prefill_positions([0], {getattr(s, "prefill_positions", "all") for s in sources})
    return [s for s in sources if type(s).observe is not TokenSource.observe]


def _prefill(target: Target, prompt: list[int], watchers: Sequence[TokenSource], k: int) -> torch.Tensor:
    """Prefill the prompt and show the watchers what the target predicted after it."""
    logits = target.prefill(prompt)
    positions = prefill_positions(prompt, {getattr(s, "prefill_positions", "all") for s in watchers})
    harvest = target.prefill_topk(k, positions) if watchers and (positions is None or len(positions)) else None
    if harvest is not None:
        tokens = np.asarray(prompt, dtype=np.int64)
        prev = np.asarray([-1] + prompt[:-1], dtype=np.int64)
        if positions is not None:
            tokens, prev = tokens[positions], prev[positions]
        obs = Observation(tokens, prev, *harvest)
        for src in watchers:
            src.observe(obs)
    return logits


def _observe(watchers: Sequence[TokenSource], tree: DraftTree, prev_root: int,
             logits: torch.Tensor | BoundedLogits, k: int) -> None:
    if not watchers:
        return
    if isinstance(logits, BoundedLogits):  # the sources only draft: approximate top entries serve
        logits = logits.approx
    k = min(k, logits.shape[-1])
    top = torch.topk(logits.float(), k, dim=-1)  # values/indices [n, k]
    lse = torch.logsumexp(logits.float(), dim=-1, keepdim=True)  # [n, 1]
    prev = np.empty(tree.num_nodes, dtype=np.int64)
    prev[0] = prev_root
    prev[1:] = tree.tokens[tree.parents[1:]]
    obs = Observation(tree.tokens, prev, top.indices.numpy(), (top.values - lse).exp().numpy(), tree.parents)
    for src in watchers:
        src.observe(obs)


class _Sequence:
    """The committed tokens of one generation and everything that is told of them:
    the EOS and length cut, the lifecycle hooks, the streaming callback."""

    def __init__(self, prompt: Sequence[int], max_new_tokens: int, eos: Sequence[int],
                 hooks: Sequence[Lifecycle], on_commit: Callable[[list[int], list[str]], None] | None) -> None:
        self.committed = [int(t) for t in prompt]
        self.new: list[int] = []
        self.kinds: list[str] = []
        self.max_new, self.eos, self.hooks, self.on_commit = max_new_tokens, {int(e) for e in eos}, hooks, on_commit
        self.done = False
        for h in hooks:
            h.begin(list(self.committed))

    @property
    def room(self) -> int:
        """New tokens still allowed."""
        return self.max_new - len(self.new)

    def cut(self, tokens: Sequence[int], kinds: Sequence[str]) -> tuple[list[int], list[str]]:
        """What of a step's tokens is emitted: up to the first EOS (included), at most ``room``."""
        stop = next((i + 1 for i, t in enumerate(tokens) if t in self.eos), None)
        keep = len(tokens) if stop is None else stop
        self.done = stop is not None or keep >= self.room
        keep = min(keep, self.room)
        return list(tokens[:keep]), list(kinds[:keep])

    def append(self, tokens: list[int], kinds: list[str]) -> None:
        self.committed.extend(tokens)
        self.new.extend(tokens)
        self.kinds.extend(kinds)
        for h in self.hooks:
            h.commit(list(tokens))
        if self.on_commit:
            self.on_commit(tokens, kinds)

    def close(self) -> None:
        for h in self.hooks:
            h.end(list(self.committed))


def _fit(tree: DraftTree, target: Target, seq: _Sequence) -> DraftTree:
    """``tree`` without the nodes that could never be emitted (past the token limit)
    or never run (past the target's context window)."""
    depth_cap = seq.room - 1
    if getattr(target, "max_positions", None) is not None:
        depth_cap = min(depth_cap, int(target.max_positions) - len(seq.committed))
    return tree.truncated(depth_cap) if int(tree.depths.max()) > depth_cap else tree


def decode(
    target: Target,
    prompt: Sequence[int],
    sources: Sequence[TokenSource],
    shaper: TreeShaper,
    verifier: Verifier,
    budget: int,
    max_new_tokens: int,
    eos_token_ids: Sequence[int] = (),
    observe_k: int = 10,
    on_commit: Callable[[list[int], list[str]], None] | None = None,
    recorder: Callable[[dict], None] | None = None,
) -> GenerationResult:
    """Generate up to ``max_new_tokens`` tokens after ``prompt`` (non-empty), drafting
    at most ``budget`` (>= 1) nodes a step; stops right after the first of
    ``eos_token_ids`` it emits. ``observe_k``: top-k of each processed position shown
    to the sources; ``on_commit(tokens, kinds)``: each step's new tokens (streaming);
    ``recorder``: one dict per step (trace recording for ``sim``)."""
    if len(prompt) == 0:
        raise ValueError("the prompt is empty: give at least one token")
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
    budget, watchers = check_budget(budget), _watchers(sources)
    argmax_only = bool(verifier.argmax_only and getattr(target, "argmax_only_logits", False))
    bounded = {"bounded": True} if getattr(verifier, "reads_bounds", False) and getattr(target, "bounded_logits",
                                                                                           False) else {}
    stats, t_start = GenerationStats(lossless=bool(verifier.lossless)), time.perf_counter()
    seq = _Sequence(prompt, max_new_tokens, eos_token_ids, [*sources, shaper], on_commit)
    logits = _prefill(target, seq.committed, watchers, observe_k)
    first = verifier.verify(DraftTree([seq.committed[-1]], [-1]), logits[None]).bonus
    stats.forward_calls, stats.time_prefill = 1, time.perf_counter() - t_start
    seq.append(*seq.cut([first], ["bonus"]))
    while not seq.done:
        t0 = time.perf_counter()
        tree = _fit(shaper.shape(seq.committed, sources, budget), target, seq)
        t1 = time.perf_counter()
        logits = target.forward_tree(tree, argmax_only=argmax_only, **bounded)
        t2 = time.perf_counter()
        verdict = verifier.verify(tree, logits)
        t3 = time.perf_counter()
        target.commit(tree, verdict.accepted)
        stats.count_step(tree, verdict)
        tokens, kinds = seq.cut(verdict.emitted, [tree.kinds[v] for v in verdict.accepted] + ["bonus"])
        if recorder is not None:
            recorder({"context_len": len(seq.committed), "tree_size": tree.size,
                      "accepted": len(verdict.accepted), "emitted": tokens})
        _observe(watchers, tree, seq.committed[-2] if len(seq.committed) > 1 else -1, logits, observe_k)
        shaper.record(tree, verdict.accepted)
        seq.append(tokens, kinds)
        stats.add_times((t0, t1, t2, t3, time.perf_counter()))
    seq.close()
    stats.new_tokens, stats.time_total = len(seq.new), time.perf_counter() - t_start
    return GenerationResult(tokens=seq.new, stats=stats, kinds=seq.kinds)
