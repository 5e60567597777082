"""Properties of goose.theory and of the shapers that rely on it (docs/theory.md)."""

import heapq

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from goose import theory
from goose.sources import Proposal, TokenSource
from goose.trees import BalancedShaper, BestFirstShaper, DraftTree
from goose.verify import GreedyVerifier, Verdict, check_logits

from .strategies import assert_property_fails, candidate_trees, draft_trees

# -- best-first is optimal ---------------------------------------------------------------


def by_local_acceptance(parents, accept, budget):
    """Deliberately wrong: grows the tree by a(v) instead of the path probability P(v)."""
    kids = {}
    for v in range(1, len(parents)):
        kids.setdefault(parents[v], []).append(v)
    chosen, heap = [0], [(-accept[c], c) for c in kids.get(0, [])]
    heapq.heapify(heap)
    while heap and len(chosen) <= budget:
        _, v = heapq.heappop(heap)
        if accept[v] > 0:
            chosen.append(v)
            for c in kids.get(v, []):
                heapq.heappush(heap, (-accept[c], c))
    return chosen


def check_best_first_is_optimal(best_first):
    @given(candidate_trees(), st.integers(1, 7))
    def prop(tree, budget):
        parents, accept = tree
        chosen = best_first(parents, accept, budget)
        assert len(chosen) - 1 <= budget
        assert all(parents[v] in chosen[:i] for i, v in enumerate(chosen) if v)  # a subtree
        prob = theory.path_probabilities(parents, accept)
        value = float(prob[chosen[1:]].sum())
        optimum, _ = theory.brute_force_optimum(parents, accept, budget)
        assert value == pytest.approx(optimum, abs=1e-12)

    prop()


def test_best_first_equals_brute_force_for_budgets_up_to_7():
    check_best_first_is_optimal(theory.best_first)


def test_optimality_property_catches_local_greedy():
    assert_property_fails(check_best_first_is_optimal, by_local_acceptance)


# -- union dominance, through the real BestFirstShaper -------------------------------------


class WorldSource(TokenSource):
    """Proposes the children of a node that this source covers, with their true a(v)."""

    def __init__(self, name, world, covered):
        self.name, self.world, self.covered = name, world, covered

    def propose(self, context, path=()):
        return [
            Proposal((tok,), (a,), self.name)
            for tok, a, node in self.world.get(tuple(path), [])
            if node in self.covered
        ]


@st.composite
def two_source_worlds(draw):
    parents, accept = draw(candidate_trees(max_nodes=12))
    n = len(parents)
    world, path_of = {}, {0: ()}
    for v in range(1, n):
        tok = sum(1 for u in range(1, v) if parents[u] == parents[v])  # distinct among siblings
        world.setdefault(path_of[parents[v]], []).append((tok, accept[v], v))
        path_of[v] = path_of[parents[v]] + (tok,)
    flags = [draw(st.sampled_from(["a", "b", "ab"])) for _ in range(n)]
    cover_a = {v for v in range(n) if "a" in flags[v]}
    cover_b = {v for v in range(n) if "b" in flags[v]}
    return world, path_of, parents, accept, cover_a, cover_b


def tree_value(tree: DraftTree, world) -> float:
    """E[A] of a shaped tree under the world's true acceptances."""
    a = {path + (tok,): acc for path, kids in world.items() for tok, acc, _ in kids}
    accept = [1.0] + [a[tuple(int(tree.tokens[u]) for u in tree.path_to(v))] for v in range(1, tree.num_nodes)]
    return theory.expected_accepted(tree.parents, accept)


class FirstSourceOnly(BestFirstShaper):
    """Deliberately wrong: drops every source but the first."""

    def shape(self, context, sources, budget):
        return super().shape(context, sources[:1], budget)


def check_union_dominance(make_shaper):
    @given(two_source_worlds(), st.integers(1, 6))
    def prop(case, budget):
        world, _, parents, accept, cover_a, cover_b = case
        src_a, src_b = WorldSource("a", world, cover_a), WorldSource("b", world, cover_b)
        union = tree_value(make_shaper().shape([0], [src_a, src_b], budget), world)
        only_a = tree_value(BestFirstShaper().shape([0], [src_a], budget), world)
        only_b = tree_value(BestFirstShaper().shape([0], [src_b], budget), world)
        assert union >= max(only_a, only_b) - 1e-12
        # and the shaper's tree is the optimum of the pooled candidate tree
        reach = {0}
        for v in range(1, len(parents)):
            if parents[v] in reach and (v in cover_a or v in cover_b):
                reach.add(v)
        sub = sorted(reach)
        pos = {v: i for i, v in enumerate(sub)}
        optimum, _ = theory.brute_force_optimum(
            [-1] + [pos[parents[v]] for v in sub[1:]], [accept[v] for v in sub], budget
        )
        assert union == pytest.approx(optimum, abs=1e-12)

    prop()


def test_union_dominance_best_first_beats_either_source():
    check_union_dominance(BestFirstShaper)


def test_union_dominance_property_catches_a_dropped_source():
    assert_property_fails(check_union_dominance, FirstSourceOnly)


