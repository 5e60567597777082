"""Theory: expected accepted length, optimal trees, anisotropy, hardware-aware budgets.

Every claim here is proved in docs/theory.md and checked by tests/test_theory.py.
"""

from ._shapes import (
    CostCurve,
    OptimalShape,
    balanced_value,
    best_budget,
    chain_value,
    check_model,
    optimal_shape,
    threshold_shape,
)
from ._trees import (
    best_first,
    best_first_lazy,
    brute_force_optimum,
    expected_accepted,
    path_probabilities,
)

__all__ = [
    "CostCurve",
    "OptimalShape",
    "balanced_value",
    "best_budget",
    "best_first",
    "best_first_lazy",
    "brute_force_optimum",
    "chain_value",
    "check_model",
    "expected_accepted",
    "optimal_shape",
    "path_probabilities",
    "threshold_shape",
]
