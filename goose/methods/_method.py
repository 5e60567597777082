"""What a decoding method is: a factory of fresh drafting parts plus its budget rules.

Vocabulary: a **method** (:class:`Method`) is registered once under a name; each
generation asks its factory for a :class:`Drafting` (fresh, stateful sources and
shaper, and the node budget per step), passing a :class:`MethodContext`: which
column or session it serves, the requested budget, whether the call is a warm-up,
and a :class:`Memory` owned by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..sources import TokenSource
from ..trees import AutoBudgetShaper, TreeShaper, check_budget

__all__ = ["AUTO_MAX_BUDGET", "Drafting", "Memory", "Method", "MethodContext"]

AUTO_MAX_BUDGET = 24
"""The largest tree ``--budget auto`` lets a shaper draft before cutting it by cost."""


class Memory:
    """Cross-request memory of one method, owned by whoever runs its generations (a
    bench column, a :class:`goose.hf.Session`, a server) and passed in explicitly.

    Only a method registered with ``cross_request=True`` is handed it; any other
    gets a fresh, throw-away one per generation, so the caller's stays empty. What a
    method keeps here is shared between requests: statistics of one user's text
    then shape (never change) another user's drafts, a privacy matter for serving.

    Example:
        >>> m = Memory()
        >>> table = m.setdefault("table", dict)
        >>> table["x"] = 1
        >>> m.setdefault("table", dict), len(m)
        ({'x': 1}, 1)
    """

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}

    def setdefault(self, key: str, factory: Callable[[], Any]) -> Any:
        """The value under ``key``, made by ``factory()`` the first time."""
        if key not in self._items:
            self._items[key] = factory()
        return self._items[key]

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        self._items.clear()


@dataclass(frozen=True)
class MethodContext:
    """What a method factory is told about the generation it drafts for.

    Attributes:
        label: the column or session label (``"goose@auto"``, or the method's name).
        budget: the requested budget: an integer, ``"auto"``, or ``None`` (the
            method's default).
        default_budget: the method's default node budget.
        warmup: the call only warms caches up; its result is thrown away.
        memory: the caller's :class:`Memory` for a cross-request method, a fresh one
            otherwise.
        temperature: the sampling temperature of the generation (0: greedy), which a
            stochastic drafter draws at.
        seed: the generation's seed, for a drafter's own generator.
        target: the :class:`goose.hf.HFTarget` of a :func:`goose.hf.generate` call
            (``target.model`` is the model), for a method that drafts with a model derived
            from it (``needs_target``): ``target.draft_source(name)`` is a draft-model
            token source on the target's bfloat16 copy. ``None`` elsewhere.
    """

    label: str
    budget: int | str | None = None
    default_budget: int = 8
    warmup: bool = False
    memory: Memory = field(default_factory=Memory)
    temperature: float = 0.0
    seed: int = 0
    target: Any = None

    @property
    def auto(self) -> bool:
        return self.budget == "auto"

    def node_budget(self) -> int:
        """Draft nodes per step: the requested integer, :data:`AUTO_MAX_BUDGET` for
        ``auto`` (the cost curve then cuts each tree), else the default."""
        if isinstance(self.budget, int):
            return self.budget
        return AUTO_MAX_BUDGET if self.auto else self.default_budget


@dataclass
class Drafting:
    """One generation's drafting parts: fresh sources and shaper, and the node budget."""

    sources: list[TokenSource]
    shaper: TreeShaper
    budget: int

    def __post_init__(self) -> None:
        self.sources = list(self.sources)
        bad = [type(s).__name__ for s in self.sources if not isinstance(s, TokenSource)]
        if bad:
            raise ValueError(f"a method's sources must be TokenSource objects, got {', '.join(bad)}")
        if not isinstance(self.shaper, TreeShaper):
            raise ValueError(f"a method's shaper must be a TreeShaper, got {type(self.shaper).__name__}")
        self.budget = check_budget(self.budget)

    def cut_by(self, cost: Callable[..., float]) -> Drafting:
        """These parts under ``budget="auto"``: the shaper wrapped in an
        :class:`~goose.trees.AutoBudgetShaper` that keeps, each step, the prefix of its
        tree that maximises tokens per second under ``cost`` (the measured curve). The
        one place ``auto`` is applied."""
        return Drafting(self.sources, AutoBudgetShaper(self.shaper, cost), self.budget)


Factory = Callable[[MethodContext], Drafting]


@dataclass(frozen=True)
class Method:
    """A named decoding method and its budget rules.

    Args:
        name: the registered name (``goose bench --methods NAME``).
        factory: ``factory(ctx) -> Drafting``, called once per generation.
        default_budget: draft nodes per step when no budget is requested.
        budgeted: a bench's ``--budget`` list applies to it when ``name@B`` is not
            given (``False``: it keeps its own size unless named with a budget).
        takes_budget: ``name@B`` and ``budget=B`` are allowed.
        auto: ``budget="auto"`` is allowed (the measured cost curve cuts each tree).
        cross_request: the factory is handed the caller's :class:`Memory`.
        sim_shaper: the shaper that simulates it (``sim``): a name of
            ``goose.trees.SHAPERS``, a function of the :class:`MethodContext`, or ``None``.
        sim_rows: its trees read the recycled rows' confidences through a floor
            (:class:`~goose.trees.BalancedShaper`'s ``min_confidence``, the release's
            ``min_score``), so the simulator fits it row classes too
            (``sim.fit_model(widths=True)``): a peaked row gets one child, and the
            budget goes deeper.
        tags: what the bench report compares it as: ``"both-sources"`` (drafts from
            the context and recycled sources), ``"context-only"``, ``"recycled-only"``
            (the single-source baselines of the either-source bound),
            ``"anisotropic"`` and ``"isotropic"`` (trees compared at equal budget).
        description: one line for help texts.
        needs_target: the factory drafts with a model derived from the target
            (:attr:`MethodContext.target`), so it runs only through :func:`goose.hf.generate`
            and its callers, not on :class:`goose.testing.ToyTarget`, in the simulator or in
            a replay.
    """

    name: str
    factory: Factory
    default_budget: int = 8
    budgeted: bool = True
    takes_budget: bool = True
    auto: bool = True
    cross_request: bool = False
    sim_shaper: str | Callable[[MethodContext], TreeShaper] | None = None
    sim_rows: bool = False
    tags: tuple[str, ...] = ()
    description: str = ""
    needs_target: bool = False

    def parse_budget(self, budget: int | str | None) -> int | str | None:
        """``budget`` as this method accepts it (an int in ``[1, MAX_NODE_BUDGET]``,
        ``"auto"`` or ``None``; a string of digits is read as an int), or ``ValueError``."""
        if budget is None:
            return None
        if not self.takes_budget:
            raise ValueError(f"method {self.name!r} drafts no tree of a chosen size and takes no budget")
        if budget == "auto":
            if not self.auto:
                raise ValueError(f"method {self.name!r} sizes its own trees: give it a node budget, not 'auto'")
            return "auto"
        if isinstance(budget, str):
            try:
                budget = int(budget)
            except ValueError:
                raise ValueError(f"budget of {self.name!r} must be an integer >= 1 or 'auto', got {budget!r}") from None
        try:
            return check_budget(budget)  # type: ignore[arg-type]
        except ValueError as err:
            raise ValueError(f"method {self.name!r}: {err}") from None

    check_budget = parse_budget  # deprecated name (goose <= 0.1): use parse_budget

    def requested_budget(self, text: str) -> int | str | None:
        """A command line's ``--budget``: ``"default"`` (the method's own), ``"auto"``
        (where the method allows it; its default otherwise), or an integer."""
        if text == "default" or (text == "auto" and not (self.auto and self.takes_budget)):
            return None
        return self.parse_budget(text)

    def context(self, label: str | None = None, budget: int | str | None = None, warmup: bool = False,
                memory: Memory | None = None, temperature: float = 0.0, seed: int = 0,
                target: Any = None) -> MethodContext:
        """The context of one generation; ``memory`` reaches the factory only if the
        method is ``cross_request``."""
        shared = memory if (self.cross_request and memory is not None) else Memory()
        return MethodContext(label or self.name, self.parse_budget(budget), self.default_budget, warmup, shared,
                             float(temperature), int(seed), target)

    def build(self, ctx: MethodContext | None = None, cost: Callable[..., float] | None = None) -> Drafting:
        """Fresh drafting parts for one generation, from the factory. A generation gets
        them through ``goose.engine.GenerationRequest.plan``, which also applies
        ``auto`` (:meth:`Drafting.cut_by`); ``cost`` is kept for older callers and does
        the same here."""
        ctx = ctx if ctx is not None else self.context()
        if self.needs_target and ctx.target is None:
            raise ValueError(f"method {self.name!r} drafts with a copy of the target model: run it through "
                             "goose.hf.generate (or goose bench), which passes the target")
        drafting = self.factory(ctx)
        if not isinstance(drafting, Drafting):
            raise ValueError(f"method {self.name!r}: its factory returned {type(drafting).__name__}, not a Drafting")
        if ctx.auto and cost is not None:
            return drafting.cut_by(cost)
        return drafting