# -- accepted length is monotone under tree inclusion ---------------------------------------


class FirstChildOnly(GreedyVerifier):
    """Deliberately wrong: only ever looks at the first child of a node."""

    def verify(self, tree, logits):
        check_logits(tree, logits)
        pred, node, acc = logits.argmax(-1).tolist(), 0, []
        while tree.children(node) and int(tree.tokens[tree.children(node)[0]]) == pred[node]:
            node = tree.children(node)[0]
            acc.append(node)
        return Verdict(tuple(acc), tuple(int(tree.tokens[v]) for v in acc), pred[node])


def monotone_case(verifier, big, keep, logits):
    """The pathwise monotonicity claim on one tree: pruning ``big`` to the nodes ``keep``
    (a subtree, root included) never lengthens the accepted path."""
    pos = {v: i for i, v in enumerate(keep)}
    small = DraftTree(big.tokens[keep], [-1] + [pos[int(big.parents[v])] for v in keep[1:]])
    n_small = len(verifier.verify(small, logits[keep]).accepted)
    n_big = len(verifier.verify(big, logits).accepted)
    assert n_big >= n_small  # pathwise, not only in expectation
    return small


def check_monotone(verifier):
    @given(draft_trees(max_nodes=10, vocab=4), st.data())
    def prop(big, data):
        keep = [0]
        for v in range(1, big.num_nodes):
            if int(big.parents[v]) in keep and data.draw(st.booleans()):
                keep.append(v)
        logits = torch.tensor(data.draw(st.lists(st.lists(st.integers(0, 3), min_size=4, max_size=4),
                                                 min_size=big.num_nodes, max_size=big.num_nodes)),
                              dtype=torch.float32)
        small = monotone_case(verifier, big, keep, logits)
        accept = data.draw(st.lists(st.floats(0, 1), min_size=big.num_nodes, max_size=big.num_nodes))
        accept[0] = 1.0
        assert theory.expected_accepted(big.parents, accept) >= theory.expected_accepted(
            small.parents, [accept[v] for v in keep]) - 1e-12

    prop()


def test_accepted_length_is_monotone_under_inclusion():
    check_monotone(GreedyVerifier())


def test_monotonicity_property_catches_first_child_walk():
    # the smallest tree the broken walk gets wrong: the target wants the root's second child;
    # pruned to that child alone it is accepted, in the full tree the walk never looks at it
    big = DraftTree([0, 1, 2], [-1, 0, 0])
    logits = torch.tensor([[0.0, 0.0, 3.0, 0.0]] * 3)
    monotone_case(GreedyVerifier(), big, [0, 2], logits)  # the real walk keeps the claim
    with pytest.raises(AssertionError):
        monotone_case(FirstChildOnly(), big, [0, 2], logits)


# -- the two-source model: closed form, balanced trees, anisotropy -----------------------

models = st.tuples(
    st.floats(0.05, 0.95),
    st.lists(st.floats(0.01, 0.5), min_size=1, max_size=4).map(lambda b: sorted(b, reverse=True)),
).filter(lambda m: m[0] + sum(m[1]) <= 1.0)


@given(models, st.integers(1, 40))
def test_closed_form_threshold_describes_the_optimum(model, budget):
    alpha, betas = model
    shape = theory.optimal_shape(alpha, betas, budget)
    assert sum(shape.branch_nodes) + shape.spine_length == budget
    assert shape.value == pytest.approx(theory.expected_accepted(shape.parents, shape.accept))
    tau = shape.threshold
    length, branches = theory.threshold_shape(alpha, betas, tau)
    above_len, above = theory.threshold_shape(alpha, betas, min(1.0, tau * (1 + 1e-9)))
    assert above_len + sum(above) <= budget <= length + sum(branches)
    assert above_len <= shape.spine_length <= length


class RankSource(TokenSource):
    """Rank j proposes a token with acceptance betas[j] at every node (a positional model)."""

    name = "recycled"

    def __init__(self, betas):
        self.betas = betas

    def propose(self, context, path=()):
        return [Proposal((j,), (b,), self.name, f"rank{j}") for j, b in enumerate(self.betas)]


@given(models, st.integers(1, 60), st.sampled_from([1, 3, 5]))
def test_balanced_value_matches_the_balanced_shaper(model, budget, k):
    _, betas = model
    tree = BalancedShaper(k=k).shape([0], [RankSource(betas)], budget)
    accept = [1.0] + [betas[int(tree.tokens[v])] for v in range(1, tree.num_nodes)]
    assert theory.expected_accepted(tree.parents, accept) == pytest.approx(
        theory.balanced_value(betas, budget, k))
    assert theory.optimal_shape(0.0, betas, budget).value >= theory.balanced_value(betas, budget, k) - 1e-12


