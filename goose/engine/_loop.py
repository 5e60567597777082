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
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..sources import Lifecycle, Observation, TokenSource
from ..trees import DraftTree, TreeShaper, check_budget
from ..verify import BoundedLogits, Verifier
from ._guards import check_prompt, check_tree
from ._stats import GenerationResult, GenerationStats

__all__ = ["GenerationResult", "GenerationStats", "Target", "decode"]

PREFILL_POSITIONS = ("all", "last-pair", "last-token", "none")


class Target(ABC):
    """What the decode loop needs from a model: a prefill, tree passes over a cache,
    and KV compaction to the accepted path. :class:`goose.hf.HFTarget` is the
    transformers one; :class:`goose.testing.ToyTarget` a tiny pure-torch one.

    The class attributes are what the loop reads of a target; override them where
    the target can do more (each has a safe default)."""

    vocab_size: int | None = None
    """Rows of logits are ``[vocab_size]``; every id fed to the target (prompt and
    tree) must lie in ``[0, vocab_size)``. ``None``: unknown (not checked)."""
    max_positions: int | None = None
    """The context window in positions, ``None`` for unbounded: the loop keeps trees
    inside it, stops when the sequence fills it, and refuses a prompt that cannot fit."""
    argmax_only_logits: bool = False
    """Whether :meth:`forward_tree` can return logits exact only at each row's argmax
    (and its top entries) when asked with ``argmax_only=True``, faster."""
    bounded_logits: bool = False
    """Whether :meth:`forward_tree` takes ``bounded=True`` and may then return
    :class:`~goose.verify.BoundedLogits` (approximate logits with rigorous bounds,
    exact entries and rows on demand)."""

    @abstractmethod
    def prefill(self, prompt: Sequence[int]) -> torch.Tensor:
        """Process the prompt into a fresh cache; ``[vocab]`` logits after its last token."""

    def prefill_topk(self, k: int, positions: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """Top-k ids and probabilities after the given prompt positions of the last
        prefill (all when ``None``; ``[len(positions), k]`` each), or ``None`` if not
        available (the default)."""
        return None

    @abstractmethod
    def forward_tree(self, tree: DraftTree, argmax_only: bool = False,
                     bounded: bool = False) -> torch.Tensor | BoundedLogits:
        """``[num_nodes, vocab]`` logits after every node of ``tree`` (root = last
        committed token, not yet cached). Appends the nodes to the cache.

        ``bounded=True`` is passed only when the verifier reads bounds
        (:attr:`Verifier.reads_bounds`) and :attr:`bounded_logits` is true.
        ``argmax_only=True`` is passed only when the verifier reads nothing but each
        row's argmax (:attr:`Verifier.argmax_only`) and :attr:`argmax_only_logits` is
        true: the logits may then be exact only at each row's argmax (any other entry
        below it). The sources' summaries of the pass read the top entries, so drafts
        are best when those are exact too, as ``HFTarget`` makes its top 10."""

    @abstractmethod
    def commit(self, tree: DraftTree, accepted: Sequence[int]) -> None:
        """Keep only the root and the ``accepted`` nodes of the last tree in the cache."""

    @abstractmethod
    def rewind(self, n: int) -> None:
        """Drop the last ``n`` positions of the cache (``n >= 0``)."""

    @abstractmethod
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
    prefill_positions([0], {s.prefill_positions for s in sources})
    return [s for s in sources if type(s).observe is not TokenSource.observe]


def _prefill(target: Target, prompt: list[int], watchers: Sequence[TokenSource], k: int) -> torch.Tensor:
    """Prefill the prompt and show the watchers what the target predicted after it."""
    logits = target.prefill(prompt)
    _show_prefill(prompt, watchers, k, target.prefill_topk)
    return logits


def _show_prefill(prompt: list[int], watchers: Sequence[TokenSource], k: int,
                  topk: Callable[[int, np.ndarray | None], tuple[np.ndarray, np.ndarray] | None]) -> None:
    """Show the watchers the target's top-``k`` after the prompt positions they need;
    ``topk(k, positions)`` reads them from the last prefill (``None``: not available)."""
    positions = prefill_positions(prompt, {s.prefill_positions for s in watchers})
    harvest = topk(k, positions) if watchers and (positions is None or len(positions)) else None
    if harvest is None:
        return
    tokens = np.asarray(prompt, dtype=np.int64)
    prev = np.asarray([-1] + prompt[:-1], dtype=np.int64)
    if positions is not None:
        tokens, prev = tokens[positions], prev[positions]
    obs = Observation(tokens, prev, *harvest)
    for src in watchers:
        src.observe(obs)


def _observe(watchers: Sequence[TokenSource], tree: DraftTree, prev_root: int,
             logits: torch.Tensor | BoundedLogits, k: int) -> None:
    if not watchers:
        return
    if isinstance(logits, BoundedLogits):  # the sources only draft: approximate top entries serve
        logits = logits.approx
    k, logits = min(k, logits.shape[-1]), logits.float()
    top = torch.topk(logits, k, dim=-1).indices  # [n, k], ordered by the logits themselves
    # softmax is one vectorised pass; logsumexp and exp(top - lse) took 1.6-1.9x as long on a 2-core CPU
    probs = torch.softmax(logits, dim=-1).gather(-1, top)  # [n, k]
    prev = np.empty(tree.num_nodes, dtype=np.int64)
    prev[0] = prev_root
    prev[1:] = tree.tokens[tree.parents[1:]]
    obs = Observation(tree.tokens, prev, top.cpu().numpy(), probs.cpu().numpy(),
                      tree.parents)  # the logits may live on a GPU
    for src in watchers:
        src.observe(obs)


class _Sequence:
    """The committed tokens of one generation and everything that is told of them:
    the EOS, length and context-window cut, the lifecycle hooks, the streaming
    callback, and why the generation finished."""

    def __init__(self, prompt: list[int], max_new_tokens: int, eos: Sequence[int], window: int | None,
                 hooks: Sequence[Lifecycle], on_commit: Callable[[list[int], list[str]], None] | None) -> None:
        self.committed = list(prompt)
        self.new: list[int] = []
        self.kinds: list[str] = []
        self.max_new, self.eos, self.window = max_new_tokens, {int(e) for e in eos}, window
        self.hooks, self.on_commit = hooks, on_commit
        self.finish_reason: str | None = None
        for h in hooks:
            h.begin(list(self.committed))

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    @property
    def room(self) -> int:
        """New tokens still allowed: by the token limit and by the context window."""
        room = self.max_new - len(self.new)
        return room if self.window is None else min(room, self.window - len(self.committed))

    def cut(self, tokens: Sequence[int], kinds: Sequence[str]) -> tuple[list[int], list[str]]:
        """What of a step's tokens is emitted: up to the first EOS (included), at most ``room``."""
        stop = next((i + 1 for i, t in enumerate(tokens) if t in self.eos), None)
        keep = min(len(tokens) if stop is None else stop, self.room)
        if stop is not None and keep == stop:
            self.finish_reason = "eos"
        elif keep >= self.room:
            self.finish_reason = "length" if len(self.new) + keep >= self.max_new else "context"
        return list(tokens[:keep]), list(kinds[:keep])

    def append(self, tokens: list[int], kinds: list[str]) -> None:
        self.committed.extend(tokens)
        self.new.extend(tokens)
        self.kinds.extend(kinds)
        for h in self.hooks:
            h.commit(list(tokens))
        if self.on_commit:
            self.on_commit(tokens, kinds)

    def close(self, failed: bool = False) -> None:
        """``end`` every hook, or ``abort`` them when the generation raised."""
        for h in self.hooks:
            (h.abort if failed else h.end)(list(self.committed))


# _emitted_path_note: a shaper records a step's path only as far as it was emitted. Nodes past an
# EOS end nothing, and a replay of the trace (sim.replay), whose text stops at the EOS, cannot see
# them: a cross-request method's estimator would learn from them in the run and not in its replay,
# and the two would part at the next prompt.


def _fit(tree: DraftTree, seq: _Sequence) -> DraftTree:
    """``tree`` without the nodes that could never be emitted: past the token limit or
    the target's context window (the bonus token takes one place of ``room``)."""
    depth_cap = seq.room - 1
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
    """Generate up to ``max_new_tokens`` tokens after ``prompt`` (non-empty ids in the
    target's vocabulary), drafting at most ``budget`` nodes a step; stops right after
    the first of ``eos_token_ids`` it emits, or when the sequence fills the target's
    context window (``GenerationResult.finish_reason``). Every tree is checked before
    the pass (:func:`check_tree`). ``observe_k``: top-k of each processed position shown
    to the sources; ``on_commit(tokens, kinds)``: each step's new tokens (streaming);
    ``recorder``: one dict per step (trace recording for ``sim``). If anything raises,
    the sources and the shaper hear ``abort`` instead of ``end``."""
    ids = check_prompt(prompt, target.vocab_size, target.max_positions)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    budget, watchers = check_budget(budget), _watchers(sources)
    passes = {"argmax_only": verifier.argmax_only and target.argmax_only_logits,
              "bounded": verifier.reads_bounds and target.bounded_logits}
    stats, t_start = GenerationStats(lossless=bool(verifier.lossless)), time.perf_counter()
    seq = _Sequence(ids, max_new_tokens, eos_token_ids, target.max_positions, [*sources, shaper], on_commit)
    try:
        logits = _prefill(target, seq.committed, watchers, observe_k)
        first = verifier.verify(DraftTree([seq.committed[-1]], [-1]), logits[None]).bonus
        stats.forward_calls, stats.time_prefill = 1, time.perf_counter() - t_start
        seq.append(*seq.cut([first], ["bonus"]))
        while not seq.done:
            t0, context = time.perf_counter(), len(seq.committed)
            drafted = check_tree(shaper.shape(seq.committed, sources, budget), seq.committed[-1], budget,
                                 target.vocab_size, shaper)
            tree = _fit(drafted, seq)
            t1 = time.perf_counter()
            logits = target.forward_tree(tree, **passes)
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
            shaper.record(tree, verdict.accepted[: len(tokens)])  # as far as emitted: see _emitted_path_note
            seq.append(tokens, kinds)
            stats.add_times((t0, t1, t2, t3, time.perf_counter()), tree.num_nodes, context)
    except BaseException:
        seq.close(failed=True)
        raise
    seq.close()
    stats.finish(len(seq.new), time.perf_counter() - t_start)
    return GenerationResult(tokens=seq.new, stats=stats, kinds=seq.kinds, finish_reason=seq.finish_reason)
