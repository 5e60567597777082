import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import goose
from goose.sources import ContextNGramSource, Observation, Proposal, RecyclingSource, TokenSource
from goose.testing import RandomSource, check_shaper
from goose.trees import (
    TOKEN_RECYCLING_TEMPLATE,
    AcceptanceEstimator,
    BalancedShaper,
    BestFirstShaper,
    ChainShaper,
    DraftTree,
    GoosePaperShaper,
    SpineShaper,
    TreeShaper,
    harmonic_split,
)

from .strategies import assert_property_fails

BUILTIN = {
    "chain": ChainShaper,
    "balanced-k3": BalancedShaper,
    "balanced-k5": lambda: BalancedShaper(k=5),
    "tr-template": BalancedShaper.token_recycling,
    "spine": lambda: SpineShaper(estimator=AcceptanceEstimator()),
    "best-first": lambda: BestFirstShaper(estimator=AcceptanceEstimator()),
    "paper": GoosePaperShaper,
}


class OneOverBudget(BestFirstShaper):
    """Deliberately wrong: spends one node more than the budget."""

    def shape(self, context, sources, budget):
        return super().shape(context, sources, budget + 1)


def check_random_proposals(make):
    @given(st.integers(0, 2**32 - 1), st.lists(st.integers(0, 9), min_size=1, max_size=30),
           st.integers(1, 40))
    def prop(seed, context, budget):
        sources = [RandomSource(seed, vocab=10, name="context"), RandomSource(seed + 1, vocab=10, name="recycled")]
        tree = make().shape(context, sources, budget)
        assert isinstance(tree, DraftTree) and tree.size <= budget
        assert int(tree.tokens[0]) == context[-1]
        DraftTree(tree.tokens, tree.parents)  # re-validates: parents first, distinct siblings

    prop()


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_every_shaper_is_valid_within_budget_for_random_proposals(name):
    check_random_proposals(BUILTIN[name])


def test_random_proposal_property_catches_budget_overrun():
    assert_property_fails(check_random_proposals, OneOverBudget)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_shapers_conform(name):
    check_shaper(BUILTIN[name])


def recycled_with(rows: dict[int, list[tuple[int, float]]], k=3, **kw) -> RecyclingSource:
    src = RecyclingSource(k=k, **kw)
    toks = sorted(rows)
    ids = np.array([[t for t, _ in rows[r]] for r in toks])
    probs = np.array([[p for _, p in rows[r]] for r in toks])
    src.observe(Observation(np.array(toks), -np.ones(len(toks), dtype=int), ids, probs))
    return src


def test_spine_falls_back_to_balanced_without_a_match_and_to_a_chain_without_rows():
    ctx = [1, 2, 3, 4]  # no repeated n-gram: no context match
    rec = recycled_with({4: [(5, 0.5), (6, 0.2), (7, 0.1)], 5: [(8, 0.4), (9, 0.3), (1, 0.1)]})
    sources = [ContextNGramSource((2,)), rec]
    spine = SpineShaper().shape(ctx, sources, 5)
    assert spine.tokens.tolist() == BalancedShaper(k=3).shape(ctx, sources, 5).tokens.tolist()
    ctx2 = [1, 2, 3, 1, 2]
    only_chain = SpineShaper().shape(ctx2, [ContextNGramSource((2,)), RecyclingSource()], 8)
    # a bare chain, extended past the first match by asking the context source again
    assert only_chain.tokens.tolist() == [2, 3, 1, 2, 3, 1, 2, 3, 1]
    assert set(only_chain.sources[1:]) == {"context"} and only_chain.depths.max() == 8


def test_spine_puts_branches_on_the_spine_when_the_spine_is_unsure():
    ctx = [1, 2, 3, 1, 2]
    rows = {2: [(7, 0.3), (8, 0.1), (9, 0.05)], 3: [(6, 0.3), (5, 0.2), (4, 0.1)],
            7: [(3, 0.5), (1, 0.1), (2, 0.05)]}
    tree = SpineShaper().shape(ctx, [ContextNGramSource((2,)), recycled_with(rows)], 6)
    # the match has confidence 0.375, so spine values are 0.375, 0.14, 0.053: the third
    # spine token loses to the root branch 7 (0.3), its child 3 (0.15) and others
    spine = [v for v in range(1, tree.num_nodes) if tree.sources[v] == "context"]
    assert [int(tree.tokens[v]) for v in spine] == [3, 1]
    branch = {tuple(int(tree.tokens[u]) for u in tree.path_to(v)) for v in range(1, tree.num_nodes)}
    assert {(7,), (7, 3), (8,), (3, 6)} <= branch and tree.size == 6


