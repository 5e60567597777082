"""Statistical helpers of goose's law tests."""

from __future__ import annotations

from collections import Counter

import numpy as np

__all__ = ["chi_square_pvalue"]


def chi_square_pvalue(counts: Counter, law: dict) -> float:
    """Chi-square goodness of fit of observed ``counts`` to an exact ``law`` (outcome ->
    probability). Outcomes expected fewer than 5 times are pooled into one bin so the
    chi-square approximation holds; returns 1.0 when fewer than two bins remain."""
    from scipy import stats

    n = sum(counts.values())
    keys = sorted(law, key=law.get, reverse=True)
    expected = np.array([law[k] for k in keys]) * n
    observed = np.array([counts.get(k, 0) for k in keys], dtype=float)
    big = expected >= 5
    exp = np.append(expected[big], expected[~big].sum())
    obs = np.append(observed[big], observed[~big].sum())
    if exp[-1] < 5:  # the pooled rest is itself too small: fold it into the last big bin
        exp, obs = exp[:-1], obs[:-1]
        if exp.size:
            exp[-1] += expected[~big].sum()
            obs[-1] += observed[~big].sum()
    if exp.size < 2:
        return 1.0
    return float(stats.chisquare(obs, exp * obs.sum() / exp.sum()).pvalue)


