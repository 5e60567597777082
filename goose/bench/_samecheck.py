"""``goose check-sampling``: goose's sampling methods against transformers' own sampling
on a real model, by a seeded two-sample test of emitted-token frequencies per position."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["homogeneity_pvalue", "sample_first_tokens", "two_sample_check"]


def homogeneity_pvalue(a: Counter, b: Counter) -> float:
    """Chi-square test that two samples of tokens come from one law: a 2 x K table of
    counts, tokens expected fewer than 5 times in either row pooled into one column
    (so the chi-square approximation holds). 1.0 when fewer than two columns remain."""
    from scipy import stats

    keys = sorted(set(a) | set(b), key=lambda k: -(a.get(k, 0) + b.get(k, 0)))
    table = np.array([[a.get(k, 0) for k in keys], [b.get(k, 0) for k in keys]], dtype=float)  # [2, K]
    total = table.sum(axis=0)
    expected_min = np.minimum(total * table[0].sum(), total * table[1].sum()) / table.sum()
    big = expected_min >= 5
    cols = [table[:, big]] + ([table[:, ~big].sum(axis=1, keepdims=True)] if (~big).any() else [])
    merged = np.concatenate(cols, axis=1)
    merged = merged[:, merged.sum(axis=0) > 0]
    if merged.shape[1] < 2:
        return 1.0
    return float(stats.chi2_contingency(merged, correction=False).pvalue)


def sample_first_tokens(model: Any, ids: Sequence[int], method: str, n: int, positions: int, temperature: float,
                        top_p: float, seed: int, progress: bool = True, batch: int = 1) -> list[tuple[int, ...]]:
    """``n`` seeded samples of the first ``positions`` emitted tokens after ``ids``:
    ``method="ar"`` is transformers' ``model.generate(do_sample=True)`` (one batched
    call after ``torch.manual_seed(seed)``), else a goose method (``NAME`` or
    ``NAME/VERIFIER``) with seeds ``seed .. seed + n - 1``, one generation at a time or,
    with ``batch`` > 1, as the rows of best-of-``batch`` batches
    (:func:`~goose.hf.generate_batch`, one shared prefill each). Both stop at the
    model's EOS: a sample ends after it."""
    import goose.hf as gh

    eos = set(gh.eos_ids(model, None))
    if method == "ar":
        torch.manual_seed(seed)
        x = torch.tensor([list(ids)] * n)
        with torch.inference_mode():
            out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=True, temperature=temperature,
                                 top_p=top_p, top_k=None, max_new_tokens=positions)
        rows = out[:, len(ids):].tolist()
        return [tuple(row[: next((i + 1 for i, t in enumerate(row) if t in eos), len(row))]) for row in rows]

    name, _, verifier = method.partition("/")
    session = gh.Session(model, reuse_prompt=True)  # every sample starts from the same prompt
    if batch > 1:
        out: list[tuple[int, ...]] = []
        for s in tqdm(range(0, n, batch), desc=f"{method} (rows of {batch})", disable=not progress):
            rows = session.generate_batch([list(ids)], method=name, n=min(batch, n - s), verifier=verifier or None,
                                          temperature=temperature, top_p=top_p, seed=seed + s,
                                          max_new_tokens=positions, tokenizer=None, label=f"{method} {s}")
            out += [tuple(r.tokens) for r in rows]
        return out
    return [tuple(session.generate(list(ids), method=name, verifier=verifier or None, temperature=temperature,
                                   top_p=top_p, seed=seed + s, max_new_tokens=positions).tokens)
            for s in tqdm(range(n), desc=method, disable=not progress)]


def two_sample_check(model: Any, ids: Sequence[int], methods: Sequence[str], n: int = 1000, positions: int = 4,
                     temperature: float = 0.8, top_p: float = 1.0, seed: int = 0, alpha: float = 1e-3,
                     progress: bool = True, batch: int = 1) -> dict:
    """Each method's emitted tokens at positions 1..``positions`` against ``ar``'s, by
    :func:`homogeneity_pvalue` per position. A lossless method fails one test with
    probability ``alpha``; over the ``len(methods) * positions`` tests of a run, at
    most ``len(methods) * positions * alpha`` (Bonferroni). ``batch`` > 1 draws goose's
    samples as the rows of best-of-``batch`` batches."""
    t0 = time.perf_counter()
    ref = sample_first_tokens(model, ids, "ar", n, positions, temperature, top_p, seed + 10**6, progress)
    rows = {}
    for m in methods:
        got = sample_first_tokens(model, ids, m, n, positions, temperature, top_p, seed, progress, batch)
        p = [homogeneity_pvalue(Counter(s[i] for s in got if len(s) > i), Counter(s[i] for s in ref if len(s) > i))
             for i in range(positions)]
        rows[m] = {"pvalues": p, "passed": all(x > alpha for x in p)}
    return {"prompt_tokens": len(ids), "samples": n, "batch": batch, "positions": positions, "temperature": temperature,
            "top_p": top_p, "seed": seed, "alpha_per_test": alpha, "tests": len(methods) * positions,
            "family_false_positive_bound": len(methods) * positions * alpha, "methods": rows,
            "seconds": time.perf_counter() - t0}