def test_best_first_merges_duplicates_and_keeps_the_chain():
    class Fixed(TokenSource):
        def __init__(self, name, props):
            self.name, self.props = name, props

        def propose(self, context, path=()):
            return self.props.get(tuple(path), [])

    a = Fixed("a", {(): [Proposal((5, 6, 7), (0.9, 0.9, 0.9), "a")]})
    b = Fixed("b", {(): [Proposal((5,), (0.95,), "b"), Proposal((4,), (0.5,), "b")]})
    tree = BestFirstShaper().shape([0], [a, b], 4)
    assert tree.tokens.tolist() == [0, 5, 6, 7, 4]  # one node for 5, chain continues
    assert tree.confidences[1] == pytest.approx(0.95)


def test_chain_shaper_extends_and_respects_budget():
    ctx = [1, 2, 3, 4, 5, 1, 2]
    tree = ChainShaper().shape(ctx, [ContextNGramSource((2,), max_tokens=2)], 6)
    assert tree.tokens.tolist() == [2, 3, 4, 5, 1, 2, 3]
    assert ChainShaper(extend=False).shape(ctx, [ContextNGramSource((2,), max_tokens=2)], 6).size == 2


def test_token_recycling_template_fills_80_nodes():
    rows = {t: [((t * 7 + j) % 97, 0.1) for j in range(8)] for t in range(97)}
    tree = BalancedShaper.token_recycling().shape([3], [recycled_with(rows, k=8)], 200)
    assert tree.size == 80 and len(TOKEN_RECYCLING_TEMPLATE) == 80
    assert np.bincount(tree.depths).tolist() == [1, 8, 21, 25, 15, 8, 3]


@pytest.mark.parametrize("make", [
    lambda est: ChainShaper(extend=True, estimator=est),
    lambda est: BalancedShaper(k=3, estimator=est),
    lambda est: BalancedShaper.token_recycling(estimator=est),
])
def test_estimator_corrects_confidences_never_the_shape(make):
    rows = {t: [((t * 7 + j) % 97, 0.3) for j in range(8)] for t in range(97)}
    ctx = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6]
    sources = [ContextNGramSource((2,), max_tokens=3), recycled_with(rows, k=8)]
    est = AcceptanceEstimator(prior_strength=1.0)
    plain, corrected = make(None).shape(ctx, sources, 12), make(est).shape(ctx, sources, 12)
    for _ in range(20):  # every drafted node rejected: the estimates fall below the sources' priors
        est.record(corrected, accepted=[])
    later = make(est).shape(ctx, sources, 12)
    assert later.size == plain.size > 1
    assert later.tokens.tolist() == plain.tokens.tolist() and later.parents.tolist() == plain.parents.tolist()
    assert corrected.confidences.tolist() == plain.confidences.tolist()  # no data yet: the sources' own
    for v in range(1, later.num_nodes):
        want = est.predict(later.sources[v], later.keys[v], int(later.depths[v]), float(plain.confidences[v]))
        assert later.confidences[v] == pytest.approx(want)
    # only the first level had opportunities (parent = root): those estimates moved down
    first = [v for v in range(1, later.num_nodes) if later.parents[v] == 0]
    assert all(later.confidences[v] < plain.confidences[v] for v in first)