def test_anisotropy_appears_with_a_gap_and_not_without():
    betas = [0.12, 0.06, 0.03]
    gap = theory.optimal_shape(0.6, betas, 32)
    assert gap.spine_length >= 6 and gap.value > 1.12 * theory.balanced_value(betas, 32, 3)
    deep = theory.optimal_shape(0.9, [0.05, 0.03], 32)
    assert deep.spine_length > 12  # depth far beyond log_k(B) when alpha is high
    # no gap (alpha = beta_1): the spine is no deeper than the deepest path of the
    # one-source (positional, Sequoia-like) optimum that treats it as one more rank
    flat = theory.optimal_shape(0.12, betas, 32)
    positional = theory.optimal_shape(0.0, [0.12, *betas], 32)
    deepest = max(len(_ancestors(positional.parents, v)) for v in range(len(positional.parents)))
    assert flat.spine_length <= deepest < gap.spine_length


def _ancestors(parents, v):
    out = []
    while parents[v] >= 0:
        out.append(parents[v])
        v = parents[v]
    return out


def test_best_budget_trades_acceptance_for_cost():
    cpu = theory.CostCurve([1, 2, 8, 16, 32, 64], [0.037, 0.052, 0.054, 0.062, 0.091, 0.15])
    gpu = theory.CostCurve.flat()
    value = lambda b: theory.optimal_shape(0.6, [0.12, 0.06, 0.03], b).value  # noqa: E731
    budgets = [1, 2, 4, 8, 16, 32, 64]
    assert theory.best_budget(value, gpu, budgets)[0] == 64
    assert theory.best_budget(value, cpu, budgets)[0] < 32


@pytest.mark.parametrize("alpha, betas", [(1.2, [0.1]), (0.5, [0.3, 0.4]), (0.8, [0.3]), (-0.1, [0.1])])
def test_bad_model_parameters(alpha, betas):
    with pytest.raises(ValueError):
        theory.optimal_shape(alpha, betas, 4)


def test_cost_curve_validation_and_interpolation():
    with pytest.raises(ValueError):
        theory.CostCurve([2, 1], [0.1, 0.2])
    c = theory.CostCurve([1, 3], [1.0, 2.0])
    assert c(2) == 1.5 and c(5) == 3.0
    assert np.isclose(theory.chain_value(0.5, 3), 0.875)


@given(st.lists(st.floats(0.01, 1.0), min_size=1, max_size=6), st.integers(1, 3),
       st.one_of(st.none(), st.floats(0.0, 4000.0)), st.integers(0, 2**31 - 1))
def test_cost_curve_prices_many_sizes_as_it_prices_one(seconds, rows, context, seed):
    """``CostCurve.at`` (what ``auto`` reads each step) gives ``c(n, context)`` bit for
    bit at every size: between the measured points, past the last one (extrapolated),
    below the first context, between contexts and past the last."""
    rng = np.random.default_rng(seed)
    tokens = np.cumsum(rng.integers(1, 5, len(seconds)))
    table = [np.array(seconds) * (1 + 0.3 * r) for r in range(rows)]
    contexts = sorted(rng.choice(np.arange(1, 2048), rows, replace=False).tolist()) if rows > 1 else None
    c = theory.CostCurve(tokens.tolist(), table if rows > 1 else table[0], contexts)
    ns = np.arange(1, int(tokens[-1]) + 12)
    assert c.at(ns, context=context).tolist() == [c(int(n), context=context) for n in ns]


def test_the_many_sizes_check_catches_a_curve_that_does_not_extrapolate(monkeypatch):
    def flat(self, n, context=None):  # np.interp alone: flat past the last point
        return np.interp(np.asarray(n, dtype=np.float64), self.tokens, self._rows[0])

    monkeypatch.setattr(theory.CostCurve, "at", flat)
    assert_property_fails(test_cost_curve_prices_many_sizes_as_it_prices_one)


def test_cost_curve_prices_a_prompt_by_its_measured_prefills():
    """A prompt is priced by the prefills the curve measured (joined to the first row's
    small passes, along the last segment past them), not by the draft passes
    extrapolated; the prefills survive JSON and ``monotone``, and a curve without them
    says so."""
    c = theory.CostCurve([1, 2, 32], [[0.1, 0.1, 0.2], [0.1, 0.12, 0.25]], contexts=[256, 1024],
                         prefill=[(1024, 4.0), (256, 0.5)])
    assert c.prefill_cost(2) == 0.1 and c.prefill_cost(17) == pytest.approx(0.15)  # a short prompt: a small pass
    assert c.prefill_cost(144) == pytest.approx(0.35) and c.prefill_cost(640) == 2.25  # then the measured prefills
    assert c.prefill_cost(2048) == pytest.approx(8.667, 1e-3)
    back = theory.CostCurve.from_json(c.to_json())
    assert back.to_json() == c.to_json() and back.prefill.tolist() == [[256, 0.5], [1024, 4.0]]
    assert c.monotone().prefill_cost(640) == 2.25
    assert theory.CostCurve([1], [0.1]).prefill_cost(100) is None and "prefill" not in theory.CostCurve([1], [0.1]).to_json()
    for bad in ([(256, 0.0)], [(256, 1.0), (256, 2.0)], [(1, 2, 3)], [(1, 2), (3,)], [("a", 1)], [5]):
        with pytest.raises(ValueError, match="prefill holds"):
            theory.CostCurve([1], [0.1], prefill=bad)
