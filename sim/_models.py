"""Source models: a simulated target and the sources that draft for it.

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

Where a node sits (its *place*) can change what the recycled source earns there:
``root`` (no context match this step), ``root-match``, ``spine`` (a node of the
context chain) and ``branch`` (below a recycled node). Acceptance that comes in
bursts is a :class:`RegimeModel`: one :class:`SimulationModel` per state, the state
being how many draft tokens the previous step accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise

import numpy as np

from goose.sources import Proposal, TokenSource
from goose.theory import check_model
from goose.trees import CANDIDATE_FLOOR

__all__ = ["PLACES", "RANKED", "ROW_CLASSES", "WIDE", "ChainModel", "RecycledModel", "RegimeModel", "SimulationModel", "World",
           "WorldSource"]

OTHER, SPINE = 0, 1
PLACES = ("root", "root-match", "spine", "branch")
WIDE = CANDIDATE_FLOOR
"""A row's candidates at or above this confidence count towards its width: the floor
under which the template shapers drop candidates (:data:`goose.trees.CANDIDATE_FLOOR`)."""
ROW_CLASSES = ("none", "one", "two", "wide")
"""Row classes of :attr:`RecycledModel.widths`: no row at the node, and rows with one,
two, or three or more candidates at :data:`WIDE` or above."""
RANKED = 3
"""Rank groups of :attr:`RecycledModel.ranked`: a node that is its parent's rank-0, rank-1,
or rank-2-or-lower recycled candidate."""


@dataclass(frozen=True)
class ChainModel:
    """A context source: one chain per step when a match exists.

    Attributes:
        alpha: acceptance of the first chain token given its parent was accepted.
        decay: ``alpha_d = alpha * decay**(d - 1)`` at depth d.
        match_prob: probability that a match exists at all in a step.
        max_len: tokens per proposal (the source is asked again when it runs out).
        hazards: if given, ``alpha_d = hazards[d - 1]`` instead (the chance that the
            d-th chain token is accepted given the first d - 1 were; the last value
            holds below), and ``alpha`` must equal ``hazards[0]``. Real copies that
            have started tend to go on, so real hazards rise with depth, which no
            ``decay <= 1`` can express.
        lengths: if given, ``lengths[d - 1]`` is the chance that a step's chain (when
            there is a match) is at least ``d`` tokens long, and no chain is longer
            than ``len(lengths)``; if empty, chains never end.
    """

    alpha: float
    decay: float = 1.0
    match_prob: float = 1.0
    max_len: int = 20
    hazards: tuple[float, ...] = ()
    lengths: tuple[float, ...] = ()

    def accept(self, depth: int) -> float:
        if self.hazards:
            return self.hazards[min(depth, len(self.hazards)) - 1]
        return self.alpha * self.decay ** (depth - 1)

    @classmethod
    def from_hazards(cls, hazards: Sequence[float], match_prob: float = 1.0, max_len: int = 20) -> ChainModel:
        """A chain with depth-conditional acceptances ``hazards`` (depth 1 first)."""
        hz = tuple(float(h) for h in hazards)
        if not hz:
            raise ValueError("hazards is empty: give at least the depth-1 acceptance")
        return cls(hz[0], 1.0, float(match_prob), max_len, hz)


@dataclass(frozen=True)
class RecycledModel:
    """A recycled source: ``betas[j]`` = acceptance of the rank-j candidate, any node.

    ``overlap`` is the probability that, at a spine node, the rank-0 candidate is
    the spine token itself (both sources propose the same token: one node).
    ``places`` overrides ``betas`` by where the node sits (keys from ``PLACES``).

    ``widths`` models what a node's row looks like, by place: one ``(probability,
    betas)`` pair per row class of :data:`ROW_CLASSES` (no row; only rank 0 at
    :data:`WIDE` or more; ranks 0-1; ranks 0-2 or more), the betas those rows earn.
    A node draws its class when first asked, so a peaked row (one strong candidate)
    comes with a rank-0 acceptance of its own and near-nothing below it, as real
    rows do: shapers that drop candidates under a confidence floor then spend the
    budget elsewhere, as they do on real text. A place without ``widths`` uses its
    betas at every node. ``ranked[place][r][t]`` is the chance of each class at a node of
    that place that is its parent's rank-``r`` recycled candidate (``r`` capped at 2; a
    chain token counts as rank 0), ``t`` = 1 if the target takes it: a rarer candidate
    was seen less often, so more often it has no row at all (on SmolLM2's
    math_reasoning text, half of the rank-2 candidates below the root had none, against
    8% of the rank-0 ones), and a token the target takes has a row more often than one
    it passes over. Without it, the class probabilities of ``widths``.
    """

    betas: tuple[float, ...]
    overlap: float = 0.0
    places: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    widths: Mapping[str, tuple[tuple[float, tuple[float, ...]], ...]] = field(default_factory=dict)
    ranked: Mapping[str, tuple[tuple[tuple[float, ...], ...], ...]] = field(default_factory=dict)

    def at(self, place: str, row: int | None = None) -> tuple[float, ...]:
        """The rank acceptances at a node of this place (in a row of class ``row``)."""
        if row is not None and place in self.widths:
            return tuple(self.widths[place][row][1])
        return tuple(self.places.get(place, self.betas))


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
        if world.spine_child(path):
            out.append((SPINE, self.chain.accept(len(path) + 1)))
        if self.recycled is not None:
            skip_first = world.overlaps(path)
            out += [(2 + j, b) for j, b in enumerate(self._betas(world, path)) if not (j == 0 and skip_first)]
        return out

    def _betas(self, world: World, path: tuple[int, ...]) -> list[float]:
        """The recycled rank acceptances at a node: its place's, scaled down where they
        and the chain's child there would sum above 1 (only possible with places or
        hazards, which ``__post_init__`` cannot check against every depth)."""
        row = world.row_class(path)
        if row == 0:  # no row at this node: the source proposes nothing
            return []
        betas = list(self.recycled.at(world.place(path), row))
        if world.spine_child(path):
            room = 1.0 - self.chain.accept(len(path) + 1)
            total = sum(betas[1:] if world.overlaps(path) else betas)
            if total > room:
                betas = [b * room / total for b in betas]
        return betas

    def propose(self, world: World, source: str, path: tuple[int, ...]) -> list[Proposal]:
        """What the source called ``source`` proposes after ``path`` (true confidences)."""
        if source == "context":
            if not world.spine_child(path):
                return []
            n = int(min(self.chain.max_len, world.chain_len - len(path)))
            conf = tuple(self.chain.accept(len(path) + i + 1) for i in range(n))
            return [Proposal((SPINE,) * n, conf, source, "chain")]
        if source == "recycled":
            return [
                Proposal((SPINE if (j == 0 and world.overlaps(path)) else 2 + j,), (b,), source, f"rank{j}")
                for j, b in enumerate(self._betas(world, path))
            ]
        return []

    def to_json(self) -> dict:
        """Plain data: ``SimulationModel.from_json(m.to_json()) == m``."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> SimulationModel:
        chain, rec = data.get("chain"), data.get("recycled")
        return cls(
            None if chain is None else ChainModel(**{**chain, "hazards": tuple(chain.get("hazards", ())),
                                                     "lengths": tuple(chain.get("lengths", ()))}),
            None if rec is None else RecycledModel(
                tuple(rec["betas"]), rec.get("overlap", 0.0),
                {k: tuple(v) for k, v in rec.get("places", {}).items()},
                {k: tuple((float(p), tuple(b)) for p, b in v) for k, v in rec.get("widths", {}).items()},
                {k: tuple(tuple(tuple(float(x) for x in r) for r in pair) for pair in v)
                 for k, v in rec.get("ranked", {}).items()}),
        )

    def __post_init__(self) -> None:
        alpha = self.chain.alpha if self.chain else 0.0
        betas = self.recycled.betas if self.recycled else ()
        if (self.chain and (self.chain.hazards or self.chain.lengths)) or (self.recycled and (self.recycled.places
                                                                                         or self.recycled.widths)):
            check_model(alpha, (), self.chain.decay if self.chain else 1.0)
            self._check_places_and_hazards()
        else:
            check_model(alpha, betas, self.chain.decay if self.chain else 1.0)
        for name, x in (
            ("match_prob", self.chain.match_prob if self.chain else 1.0),
            ("overlap", self.recycled.overlap if self.recycled else 0.0),
        ):
            if not 0.0 <= x <= 1.0:
                raise ValueError(f"{name} = {x} is not a probability in [0, 1]")
        if self.chain is not None and self.chain.max_len < 1:
            raise ValueError("max_len must be >= 1")

    def _check_places_and_hazards(self) -> None:
        chain, rec = self.chain, self.recycled
        hazards = chain.hazards if chain else ()
        if hazards and chain.alpha != hazards[0]:
            raise ValueError(f"alpha = {chain.alpha} must equal hazards[0] = {hazards[0]} (see ChainModel.from_hazards)")
        for name, values in (("hazards", hazards), ("lengths", chain.lengths if chain else ())):
            for d, h in enumerate(values):
                if not 0.0 <= h <= 1.0:
                    raise ValueError(f"{name}[{d}] = {h} is not a probability in [0, 1]")
        if chain and any(a < b for a, b in pairwise(chain.lengths)):
            raise ValueError(f"lengths must be non-increasing (they are P(length >= d)), got {list(chain.lengths)}")
        unknown = set(rec.places) - set(PLACES) if rec else set()
        if unknown:
            raise ValueError(f"unknown places {sorted(unknown)}: places are {', '.join(PLACES)}")
        for place in PLACES if rec else ():
            check_model(0.0, rec.at(place))  # probabilities, non-increasing, sum <= 1
        for place, classes in (rec.widths.items() if rec else ()):
            if place not in PLACES or len(classes) != len(ROW_CLASSES):
                raise ValueError(f"widths[{place!r}] needs a place of {PLACES} and one (probability, betas) per row class "
                                 f"{ROW_CLASSES}")
            probs = [p for p, _ in classes]
            if any(not 0.0 <= p <= 1.0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
                raise ValueError(f"widths[{place!r}]: the row classes' probabilities must sum to 1, got {probs}")
            for _, betas in classes:
                if any(not 0.0 <= b <= 1.0 for b in betas) or sum(betas) > 1.0 + 1e-9:
                    raise ValueError(f"widths[{place!r}]: betas must be probabilities summing to at most 1, got {betas}")
        for place, rows in (rec.ranked.items() if rec else ()):
            if place not in rec.widths or len(rows) != RANKED or any(
                    len(pair) != 2 or any(len(r) != len(ROW_CLASSES) or abs(sum(r) - 1.0) > 1e-6 or min(r) < 0
                                          for r in pair) for pair in rows):
                raise ValueError(f"ranked[{place!r}] needs widths there and, for ranks 0, 1, 2 and below, two "
                                 f"distributions over {ROW_CLASSES} (a candidate the target passed over, and one it took)")


@dataclass(frozen=True)
class RegimeModel:
    """Acceptance that comes in bursts: the step's sources and target are those of
    ``states[s]``, where ``s`` is how many draft tokens the previous step accepted,
    capped at ``len(states) - 1`` (the first step is in state 0). One state is the
    plain, step-independent :class:`SimulationModel`."""

    states: tuple[SimulationModel, ...]

    def __post_init__(self) -> None:
        if not self.states:
            raise ValueError("a regime model needs at least one state")
        names = {tuple(m.source_names()) for m in self.states}
        if len(names) > 1:
            raise ValueError(f"every state must have the same sources, got {sorted(names)}")

    def next_state(self, accepted: int) -> int:
        """The state after a step that accepted ``accepted`` draft tokens."""
        return min(int(accepted), len(self.states) - 1)

    def source_names(self) -> list[str]:
        return self.states[0].source_names()

    def to_json(self) -> dict:
        return {"states": [m.to_json() for m in self.states]}

    @classmethod
    def from_json(cls, data: Mapping) -> RegimeModel:
        return cls(tuple(SimulationModel.from_json(m) for m in data["states"]))


class World:
    """One simulated step: what the sources propose (its layout) and, through
    :meth:`candidates`, what the target may choose at each node."""

    def __init__(self, model: SimulationModel, rng: np.random.Generator, max_depth: int) -> None:
        self.model = model
        chain, rec = model.chain, model.recycled
        self.has_match = bool(chain is not None and rng.random() < chain.match_prob)
        self.chain_len = float("inf")
        if self.has_match and chain.lengths:  # drawn only when given: older models keep their streams
            self.chain_len = int(np.sum(rng.random() < np.asarray(chain.lengths)))
        # what the sources will propose is fixed up front (the "layout" of the step)
        if rec is not None and rec.overlap > 0 and self.has_match:
            self._overlap = rng.random(max_depth + 1) < rec.overlap  # [spine depth]
        else:
            self._overlap = np.zeros(0, dtype=bool)
        self.layout = (self.has_match, self.chain_len, self._overlap.tobytes())
        self.rng = rng  # what the lazy draws below come from (row classes, the target's choices)
        self._rows: dict[tuple[int, ...], int] = {}  # row class per node, drawn when first asked
        self._choices: dict[tuple[int, ...], int] = {}  # the target's token per node, drawn when first asked

    @property
    def cacheable(self) -> bool:
        """Whether :attr:`layout` fixes everything the sources will say (no row classes
        left to draw), so a stateless shaper's tree can be reused across such steps."""
        rec = self.model.recycled
        return rec is None or not rec.widths

    def on_spine(self, path: Sequence[int]) -> bool:
        """Whether the node reached by ``path`` is the root of a matched step or a chain node."""
        return self.has_match and len(path) <= self.chain_len and all(t == SPINE for t in path)

    def spine_child(self, path: Sequence[int]) -> bool:
        """Whether the chain goes on below the node reached by ``path``."""
        return len(path) < self.chain_len and self.on_spine(path)

    def place(self, path: Sequence[int]) -> str:
        """Where the node reached by ``path`` sits (one of ``PLACES``)."""
        if not path:
            return "root-match" if self.has_match else "root"
        return "spine" if self.on_spine(path) else "branch"

    def choice(self, path: tuple[int, ...]) -> int:
        """The target's greedy token after ``path``, drawn once from :meth:`candidates`."""
        if path not in self._choices:
            u, acc, pick = self.rng.random(), 0.0, OTHER
            for tok, p in self.candidates(path):
                acc += p
                if u < acc:
                    pick = tok
                    break
            self._choices[path] = pick
        return self._choices[path]

    def row_class(self, path: tuple[int, ...]) -> int | None:
        """The class (index into :data:`ROW_CLASSES`) of the recycled row at the node
        reached by ``path``, drawn once per node; ``None`` where its place has no
        ``widths``."""
        rec = self.model.recycled
        place = self.place(path)
        if rec is None or place not in rec.widths:
            return None
        row = self._rows.get(path)
        if row is None:
            if path and place in rec.ranked:  # by the node's rank, and whether the target took it
                rank, taken = min(max(path[-1] - 2, 0), RANKED - 1), int(self.choice(path[:-1]) == path[-1])
                probs = np.array(rec.ranked[place][rank][taken])
            else:
                probs = np.array([p for p, _ in rec.widths[place]])
            row = self._rows[path] = int(min(np.searchsorted(np.cumsum(probs), self.rng.random(), side="right"),
                                             len(probs) - 1))
        return row

    def overlaps(self, path: tuple[int, ...]) -> bool:
        """Whether the rank-0 recycled candidate at this spine node is the spine token."""
        d = len(path)
        return d < self._overlap.size and bool(self._overlap[d]) and self.spine_child(path)

    def candidates(self, path: tuple[int, ...]) -> list[tuple[int, float]]:
        """``(token, acceptance)`` of every candidate at the node reached by ``path``."""
        return self.model.candidates(self, path)

    def accept_prob(self, path: tuple[int, ...], token: int) -> float:
        """True a(v) of a node carrying ``token`` below ``path`` (0 if never chosen)."""
        return dict(self.candidates(path)).get(token, 0.0)

    def propose(self, source: str, path: tuple[int, ...]) -> list[Proposal]:
        """What the source called ``source`` proposes after ``path``."""
        return self.model.propose(self, source, path)


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
        return self.world.propose(self.name, tuple(int(t) for t in path))