def test_paper_preset_worked_numbers():
    assert harmonic_split(39 // 2, 20)[:4] == [5, 2, 1, 1]
    assert harmonic_split(25, 9) == [8, 4, 2, 2, 1, 1, 1, 1, 1]
    # a consensus match (conf = 1) gives an all-spine tree of node_budget + 1 nodes,
    # unless the hard budget passed to shape() is smaller
    ctx = [9, 1, 2, 3, 4, 5, 6, 7, 8] * 3 + [9, 1, 2, 3, 4]
    sources = [ContextNGramSource(max_tokens=20, name="context"),
               recycled_with({4: [(8, 0.5), (7, 0.2), (6, 0.1)]}, name="recycled")]
    tree = GoosePaperShaper(node_budget=10, max_extended_chain=10).shape(ctx, sources, 100)
    assert tree.size == 10 and set(tree.sources[1:]) == {"context"}
    assert GoosePaperShaper(node_budget=10, max_extended_chain=10).shape(ctx, sources, 6).size == 6


def test_paper_preset_ema_tiers_follow_spine_acceptance():
    shaper = GoosePaperShaper()
    tree = DraftTree([0, 1, 2, 3], [-1, 0, 1, 0], ["root", "context", "context", "recycled"])
    for _ in range(10):
        shaper.record(tree, accepted=[])
    assert shaper.ema < 0.2
    shaper.begin([])
    assert shaper.ema == 0.5


@pytest.mark.parametrize("make", list(BUILTIN.values()))
def test_budget_below_one_raises(make):
    sources = [ContextNGramSource(), RecyclingSource()]
    for bad in (0, -3, 1.5):
        with pytest.raises(ValueError, match="budget"):
            make().shape([1, 2, 3], sources, bad)


def test_bad_shaper_arguments_and_names():
    with pytest.raises(ValueError, match="k must be >= 1"):
        BalancedShaper(k=0)
    with pytest.raises(ValueError, match="unknown shaper 'wide'"):
        goose.make_shaper("wide")
    with pytest.raises(ValueError, match="cannot import"):
        goose.make_shaper("nowhere.Shaper")
    with pytest.raises(ValueError, match="needs a source named 'context'"):
        ChainShaper().shape([1], [RecyclingSource()], 3)
    assert isinstance(goose.make_shaper("goose.trees.ChainShaper"), TreeShaper)


def test_estimator_learns_conditional_acceptance():
    est = AcceptanceEstimator(prior_strength=1.0)
    tree = DraftTree([0, 1, 2, 3], [-1, 0, 1, 0], ["root", "c", "c", "r"], [1.0, 0.9, 0.9, 0.5],
                     keys=["", "n3", "n3", "rank0"])
    est.record(tree, accepted=[1])  # node 2's parent accepted, node 2 rejected; node 3 rejected
    # by confidence: group (c, bin 9) 1 of 2 accepted, (r, bin 5) 0 of 1; each node was expected at its prior.
    # by place: (c, n3, depth 1) 1 of 1 accepted against 0.9 expected: its failure rate scales by
    # (0 + 1) / (0.1 + 1); depth 2: 0 against 0.9, its rate scales by 1 / 1.9; (r, rank0, 1): by 1 / 1.5
    g = (1 + 0.9) / (2 + 1)
    assert est.predict("c", "n3", 1, prior=0.9) == pytest.approx(1 - (1 - g) / 1.1)
    assert est.predict("c", "n3", 2, prior=0.9) == pytest.approx(g / 1.9)
    assert est.predict("r", "rank0", 1, prior=0.5) == pytest.approx(0.5 / 2 / 1.5)
    assert est.predict("r", "rank0", 1, prior=0.05) == pytest.approx(0.05 / 1.5)  # an empty bin: the prior
    for _ in range(98):
        est.record(tree, accepted=[1])
    assert est.predict("c", "n3", 1, prior=0.9) > 0.95 and est.predict("c", "n3", 2, prior=0.9) < 0.05
    assert est.predict("r", "rank0", 1, prior=0.5) < 0.01
    assert est.rates()["c"] == pytest.approx(0.5)


def _recorded_estimator():
    est = AcceptanceEstimator(prior_strength=1.0, calibrate=True)
    tree = DraftTree([0, 1, 2, 3], [-1, 0, 1, 0], ["root", "c", "c", "r"], [1.0, 0.9, 0.9, 0.5],
                     keys=["", "n3", "n3", "rank0"])
    for accepted in ([1], [1, 2], [], [3]):
        est.record(tree, accepted)
    return est


ASKED = [("c", "n3", 1, 0.9), ("c", "n3", 2, 0.9), ("c", "n3", 2, 0.3), ("r", "rank0", 1, 0.5), ("r", "rank1", 2, 0.2)]


def test_an_estimator_carried_into_a_new_request_weighs_its_record_by_the_decay():
    fresh, whole = AcceptanceEstimator(prior_strength=1.0, calibrate=True), _recorded_estimator()
    forgot, kept = _recorded_estimator(), _recorded_estimator()
    forgot.carry(0.0)
    kept.carry(1.0)
    for ask in ASKED:
        assert forgot.predict(*ask) == fresh.predict(*ask)  # 0: as if nothing was recorded
        assert kept.predict(*ask) == whole.predict(*ask)  # 1: the whole record
    twice, once = _recorded_estimator(), _recorded_estimator()
    twice.carry(0.5)
    twice.carry(0.5)
    once.carry(0.25)
    assert [twice.predict(*a) for a in ASKED] == pytest.approx([once.predict(*a) for a in ASKED], rel=1e-12)
    half = _recorded_estimator()
    half.carry()  # the default weight, AcceptanceEstimator.CARRY
    assert AcceptanceEstimator.CARRY == 0.3 and half.factor("c") == pytest.approx((1.0 * 0.3 * 3 + 5.0) / (
        0.3 * _recorded_estimator()._source_predicted["c"] + 5.0))  # context: 3 of its 6 chances accepted
    assert all(fresh.predict(*a) != half.predict(*a) != whole.predict(*a) for a in ASKED[:2])
    with pytest.raises(ValueError, match="decay must lie in"):
        half.carry(1.5)


def test_estimator_pools_tagged_nodes_apart():
    est = AcceptanceEstimator(prior_strength=1.0)
    split = goose.trees.tagged("rank0", "split")
    tree = DraftTree([0, 1, 2], [-1, 0, 0], ["root", "r", "r"], [1.0, 0.5, 0.5], keys=["", "rank0", split])
    for _ in range(50):
        est.record(tree, accepted=[1])  # the lone guess accepted, the contradicted one not
    assert split == "rank0~split" and goose.trees.tagged("rank0", "") == "rank0"
    assert est.predict("r", "rank0", 1, prior=0.5) > 0.9
    assert est.predict("r", split, 1, prior=0.5) < 0.05


def test_best_first_tags_siblings_that_agree_or_split():
    # context copies 3 after 2; the recycled row after 2 holds 3 (agree) and 4 (split from the copy)
    ctx = [1, 2, 3, 9, 1, 2]
    sources = [ContextNGramSource((2,), max_tokens=1), recycled_with({2: [(3, 0.6), (4, 0.3)]}, k=2)]
    tree = BestFirstShaper(estimator=AcceptanceEstimator()).shape(ctx, sources, 2)
    keys = dict(zip(tree.tokens[1:].tolist(), tree.keys[1:], strict=True))
    # the copy's confidence is 0.375 (one 2-gram match, goose.sources.ngram_confidence): the recycled 0.6 wins
    assert keys == {3: "rank0~agree", 4: "rank1~split"} and tree.sources[1:] == ("recycled", "recycled")
    assert tree.priors[1:].tolist() == [0.6, 0.3]  # the source's own confidence
    alone = BestFirstShaper(estimator=AcceptanceEstimator()).shape(ctx, sources[1:], 2)
    assert alone.keys[1:] == ("rank0", "rank1")
    assert BestFirstShaper().shape(ctx, sources, 2).keys[1:] == tuple(keys.values())


def test_calibration_corrects_a_source_whose_priors_are_too_high():
    # counts that (almost) never move the estimates (a huge prior strength), priors 0.6, true
    # rate 0.2 (seeded): the estimates stay at the prior; the per-source factor brings them to the rate
    rng = np.random.default_rng(0)
    est, plain = AcceptanceEstimator(1e9, calibrate=True), AcceptanceEstimator(1e9)
    hits = 0
    for t in range(400):
        conf = est.predict("r", f"fresh{t}", 1, prior=0.6)
        tree = DraftTree([0, 7], [-1, 0], ["root", "r"], [1.0, conf], ["", f"fresh{t}"], priors=[1.0, 0.6])
        accepted = [1] if rng.random() < 0.2 else []
        hits += len(accepted)
        est.record(tree, accepted)
        plain.record(tree, accepted)
    assert est.factor("r") == pytest.approx((hits + 5.0) / (400 * 0.6 + 5.0), rel=1e-5)  # uncorrected: 400 x 0.6
    assert est.predict("r", "unseen", 1, prior=0.6) == pytest.approx(hits / 400, abs=0.03)
    assert abs(hits / 400 - 0.2) < 0.05
    assert plain.predict("r", "unseen", 1, prior=0.6) == pytest.approx(0.6) and plain.factor("r") == 1.0
    assert est.factor("c") == 1.0 and est.predict("c", "n3", 1, prior=0.6) == 0.6  # other sources untouched
    assert est.predict("r", "fresh0", 1, prior=1.0) <= 1.0


def test_auto_budget_keeps_the_prefix_with_the_best_rate():
    from goose import theory
    from goose.trees import AutoBudgetShaper

    class Fixed(TokenSource):
        name = "context"

        def propose(self, context, path=()):
            return [Proposal((1, 2, 3, 4), (0.9, 0.5, 0.5, 0.5), "context")] if not path else []

    src = [Fixed()]
    full = AutoBudgetShaper(BestFirstShaper(), theory.CostCurve.flat()).shape([0], src, 4)
    assert full.size == 4  # a flat cost: every node pays
    steep = AutoBudgetShaper(BestFirstShaper(), theory.CostCurve([1, 2], [1.0, 3.0])).shape([0], src, 4)
    assert steep.size == 0  # one more token costs 2x: no 0.9 draft pays for it
    # c(2)/c(1) = 1.5: (1 + 0.9) / 1.5 beats 1 / 1; adding 0.45 more for +0.5 cost does not
    mid = AutoBudgetShaper(BestFirstShaper(), theory.CostCurve([1, 2, 3], [1.0, 1.5, 2.0])).shape([0], src, 4)
    assert mid.tokens.tolist() == [0, 1]
    # measured at two context lengths: tokens are cheap after a short context, dear after a long one
    by_length = theory.CostCurve([1, 2], [[1.0, 1.0], [1.0, 3.0]], contexts=[10, 100])
    assert AutoBudgetShaper(BestFirstShaper(), by_length).shape([0] * 5, src, 4).size == 4
    assert AutoBudgetShaper(BestFirstShaper(), by_length).shape([0] * 100, src, 4).size == 0
    with pytest.raises(ValueError, match="contexts"):
        theory.CostCurve([1, 2], [[1.0, 1.0], [1.0, 3.0]], contexts=[100, 10])


def test_auto_budget_maximises_the_generations_rate_not_each_steps():
    from goose import theory
    from goose.trees import AutoBudgetShaper

    class Fixed(TokenSource):
        name = "context"

        def propose(self, context, path=()):
            return [Proposal((1, 2, 3, 4), (0.9, 0.5, 0.5, 0.5), "context")] if not path else []

    auto = AutoBudgetShaper(BestFirstShaper(), theory.CostCurve([1, 2, 3], [1.0, 1.5, 2.0]))
    first = auto.shape([0], [Fixed()], 4)
    assert first.size == 1 and auto.rate is None  # no history: the step's own best ratio, 1.9 / 1.5
    auto.record(first, [])  # the draft failed: 1 token for a cost of 1.5
    assert auto.rate == pytest.approx(1 / 1.5)
    # at that rate a second node (+0.45 tokens for +0.5 cost) earns more than the generation
    # does, though it lowers the step's own ratio (2.35 / 2.0 < 1.9 / 1.5)
    assert auto.shape([0], [Fixed()], 4).tokens.tolist() == [0, 1, 2]
    auto.begin([])
    assert auto.rate is None and auto.shape([0], [Fixed()], 4).size == 1
    with pytest.raises(ValueError, match="horizon"):
        AutoBudgetShaper(BestFirstShaper(), theory.CostCurve.flat(), horizon=0)


def test_auto_budget_conforms():
    from goose import theory
    from goose.trees import AutoBudgetShaper

    check_shaper(lambda: AutoBudgetShaper(BestFirstShaper(), theory.CostCurve([1, 8, 64], [1.0, 1.3, 3.0])))
