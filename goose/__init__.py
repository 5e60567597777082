"""goose: training-free, lossless speculative decoding with anisotropic draft trees.

One decoding step: token sources propose candidates (:mod:`goose.sources`), a tree
shaper turns them into a draft tree under a node budget (:mod:`goose.trees`), the
target scores every node in one forward pass, and a verifier keeps the accepted
path plus one bonus token (:mod:`goose.verify`). :mod:`goose.theory` says what a
tree is worth; :mod:`goose.testing` checks plug-ins against the contracts.
"""

from ._registry import SHAPERS, SOURCES, make_shaper, make_source
from .sources import ContextNGramSource, Observation, Proposal, RecyclingSource, TokenSource
from .trees import (
    AcceptanceEstimator,
    BalancedShaper,
    BestFirstShaper,
    ChainShaper,
    DraftTree,
    GoosePaperShaper,
    SpineShaper,
    TreeBuilder,
    TreeShaper,
)
from .verify import GreedyVerifier, LooseVerifier, SamplingVerifier, Verdict, Verifier

__version__ = "0.1.0"


def __getattr__(name: str):
    # the transformers adapter is imported only when used
    if name in ("generate", "load_model", "HFTarget"):
        from . import hf

        return getattr(hf, name)
    raise AttributeError(f"module 'goose' has no attribute {name!r}")

__all__ = [
    "SHAPERS",
    "SOURCES",
    "AcceptanceEstimator",
    "BalancedShaper",
    "BestFirstShaper",
    "ChainShaper",
    "ContextNGramSource",
    "DraftTree",
    "GoosePaperShaper",
    "GreedyVerifier",
    "HFTarget",
    "LooseVerifier",
    "Observation",
    "Proposal",
    "RecyclingSource",
    "SamplingVerifier",
    "SpineShaper",
    "TokenSource",
    "TreeBuilder",
    "TreeShaper",
    "Verdict",
    "Verifier",
    "generate",
    "load_model",
    "make_shaper",
    "make_source",
]
