"""Sampling verifiers compared on the very same trees (``goose compare-verifiers``), and
drawn children against their deterministic control on the very same nodes
(``goose compare-drafting``).

A benchmark run per verifier cannot compare verifiers tree by tree: after the first step
each run samples its own text and drafts its own trees. Here one generation drafts the
trees (with the method's own verifier driving it) and, at every step, each compared
verifier verifies that step's tree and target logits ``repeats`` times with fresh random
numbers of its own: the mean accepted length per tree is an unbiased estimate of what
that verifier expects on that tree, and the per-tree differences are paired.

Drawing against top-k is compared the same way, and exactly: at every node that drew
children, the target's row there gives the probability that those children are
accepted, and the probability that the deterministic control (the same node's top-k
of the same ``q``) would have been; no second text, no Monte Carlo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..trees import DraftTree
from ..verify import (
    VERIFIERS,
    SamplingVerifier,
    Verdict,
    Verifier,
    children_acceptance,
    select_verifier,
    topk_acceptance,
)

__all__ = ["DraftingJudge", "SameTreeJudge", "drafting_gain", "same_tree_mat"]


class SameTreeJudge(Verifier):
    """Verifies with ``inner`` (which drives the generation); before that, verifies each
    tree with a drawn node ``repeats`` times with every verifier of ``judges`` and
    appends ``{name: mean accepted draft tokens}`` to :attr:`rows`."""

    reads_q = True
    reads_bounds = False

    def __init__(self, inner: Verifier, judges: dict[str, Verifier], repeats: int) -> None:
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        self.inner, self.judges, self.repeats = inner, judges, int(repeats)
        self.rows: list[dict[str, float]] = []

    def verify(self, tree: DraftTree, logits: torch.Tensor) -> Verdict:
        if tree.has_draws:
            self.rows.append({name: float(np.mean([len(j.verify(tree, logits).accepted) for _ in range(self.repeats)]))
                              for name, j in self.judges.items()})
        return self.inner.verify(tree, logits)


def same_tree_mat(model: Any, prompts: Sequence[Sequence[int]], method: str = "goose-stand",
                  verifiers: Sequence[str] = ("rrs", "traversal"), repeats: int = 20, temperature: float = 0.8,
                  top_k: int = 0, top_p: float = 1.0, seed: int = 0, max_new_tokens: int = 128,
                  progress: bool = True) -> dict:
    """Expected accepted draft tokens per tree of each verifier in ``verifiers`` (names of
    ``goose.verify.VERIFIERS`` that read q) on the drawn trees of ``method`` over
    ``prompts`` (token ids; prompt ``i`` seeded ``seed + i``), with the paired
    difference of each verifier from the first: mean and standard error over trees."""
    import goose.hf as gh

    bad = [v for v in verifiers if v not in VERIFIERS or not VERIFIERS[v].reads_q]
    if bad or len(verifiers) < 2:
        known = ", ".join(n for n, c in VERIFIERS.items() if c.reads_q)
        raise ValueError(f"compare two or more verifiers that read q ({known}); got {', '.join(verifiers)}")
    rows: list[dict[str, float]] = []
    target = gh.HFTarget(model)
    for i, ids in enumerate(tqdm(prompts, desc=method, disable=not progress)):
        judges = {v: select_verifier(v, True, temperature, top_k, top_p, seed + 10**6 * (k + 1) + i)
                  for k, v in enumerate(verifiers)}
        judge = SameTreeJudge(select_verifier(None, True, temperature, top_k, top_p, seed + i), judges, repeats)
        gh.generate(model, list(ids), method=method, verifier=judge, temperature=temperature, top_k=top_k,
                    top_p=top_p, seed=seed + i, max_new_tokens=max_new_tokens, target=target)
        rows += judge.rows
    if not rows:
        raise ValueError(f"{method} drafted no tree with a drawn node on these prompts")
    table = np.array([[r[v] for v in verifiers] for r in rows])  # [trees, verifiers]
    first = verifiers[0]
    out = {"method": method, "trees": len(rows), "repeats": repeats, "temperature": temperature, "top_k": top_k,
           "top_p": top_p, "seed": seed, "max_new_tokens": max_new_tokens, "prompts": len(prompts),
           "mean_accepted": {v: float(table[:, j].mean()) for j, v in enumerate(verifiers)}, "vs_" + first: {}}
    for j, v in enumerate(verifiers[1:], start=1):
        d = table[:, j] - table[:, 0]
        out["vs_" + first][v] = {"mean_difference": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d)))
                                 if len(d) > 1 else float("nan"),
                                 "ratio_of_mat": float((1 + table[:, j].mean()) / (1 + table[:, 0].mean()))}
    return out


class DraftingJudge(Verifier):
    """Verifies with ``inner`` (a :class:`~goose.verify.SamplingVerifier` that reads q,
    which drives the generation); before that, at every node of the tree that drew
    children, computes exactly, from the target's row there processed as ``inner``
    processes it, the probability that its children as drawn are accepted
    (:func:`~goose.verify.children_acceptance`) and that its deterministic control is
    (:func:`~goose.verify.topk_acceptance`). It appends to :attr:`rows` the tuple
    ``(depth, drawn, top-k, overlap, q-top-1, p-max)``: besides the two acceptances,
    what decides between them, namely ``1 - TV(p, q)`` (slot 1's acceptance averaged
    over its draw, when the node has no deterministic child), the target mass of
    ``q``'s most likely token and the target's own largest probability."""

    reads_q = True
    reads_bounds = False

    def __init__(self, inner: SamplingVerifier) -> None:
        self.inner = inner
        self.rows: list[tuple[int, float, float, float, float, float]] = []

    def verify(self, tree: DraftTree, logits: torch.Tensor) -> Verdict:
        for u in sorted(tree.q):
            if not any(tree.drawn[c] for c in tree.children(u)):
                continue
            p = self.inner.row_probs(logits[u])  # [vocab]
            ids, probs = (np.asarray(a) for a in tree.q[u])
            q = probs / probs.sum()  # the node's law over ids, as slot_law reads it
            self.rows.append((int(tree.depths[u]), children_acceptance(tree, u, p), topk_acceptance(tree, u, p),
                              float(np.minimum(p[ids], q).sum()), float(p[ids[np.argmax(q)]]), float(p.max())))
        return self.inner.verify(tree, logits)


def drafting_gain(model: Any, prompts: Sequence[Sequence[int]], method: str = "goose-stand", temperature: float = 0.8,
                  top_k: int = 0, top_p: float = 1.0, seed: int = 0, max_new_tokens: int = 128, samples: int = 1,
                  progress: bool = True) -> dict:
    """What drawing children from ``q`` buys over taking its top-k, node by node: over
    the drawn trees of ``method`` on ``prompts``, the mean exact probability that a
    node's drawn children are accepted (recursive rejection sampling) and that its
    deterministic control's are (sample-and-match on the same deterministic children
    and as many top tokens of the same ``q``), at the root (reached at every step) and
    below, with the standard error of the paired difference.

    ``samples``: generations per prompt (sample ``j`` of prompt ``i`` seeded
    ``seed + i * samples + j``), sharing one :class:`~goose.methods.Memory` per prompt,
    so a cross-request method (``stand-shared``) drafts the later samples from a table
    the earlier ones filled, as in best-of-N; with ``samples > 1`` the result also
    splits the nodes into the first sample and the later ones."""
    import goose.hf as gh
    from goose.methods import Memory

    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rows: list[tuple] = []
    target = gh.HFTarget(model)
    for i, ids in enumerate(tqdm(prompts, desc=method, disable=not progress)):
        memory = Memory()
        for j in range(samples):
            s = seed + i * samples + j
            judge = DraftingJudge(select_verifier(None, True, temperature, top_k, top_p, s))
            gh.generate(model, list(ids), method=method, verifier=judge, temperature=temperature, top_k=top_k,
                        top_p=top_p, seed=s, max_new_tokens=max_new_tokens, target=target, memory=memory)
            rows += [(r[0], j, *r[1:]) for r in judge.rows]
    if not rows:
        raise ValueError(f"{method} drew no children on these prompts (does it draw from q at T > 0?)")
    table = np.array(rows)  # [nodes, (depth, sample, drawn, top-k, overlap, q-top-1, p-max)]
    out = {"method": method, "nodes": len(rows), "temperature": temperature, "top_k": top_k, "top_p": top_p,
           "seed": seed, "max_new_tokens": max_new_tokens, "prompts": len(prompts), "samples": samples,
           "by_depth": _gains(table, {"root": table[:, 0] == 0, "below": table[:, 0] > 0, "all": table[:, 0] >= 0})}
    if samples > 1:
        out["by_sample"] = _gains(table, {"first": table[:, 1] == 0, "later": table[:, 1] > 0})
    return out


def _gains(table: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per named row mask of ``table`` (columns: depth, sample, drawn, top-k, overlap,
    q-top-1, p-max): the nodes, both mean acceptances, their ratio, the standard error of
    the paired difference, and:

    * ``best_of_both``: the mean of the larger of the two per node, the most that any
      rule choosing per node between drawing and top-k could reach, even one that
      knew the target's row;
    * ``overlap`` (``1 - TV(p, q)``), ``q_top1`` (``p`` of ``q``'s most likely token)
      and ``p_max`` (``p``'s largest probability), means over the nodes."""
    out = {}
    for name, pick in parts.items():
        part = table[pick]
        if not len(part):
            continue
        drawn, topk = part[:, 2], part[:, 3]
        best = np.maximum(drawn, topk)
        d = drawn - topk
        out[name] = {"nodes": len(part), "drawn": float(drawn.mean()), "topk": float(topk.mean()),
                     "difference_se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan"),
                     "ratio": _ratio(drawn.mean(), topk.mean()), "best_of_both": float(best.mean()),
                     "best_of_both_ratio": _ratio(best.mean(), topk.mean()),
                     **{k: float(part[:, c].mean()) for c, k in ((4, "overlap"), (5, "q_top1"), (6, "p_max"))}}
    return out


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("inf")
