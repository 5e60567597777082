"""Draft trees and the shapers that build them.

:class:`DraftTree` is the plain data of one step. Shapers: :class:`ChainShaper`
(one chain), :class:`BalancedShaper` (isotropic control, Token Recycling's static
tree), :class:`SpineShaper` (GOOSE: context spine + recycled branches),
:class:`BestFirstShaper` (the exact optimum under the current acceptance estimates)
and :class:`GoosePaperShaper` (the released GOOSE rules); :class:`StochasticShaper`
draws children from the sources' draft distributions (STAND, delayed expansion).
"""

from ._auto import AutoBudgetShaper
from ._base import CANDIDATE_FLOOR, MAX_NODE_BUDGET, TreeShaper, check_budget, path_probabilities, source_by_name
from ._estimate import AcceptanceEstimator, tagged
from ._paper import GoosePaperShaper, harmonic_split, paper_confidence
from ._registry import SHAPERS, ShaperSpec, make_shaper, shaper_spec
from ._shapers import BalancedShaper, BestFirstShaper, ChainShaper, NoDraftShaper, SpineShaper
from ._stochastic import StochasticShaper
from ._template import TOKEN_RECYCLING_TEMPLATE
from ._tree import ROOT_SOURCE, DraftTree, TreeBuilder

__all__ = [
    "CANDIDATE_FLOOR",
    "MAX_NODE_BUDGET",
    "ROOT_SOURCE",
    "SHAPERS",
    "TOKEN_RECYCLING_TEMPLATE",
    "AcceptanceEstimator",
    "AutoBudgetShaper",
    "BalancedShaper",
    "BestFirstShaper",
    "ChainShaper",
    "DraftTree",
    "GoosePaperShaper",
    "NoDraftShaper",
    "ShaperSpec",
    "SpineShaper",
    "StochasticShaper",
    "TreeBuilder",
    "TreeShaper",
    "check_budget",
    "harmonic_split",
    "make_shaper",
    "path_probabilities",
    "paper_confidence",
    "shaper_spec",
    "source_by_name",
    "tagged",
]
