"""Sampling verifiers compared on the very same trees (``goose compare-verifiers``).

A benchmark run per verifier cannot compare verifiers tree by tree: after the first step
each run samples its own text and drafts its own trees. Here one generation drafts the
trees (with the method's own verifier driving it) and, at every step, each compared
verifier verifies that step's tree and target logits ``repeats`` times with fresh random
numbers of its own: the mean accepted length per tree is an unbiased estimate of what
that verifier expects on that tree, and the per-tree differences are paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..trees import DraftTree
from ..verify import VERIFIERS, Verdict, Verifier, select_verifier

__all__ = ["SameTreeJudge", "same_tree_mat"]


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
