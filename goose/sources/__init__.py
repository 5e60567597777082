"""Token sources: who proposes candidate tokens for the draft tree.

Built-ins: :class:`ContextNGramSource` (prompt lookup over the context) and
:class:`RecyclingSource` (Token Recycling's adjacency table), :class:`SuffixSource`
(counts-based chains after the longest earlier suffix, optionally over earlier
responses: :class:`SuffixTable`), all deterministic, and
:class:`StochasticNGramSource` (STAND's n-gram table of target distributions, whose
proposals carry a draft distribution ``q``). Subclass
:class:`TokenSource` for your own.
"""

from ._base import DraftDist, Lifecycle, Observation, Proposal, TokenSource
from ._ngram import ContextNGramSource, ngram_confidence
from ._recycling import RecyclingSource
from ._stochastic import StochasticNGramSource
from ._suffix import SuffixSource, SuffixTable, suffix_confidence

__all__ = [
    "ContextNGramSource",
    "DraftDist",
    "Lifecycle",
    "Observation",
    "Proposal",
    "RecyclingSource",
    "StochasticNGramSource",
    "SuffixSource",
    "SuffixTable",
    "TokenSource",
    "ngram_confidence",
    "suffix_confidence",
]
