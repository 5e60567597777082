"""Parametric source models: a simulated target and the sources that draft for it.

One simulated step is a :class:`World`: an implicit, infinite tree of token paths
below the root. At a node, the target's greedy choice is a categorical draw over
the node's candidates: the spine token (only on the spine, when a context match
exists) with probability ``alpha_d``, the recycled candidate of rank ``j`` with
probability ``betas[j]``, and an unproposed token with the rest. What the sources
propose (the step's *layout*: is there a match, where do the sources overlap) is
drawn first; the target's choice at every node of the shaped tree is drawn after
the tree is fixed. Siblings are mutually exclusive by construction (their
probabilities sum to at most 1).

Token ids inside a world: ``0`` = a token no source proposed, ``1`` = the spine
token, ``2 + j`` = the recycled candidate of rank ``j``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from goose.sources import Proposal, TokenSource
from goose.theory import check_model

__all__ = ["ChainModel", "RecycledModel", "SimulationModel", "World", "WorldSource"]

OTHER, SPINE = 0, 1


@dataclass(frozen=True)
class ChainModel:
    """A context source: one chain per step when a match exists.

    Attributes:
        alpha: acceptance of the first chain token given its parent was accepted.
        decay: ``alpha_d = alpha * decay**(d - 1)`` at depth d.
        match_prob: probability that a match exists at all in a step.
        max_len: tokens per proposal (the source is asked again when it runs out).
    """

    alpha: float
    decay: float = 1.0
    match_prob: float = 1.0
    max_len: int = 20

    def accept(self, depth: int) -> float:
        return self.alpha * self.decay ** (depth - 1)


@dataclass(frozen=True)
class RecycledModel:
    """A recycled source: ``betas[j]`` = acceptance of the rank-j candidate, any node.

    ``overlap`` is the probability that, at a spine node, the rank-0 candidate is
    the spine token itself (both sources propose the same token: one node).
    """

    betas: tuple[float, ...]
    overlap: float = 0.0


@dataclass(frozen=True)
class SimulationModel:
    """The sources of a simulation and the target they draft for.

    Validated as probabilities with sibling sums <= 1. To simulate your own source,
    subclass it and extend :meth:`source_names`, :meth:`candidates` (what the target
    may choose at a node, with probabilities) and :meth:`propose` (what your source
    says there); use token ids >= 100 for your candidates. See
    ``tests/test_sim.py::KeywordModel``.
    """

    chain: ChainModel | None
    recycled: RecycledModel | None

    def source_names(self) -> list[str]:
        """Names of the simulated sources."""
        return (["context"] if self.chain else []) + (["recycled"] if self.recycled else [])

    def candidates(self, world: World, path: tuple[int, ...]) -> list[tuple[int, float]]:
        """``(token, probability)`` of every token the target may choose after ``path``
        (distinct tokens; probabilities sum to at most 1; the rest is "no source")."""
        out: list[tuple[int, float]] = []
        if world.on_spine(path):
            out.append((SPINE, self.chain.accept(len(path) + 1)))
        if self.recycled is not None:
            skip_first = world.overlaps(path)
            out += [(2 + j, b) for j, b in enumerate(self.recycled.betas) if not (j == 0 and skip_first)]
        return out

    def propose(self, world: World, source: str, path: tuple[int, ...]) -> list[Proposal]:
        """What the source called ``source`` proposes after ``path`` (true confidences)."""
        if source == "context":
            if not world.on_spine(path):
                return []
            chain = self.chain
            conf = tuple(chain.accept(len(path) + i + 1) for i in range(chain.max_len))
            return [Proposal((SPINE,) * chain.max_len, conf, source, "chain")]
        if source == "recycled":
            return [
                Proposal((SPINE if (j == 0 and world.overlaps(path)) else 2 + j,), (b,), source, f"rank{j}")
                for j, b in enumerate(self.recycled.betas)
            ]
        return []

    def __post_init__(self) -> None:
        alpha = self.chain.alpha if self.chain else 0.0
        betas = self.recycled.betas if self.recycled else ()
        check_model(alpha, betas, self.chain.decay if self.chain else 1.0)
        for name, x in (
            ("match_prob", self.chain.match_prob if self.chain else 1.0),
            ("overlap", self.recycled.overlap if self.recycled else 0.0),
        ):
            if not 0.0 <= x <= 1.0:
                raise ValueError(f"{name} = {x} is not a probability in [0, 1]")
        if self.chain is not None and self.chain.max_len < 1:
            raise ValueError("max_len must be >= 1")


class World:
    """One simulated step: what the sources propose (its layout) and, through
    :meth:`candidates`, what the target may choose at each node."""

    def __init__(self, model: SimulationModel, rng: np.random.Generator, max_depth: int) -> None:
        self.model = model
        chain, rec = model.chain, model.recycled
        self.has_match = bool(chain is not None and rng.random() < chain.match_prob)
        # what the sources will propose is fixed up front (the "layout" of the step)
        if rec is not None and rec.overlap > 0 and self.has_match:
            self._overlap = rng.random(max_depth + 1) < rec.overlap  # [spine depth]
        else:
            self._overlap = np.zeros(0, dtype=bool)
        self.layout = (self.has_match, self._overlap.tobytes())

    def on_spine(self, path: Sequence[int]) -> bool:
        return self.has_match and all(t == SPINE for t in path)

    def overlaps(self, path: tuple[int, ...]) -> bool:
        """Whether the rank-0 recycled candidate at this spine node is the spine token."""
        d = len(path)
        return d < self._overlap.size and bool(self._overlap[d]) and self.on_spine(path)

    def candidates(self, path: tuple[int, ...]) -> list[tuple[int, float]]:
        """``(token, acceptance)`` of every candidate at the node reached by ``path``."""
        return self.model.candidates(self, path)

    def accept_prob(self, path: tuple[int, ...], token: int) -> float:
        """True a(v) of a node carrying ``token`` below ``path`` (0 if never chosen)."""
        return dict(self.candidates(path)).get(token, 0.0)


class WorldSource(TokenSource):
    """A token source that reads the current world; confidences are the true values
    (the simulator predicts what a tree shape earns when acceptance is known)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.kind = "spine" if name == "context" else "branch"
        self.world: World | None = None

    def propose(self, context: Sequence[int], path: Sequence[int] = ()) -> list[Proposal]:
        if self.world is None or not context:
            return []
        return self.world.model.propose(self.world, self.name, tuple(int(t) for t in path))
