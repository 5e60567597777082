"""Token sources: who proposes candidate tokens for the draft tree.

Built-ins: :class:`ContextNGramSource` (prompt lookup over the context) and
:class:`RecyclingSource` (Token Recycling's adjacency table), both deterministic, and
:class:`StochasticNGramSource` (STAND's n-gram table of target distributions, whose
proposals carry a draft distribution ``q``). Subclass
:class:`TokenSource` for your own.
"""

from ._base import DraftDist, Lifecycle, Observation, Proposal, TokenSource
from ._ngram import ContextNGramSource, ngram_confidence
from ._recycling import RecyclingSource
from ._stochastic import StochasticNGramSource

__all__ = [
    "ContextNGramSource",
    "DraftDist",
    "Lifecycle",
    "Observation",
    "Proposal",
    "RecyclingSource",
    "StochasticNGramSource",
    "TokenSource",
    "ngram_confidence",
]
