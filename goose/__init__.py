"""goose: training-free, lossless speculative decoding with anisotropic draft trees.

One decoding step: token sources propose candidates (:mod:`goose.sources`), a tree
shaper turns them into a draft tree under a node budget (:mod:`goose.trees`), the
target scores every node in one forward pass, and a verifier keeps the accepted
path plus one bonus token (:mod:`goose.verify`). :mod:`goose.theory` says what a
tree is worth; :mod:`goose.methods` names the ready-made combinations (and yours);
:mod:`goose.engine` sets up each generation from one validated request
(:class:`GenerationRequest`) and runs the decode loop; :mod:`goose.testing` checks
plug-ins against the contracts.
"""

from .engine import GenerationRequest
from .methods import Drafting, Memory, Method, MethodContext, get_method, register_method
from .sources import ContextNGramSource, Lifecycle, Observation, Proposal, RecyclingSource, TokenSource
from .trees import (
    SHAPERS,
    AcceptanceEstimator,
    BalancedShaper,
    BestFirstShaper,
    ChainShaper,
    DraftTree,
    GoosePaperShaper,
    SpineShaper,
    TreeBuilder,
    TreeShaper,
    make_shaper,
)
from .verify import GreedyVerifier, LooseVerifier, Sampling, SamplingVerifier, Verdict, Verifier

__version__ = "0.1.0"


def __getattr__(name: str):
    # the transformers adapter is imported only when used
    if name in ("generate", "generate_batch", "load_model", "HFTarget", "Session"):
        from . import hf

        return getattr(hf, name)
    raise AttributeError(f"module 'goose' has no attribute {name!r}")

__all__ = [
    "SHAPERS",
    "AcceptanceEstimator",
    "BalancedShaper",
    "BestFirstShaper",
    "ChainShaper",
    "ContextNGramSource",
    "DraftTree",
    "Drafting",
    "GenerationRequest",
    "GoosePaperShaper",
    "GreedyVerifier",
    "HFTarget",
    "Lifecycle",
    "LooseVerifier",
    "Memory",
    "Method",
    "MethodContext",
    "Observation",
    "Proposal",
    "RecyclingSource",
    "Sampling",
    "SamplingVerifier",
    "Session",
    "SpineShaper",
    "TokenSource",
    "TreeBuilder",
    "TreeShaper",
    "Verdict",
    "Verifier",
    "generate",
    "generate_batch",
    "get_method",
    "load_model",
    "make_shaper",
    "register_method",
]
