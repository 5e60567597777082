"""The decode loop: sources -> shaper -> one target pass over the tree -> verifier.

Model-agnostic: a :class:`Target` scores trees (the Hugging Face adapter in
``goose.hf`` is one; tests also use small pure-torch targets). Conventions:

* the **root** of every tree is the last committed token; it is *not* yet in the
  target's cache when the step starts (after prefill the cache holds the prompt and
  the first generated token is the root of step 1);
* after verification the target keeps, in its cache, the root and the accepted
  nodes, so it always holds ``committed[:-1]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from ..sources._base import Observation, TokenSource
from ..trees._base import TreeShaper, check_budget
from ..trees._tree import DraftTree
from ..verify._base import Verifier

__all__ = ["GenerationResult", "GenerationStats", "Target", "decode"]


class Target(Protocol):
    """What the decode loop needs from a model. A target may also have an integer
    ``max_positions`` (its context window): the loop then keeps trees inside it."""

    def prefill(self, prompt: Sequence[int]) -> torch.Tensor:
        """Process the prompt into a fresh cache; ``[vocab]`` logits after its last token."""

    def prefill_topk(self, k: int, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-k ids and probabilities after the given prompt positions of the last
        prefill (all when ``None``; ``[len(positions), k]`` each), or ``None`` if not
        available."""

    def forward_tree(self, tree: DraftTree) -> torch.Tensor:
        """``[num_nodes, vocab]`` logits after every node of ``tree`` (root = last
        committed token, not yet cached). Appends the nodes to the cache.

        A target whose ``argmax_only_logits`` attribute is true also takes
        ``argmax_only=True``: the loop passes it when the verifier reads only each
        row's argmax (:attr:`Verifier.argmax_only`), and the logits need then be exact
        only at each row's argmax (any other entry below it). The sources' summaries of
        the pass read the top entries, so drafts are best when those are exact too, as
        ``HFTarget`` makes its top 10."""

    def commit(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        """Keep only the root and the ``accepted`` nodes of the last tree in the cache."""

    def cache_length(self) -> int:
        """Number of positions in the cache."""


@dataclass
class GenerationStats:
    """Counters of one generation (times in seconds)."""

    new_tokens: int = 0
    forward_calls: int = 0  # prefill included
    steps: int = 0
    accept_lengths: list[int] = field(default_factory=list)  # draft tokens accepted per step
    tree_sizes: list[int] = field(default_factory=list)
    drafted: dict[str, int] = field(default_factory=dict)  # per source
    accepted: dict[str, int] = field(default_factory=dict)  # per source, before cutting at EOS/limit
    opportunities: dict[str, int] = field(default_factory=dict)
    time_prefill: float = 0.0
    time_draft: float = 0.0
    time_forward: float = 0.0
    time_verify: float = 0.0
    time_other: float = 0.0
    time_total: float = 0.0
    lossless: bool = True

    @property
    def mat(self) -> float:
        """New tokens per target forward call, prefill included."""
        return self.new_tokens / self.forward_calls if self.forward_calls else 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.time_total if self.time_total else 0.0

    def accept_rates(self) -> dict[str, dict[str, float]]:
        """Per source: accepted per drafted node, and per opportunity (an accepted
        node or root that had at least one child from the source)."""
        out = {}
        for s, d in self.drafted.items():
            out[s] = {
                "per_node": self.accepted.get(s, 0) / d if d else 0.0,
                "per_opportunity": self.accepted.get(s, 0) / self.opportunities[s]
                if self.opportunities.get(s) else 0.0,
                "drafted": d,
                "accepted": self.accepted.get(s, 0),
            }
        return out

    def to_json(self) -> dict:
        loop = self.time_draft + self.time_verify + self.time_other
        return {
            "new_tokens": self.new_tokens,
            "forward_calls": self.forward_calls,
            "mat": self.mat,
            "tokens_per_s": self.tokens_per_s,
            "steps": self.steps,
            "mean_tree_size": float(np.mean(self.tree_sizes)) if self.tree_sizes else 0.0,
            "accept_lengths": self.accept_lengths,
            "accept": self.accept_rates(),
            "time": {"prefill": self.time_prefill, "draft": self.time_draft, "forward": self.time_forward,
                     "verify": self.time_verify, "other": self.time_other, "total": self.time_total},
            "overhead_vs_forward": loop / self.time_forward if self.time_forward else 0.0,
            "lossless": self.lossless,
        }


@dataclass
class GenerationResult:
    """Output of :func:`decode` / :func:`goose.generate`.

    Attributes:
        tokens: the new token ids (EOS included when it stopped the generation).
        text: their decoded text (filled by callers that have a tokenizer).
        stats: counters and timings.
        kinds: per new token, ``"spine"``, ``"branch"`` (accepted draft tokens by
            the node's source role) or ``"bonus"`` (the target's own token).
    """

    tokens: list[int]
    stats: GenerationStats
    kinds: list[str] = field(default_factory=list)
    text: str = ""


def _prefill_positions(prompt: list[int], needs: set[str]) -> np.ndarray | None:
    """The prompt positions the sources need to observe (ascending), ``None`` for all."""
    unknown = needs - {"all", "last-pair", "last-token", "none"}
    if unknown:
        raise ValueError(f"unknown prefill_positions {sorted(unknown)}: use all, last-pair, last-token or none")
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


def _observation(tree: DraftTree, prev_root: int, logits: torch.Tensor, k: int) -> Observation:
    top = torch.topk(logits.float(), k, dim=-1)  # values/indices [n, k]
    lse = torch.logsumexp(logits.float(), dim=-1, keepdim=True)  # [n, 1]
    prev = np.empty(tree.num_nodes, dtype=np.int64)
    prev[0] = prev_root
    prev[1:] = tree.tokens[tree.parents[1:]]
    return Observation(tree.tokens, prev, top.indices.numpy(), (top.values - lse).exp().numpy())


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
    spine_sources: Sequence[str] = ("context",),
) -> GenerationResult:
    """Generate up to ``max_new_tokens`` tokens after ``prompt``.

    Args:
        target: the model adapter.
        prompt: prompt token ids (non-empty).
        sources: the token sources.
        shaper: builds each step's tree.
        verifier: decides the accepted path and bonus.
        budget: draft nodes per step (>= 1; shapers may use fewer).
        max_new_tokens: hard cap on new tokens (> 0); output never exceeds it.
        eos_token_ids: generation stops right after the first of these it emits.
        observe_k: top-k of each processed position shown to the sources.
        on_commit: called with each step's new tokens and their kinds (streaming).
        recorder: called with one dict per step (trace recording for ``sim``).
        spine_sources: source names whose accepted tokens count as "spine".
    """
    if len(prompt) == 0:
        raise ValueError("the prompt is empty: give at least one token")
    if max_new_tokens <= 0:
        raise ValueError(f"max_new_tokens must be > 0, got {max_new_tokens}")
    budget = check_budget(budget)
    eos = {int(e) for e in eos_token_ids}
    argmax_only = bool(getattr(verifier, "argmax_only", False) and getattr(target, "argmax_only_logits", False))
    watchers = [s for s in sources if type(s).observe is not TokenSource.observe]  # the others learn nothing
    stats = GenerationStats(lossless=bool(verifier.lossless))
    t_start = time.perf_counter()
    committed = [int(t) for t in prompt]
    for src in sources:
        src.reset(committed)
    shaper.reset()
    last_logits = target.prefill(committed)
    stats.forward_calls = 1
    _prefill_positions(committed[:1], {getattr(s, "prefill_positions", "all") for s in sources})  # validates them
    positions = _prefill_positions(committed, {getattr(s, "prefill_positions", "all") for s in watchers})
    harvest = (target.prefill_topk(observe_k, positions)
               if watchers and (positions is None or len(positions)) else None)
    if harvest is not None:
        tokens = np.asarray(committed, dtype=np.int64)
        prev = np.asarray([-1] + committed[:-1], dtype=np.int64)
        if positions is not None:
            tokens, prev = tokens[positions], prev[positions]
        obs = Observation(tokens, prev, *harvest)
        for src in watchers:
            src.observe(obs)
    first = verifier.verify(DraftTree([committed[-1]], [-1]), last_logits[None]).bonus
    stats.time_prefill = time.perf_counter() - t_start
    new, kinds = [first], ["bonus"]
    committed.append(first)
    if on_commit:
        on_commit([first], ["bonus"])
    done = first in eos or len(new) >= max_new_tokens
    while not done:
        t0 = time.perf_counter()
        tree = shaper.shape(committed, sources, budget)
        # nodes past the token limit can never be emitted, nodes past the context window never run
        room_positions = getattr(target, "max_positions", None)
        depth_cap = max_new_tokens - len(new) - 1
        if room_positions is not None:
            depth_cap = min(depth_cap, int(room_positions) - len(committed))
        if int(tree.depths.max()) > depth_cap:
            tree = tree.truncated(depth_cap)
        t1 = time.perf_counter()
        logits = target.forward_tree(tree, argmax_only=True) if argmax_only else target.forward_tree(tree)
        t2 = time.perf_counter()
        verdict = verifier.verify(tree, logits)
        t3 = time.perf_counter()
        target.commit(tree, verdict.accepted)
        stats.forward_calls += 1
        stats.steps += 1
        stats.accept_lengths.append(len(verdict.accepted))
        stats.tree_sizes.append(tree.size)
        walk = (0, *verdict.accepted)
        for v in range(1, tree.num_nodes):
            stats.drafted[tree.sources[v]] = stats.drafted.get(tree.sources[v], 0) + 1
        for j, u in enumerate(walk):
            for s in {tree.sources[c] for c in tree.children(u)}:
                stats.opportunities[s] = stats.opportunities.get(s, 0) + 1
            if j + 1 < len(walk):
                s = tree.sources[walk[j + 1]]
                stats.accepted[s] = stats.accepted.get(s, 0) + 1
        step_tokens = list(verdict.emitted)
        step_kinds = ["spine" if tree.sources[v] in spine_sources else "branch" for v in verdict.accepted]
        step_kinds.append("bonus")
        for i, tok in enumerate(step_tokens):  # stop exactly where plain decoding stops
            if tok in eos:
                step_tokens, step_kinds, done = step_tokens[: i + 1], step_kinds[: i + 1], True
                break
        room = max_new_tokens - len(new)
        if len(step_tokens) >= room:
            step_tokens, step_kinds, done = step_tokens[:room], step_kinds[:room], True
        if recorder is not None:
            recorder({"context_len": len(committed), "tree_size": tree.size,
                      "accepted": len(verdict.accepted), "emitted": step_tokens})
        if watchers:
            prev_root = committed[-2] if len(committed) > 1 else -1
            obs = _observation(tree, prev_root, logits, min(observe_k, logits.shape[-1]))
            for src in watchers:
                src.observe(obs)
        shaper.record(tree, verdict.accepted)
        committed.extend(step_tokens)
        new.extend(step_tokens)
        kinds.extend(step_kinds)
        if on_commit:
            on_commit(step_tokens, step_kinds)
        t4 = time.perf_counter()
        stats.time_draft += t1 - t0
        stats.time_forward += t2 - t1
        stats.time_verify += t3 - t2
        stats.time_other += t4 - t3
    stats.new_tokens = len(new)
    stats.time_total = time.perf_counter() - t_start
    return GenerationResult(tokens=new, stats=stats, kinds=kinds)
