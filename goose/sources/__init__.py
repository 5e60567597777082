"""Token sources: who proposes candidate tokens for the draft tree.

Built-ins: :class:`ContextNGramSource` (prompt lookup over the context) and
:class:`RecyclingSource` (Token Recycling's adjacency table). Subclass
:class:`TokenSource` for your own.
"""

from ._base import Lifecycle, Observation, Proposal, TokenSource
from ._ngram import ContextNGramSource, ngram_confidence
from ._recycling import RecyclingSource

__all__ = [
    "ContextNGramSource",
    "Lifecycle",
    "Observation",
    "Proposal",
    "RecyclingSource",
    "TokenSource",
    "ngram_confidence",
]
