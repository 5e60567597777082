"""Exact output laws of the verifiers for drafts that carry q, in float64.

Every outcome of drafting and verifying is enumerated (``enumerate_random_law``): the
drafter draws its children with the same replayed randomness the verifier uses, so
the law is of the code under test. Each emitted sequence is then continued by the
target to a fixed length (``completed_law``); a lossless verifier gives exactly the
target's own law of that many tokens.

Why these parameters: a vocabulary of 4 or 5 keeps enumeration to a fraction of a
second while allowing 3 drawn siblings plus a deterministic one; depth 2 gives
drawn children of drawn children (the residual of a node is used by its parent in
Traversal Verification); ``-inf`` logits and top-k / top-p make ``p`` zero where ``q``
is not, and ``q`` zero where ``p`` is not.
"""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from goose.trees import DraftTree
from goose.verify import (
    TorchRandomness,
    children_acceptance,
    completed_law,
    enumerate_random_law,
    process_logits,
    rejection_walk,
    topk_acceptance,
    traversal_walk,
)

WALKS = {"rrs": rejection_walk, "traversal": traversal_walk}


class Problem:
    """A random target (``p`` depends on the whole path) and a random drafter.

    ``config[d] = (deterministic, drawn)`` children per node at depth ``d``; the tree
    has depth ``len(config)``."""

    def __init__(self, seed: int, vocab: int, config, temperature=1.0, top_k=0, top_p=1.0, q_match=0.0):
        self.seed, self.vocab, self.config = seed, vocab, tuple(config)
        self.temperature, self.top_k, self.top_p, self.q_match = temperature, top_k, top_p, q_match
        self._p: dict = {}

    def _rng(self, tag, path):
        return np.random.default_rng([self.seed, tag, len(path), *path])

    def p_of(self, path) -> np.ndarray:  # [vocab] float64
        path = tuple(path)
        if path not in self._p:
            logits = self._rng(1, path).normal(0, 1.5, self.vocab)
            logits[self._rng(2, path).random(self.vocab) < 0.25] = -np.inf  # some impossible tokens
            if np.isinf(logits).all():
                logits[0] = 0.0
            scores = process_logits(torch.from_numpy(logits)[None], self.temperature, self.top_k, self.top_p)
            self._p[path] = scores.softmax(-1)[0].numpy()
        return self._p[path]

    def q_of(self, path, exclude) -> tuple[np.ndarray, np.ndarray]:
        rng = self._rng(3, path)
        ids = np.array([t for t in range(self.vocab) if t not in exclude and rng.random() < 0.8])
        if ids.size == 0:
            ids = np.array([t for t in range(self.vocab) if t not in exclude][:1])
        probs = rng.dirichlet(np.ones(ids.size))
        p = self.p_of(path)[ids]
        mixed = (1 - self.q_match) * probs + self.q_match * (p / p.sum() if p.sum() > 0 else probs)
        keep = mixed > 0
        return ids[keep], mixed[keep]

    def draft(self, rng, broken: str = "") -> DraftTree:
        tokens, parents, drawn, q = [0], [-1], [False], {}
        frontier = [(0, ())]
        while frontier:
            node, path = frontier.pop(0)
            if len(path) >= len(self.config):
                continue
            n_det, n_draw = self.config[len(path)]
            det = [int(self._rng(4, path).integers(self.vocab)) for _ in range(n_det)][:1]
            kids = [(t, False) for t in det]
            if n_draw:
                ids, probs = self.q_of(path, set(det))
                q[node] = (ids, probs)
                left = dict(zip(ids.tolist(), probs.tolist(), strict=True))
                for _ in range(min(n_draw, len(left))):
                    dense = np.zeros(self.vocab)
                    dense[list(left)] = list(left.values())
                    if broken == "argmax-drafter":  # says it drew from q, but takes the likeliest
                        x = int(dense.argmax())
                    else:
                        x = rng.sample(dense / dense.sum())
                    if broken == "picky-drafter" and x != int(dense.argmax()):
                        break  # keeps a drawn child only when it is q's likeliest token
                    kids.append((x, True))
                    del left[x]
            for tok, is_drawn in kids:
                tokens.append(tok)
                parents.append(node)
                drawn.append(is_drawn)
                frontier.append((len(tokens) - 1, path + (tok,)))
        return DraftTree(tokens, parents, drawn=drawn, q=q)

    def law(self, walk, broken: str = "", **walk_kwargs):
        def run(rng):
            tree = self.draft(rng, broken)
            paths = {v: tuple(int(tree.tokens[u]) for u in tree.path_to(v)) for v in range(tree.num_nodes)}
            return walk(tree, lambda v: self.p_of(paths[v]), rng, **walk_kwargs).emitted

        return completed_law(enumerate_random_law(run), self.p_of, len(self.config) + 1)

    def target(self):
        return completed_law({(): 1.0}, self.p_of, len(self.config) + 1)


def distance(a: dict, b: dict) -> float:
    return max(abs(a.get(k, 0.0) - b.get(k, 0.0)) for k in set(a) | set(b))


# every sibling configuration up to 1 deterministic + 3 drawn children at the root,
# with drawn-under-drawn and deterministic-under-drawn at depth 2
SIBLINGS = [(d, k) for d, k in itertools.product((0, 1), (0, 1, 2, 3)) if d + k > 0]
CONFIGS = [((d, k),) for d, k in SIBLINGS] + [((d, k), (e, m)) for (d, k), (e, m) in
                                               itertools.product([(0, 2), (1, 1), (1, 2)], [(0, 1), (1, 1), (0, 2)])]


@pytest.mark.parametrize("walk", sorted(WALKS))
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_exact_law_equals_target_for_every_sibling_configuration(walk, config):
    for seed in range(3):
        prob = Problem(seed, 4, config)
        assert distance(prob.law(WALKS[walk]), prob.target()) < 1e-12


@settings(max_examples=25)
@given(seed=st.integers(0, 10**6), walk=st.sampled_from(sorted(WALKS)),
       config=st.sampled_from(CONFIGS), temperature=st.sampled_from([0.5, 1.0, 1.7]),
       top_k=st.sampled_from([0, 2, 3]), top_p=st.sampled_from([1.0, 0.9, 0.6]),
       q_match=st.sampled_from([0.0, 0.7, 1.0]))
def test_exact_law_under_temperature_top_k_top_p(seed, walk, config, temperature, top_k, top_p, q_match):
    prob = Problem(seed, 5, config, temperature, top_k, top_p, q_match)
    assert distance(prob.law(WALKS[walk]), prob.target()) < 1e-12


BROKEN = [
    ("rrs", {"renormalize": False}, ""),
    ("traversal", {"correct": False}, ""),
    ("rrs", {}, "argmax-drafter"),
    ("traversal", {}, "argmax-drafter"),
    ("rrs", {}, "picky-drafter"),
    ("traversal", {}, "picky-drafter"),
]


@pytest.mark.parametrize(("walk", "kwargs", "drafter"), BROKEN, ids=str)
def test_broken_variants_are_caught(walk, kwargs, drafter):
    worst = max(distance(Problem(seed, 4, config).law(WALKS[walk], drafter, **kwargs),
                         Problem(seed, 4, config).target())
                for seed in range(3) for config in [((0, 3),), ((1, 2), (0, 1))])
    assert worst > 1e-3


def test_deterministic_trees_accept_like_sample_and_match():
    """On a tree without draws both walks are sample-and-match in law: P(v accepted)
    is the target's path probability, which is the most any lossless verifier gets."""
    prob = Problem(0, 4, [(1, 0), (1, 0)])
    tree = prob.draft(None)
    for walk in WALKS.values():
        law = enumerate_random_law(lambda rng, walk=walk: walk(tree, lambda v: prob.p_of(
            tuple(int(tree.tokens[u]) for u in tree.path_to(v))), rng).emitted)
        first = tuple(int(t) for t in tree.tokens[1:2])
        p_first = sum(w for seq, w in law.items() if seq[:1] == first and len(seq) > 1)
        assert abs(p_first - prob.p_of(())[first[0]]) < 1e-12


def _first_level_acceptance(tree, p_root) -> float:
    """P(the rejection walk accepts a child of the root), by enumerating its randomness."""
    law = enumerate_random_law(lambda rng: (len(rejection_walk(tree, lambda v: p_root,
                                                               rng).accepted) > 0,))
    return law.get((True,), 0.0)


@pytest.mark.parametrize("config", SIBLINGS, ids=str)
@pytest.mark.parametrize("q_match", [0.0, 0.7])
def test_children_acceptance_is_what_the_rejection_walk_accepts(config, q_match):
    """Averaged over the draws, the closed form equals the walk's enumerated
    probability of accepting a child, with top-k / top-p zeros in p."""
    for seed in range(3):
        prob = Problem(seed, 5, [config], temperature=0.9, top_k=4, top_p=0.9, q_match=q_match)
        trees = {}

        def run(rng, prob=prob, trees=trees):
            tree = prob.draft(rng)
            key = tuple(int(t) for t in tree.tokens)
            trees[key] = tree
            return (*key, len(rejection_walk(tree, lambda v: prob.p_of(()), rng).accepted) > 0)

        law = enumerate_random_law(run)
        walked = sum(w for out, w in law.items() if out[-1])
        drafts: dict = {}
        for out, w in law.items():
            drafts[out[:-1]] = drafts.get(out[:-1], 0.0) + w
        closed = sum(w * children_acceptance(trees[k], 0, prob.p_of(())) for k, w in drafts.items())
        assert closed == pytest.approx(walked, abs=1e-12)


def test_topk_acceptance_is_sample_and_match_on_the_deterministic_control():
    """The control keeps the deterministic child and takes q's most likely tokens in
    place of the drawn ones; a tree of just those accepts a child with that probability."""
    for seed in range(4):
        prob = Problem(seed, 5, [(1, 2)])
        tree = prob.draft(TorchRandomness(torch.Generator().manual_seed(seed)))
        ids, probs = tree.q[0]
        det = [int(tree.tokens[c]) for c in tree.children(0) if not tree.drawn[c]]
        top = [int(ids[i]) for i in np.argsort(-probs, kind="stable")[:2]]
        control = DraftTree([0, *det, *top], [-1] + [0] * (len(det) + len(top)))
        p = prob.p_of(())
        assert topk_acceptance(tree, 0, p) == pytest.approx(_first_level_acceptance(control, p), abs=1e-12)
        assert topk_acceptance(tree, 0, p) == pytest.approx(p[det + top].sum(), abs=1e-12)


def test_traversal_accepts_at_least_as_much_as_rrs_in_expectation():
    """Traversal Verification is never worse than token-level rejection sampling on
    these trees (Weng et al.); on a chain it is Block Verification, strictly better here."""
    for seed in range(4):
        prob = Problem(seed, 4, [(0, 2), (0, 2)])
        mat = {}
        for name, walk in WALKS.items():
            def run(rng, walk=walk):
                tree = prob.draft(rng)
                paths = {v: tuple(int(tree.tokens[u]) for u in tree.path_to(v)) for v in range(tree.num_nodes)}
                return walk(tree, lambda v: prob.p_of(paths[v]), rng).emitted
            mat[name] = sum(len(s) * w for s, w in enumerate_random_law(run).items())
        assert mat["traversal"] >= mat["rrs"] - 1e-12


def test_stochastic_shaper_draws_reproducibly_from_the_q_it_reports():
    """The real drafter: children drawn without replacement from the tempered q it
    records, deterministic given its seed, plain top-k at temperature 0, and never
    cut by the cost-curve budget (that would select drawn tokens by their values)."""
    from goose.sources import Observation, StochasticNGramSource
    from goose.trees import AutoBudgetShaper, StochasticShaper

    src = StochasticNGramSource(ngram_sizes=(1,), k=4)
    src.begin([1, 2])
    src.observe(Observation(np.array([1, 2]), np.array([-1, 1]), np.array([[2, 3, 4, 5], [3, 4, 5, 6]]),
                            np.array([[0.4, 0.3, 0.2, 0.1], [0.5, 0.2, 0.2, 0.1]])))
    shaper = StochasticShaper(temperature=0.5, seed=3, max_children=3, max_depth=1)
    shaper.begin([1, 2])
    tree = shaper.shape([1, 2], [src], 3)
    ids, probs = tree.q[0]
    expect = np.array([0.5, 0.2, 0.2, 0.1]) ** 2
    assert ids.tolist() == [3, 4, 5, 6] and np.allclose(probs, expect / expect.sum())
    assert tree.drawn[1:].all() and tree.size == 3
    shaper.begin([1, 2])
    assert shaper.shape([1, 2], [src], 3).tokens.tolist() == tree.tokens.tolist()
    greedy = StochasticShaper(temperature=0.0, max_children=3, max_depth=1).shape([1, 2], [src], 3)
    assert greedy.tokens.tolist() == [2, 3, 4, 5] and not greedy.has_draws
    with pytest.raises(ValueError, match="fixed budget"):
        AutoBudgetShaper(shaper, lambda n: float(n))


def test_delayed_expansion_drafts_one_path_then_branches():
    """DDTE: above depth ``delay`` every node has one drawn child, below it up to
    ``max_children``; ``"auto"`` counts the leading depths whose first-draw estimate
    reaches ``confident`` (with no data yet, the prior 0.5)."""
    from goose.sources import Observation, StochasticNGramSource
    from goose.trees import StochasticShaper

    src = StochasticNGramSource(ngram_sizes=(1,), k=4)
    src.begin([1, 2])
    ids = np.array([[2, 3, 4, 5], [3, 4, 5, 6]] + [[t % 7 + 1, (t + 1) % 7 + 1, (t + 2) % 7 + 1, (t + 3) % 7 + 1]
                                                    for t in range(7)])
    probs = np.tile([0.4, 0.3, 0.2, 0.1], (9, 1))
    src.observe(Observation(np.array([1, 2]), np.array([-1, 1]), ids[:2], probs[:2]))
    src.observe(Observation(np.arange(1, 8), np.full(7, -1), ids[2:], probs[2:], np.r_[-1, np.zeros(6, int)]))

    def widths(tree):
        out: dict[int, set[int]] = {}
        for u in range(tree.num_nodes):
            if tree.children(u):
                out.setdefault(int(tree.depths[u]), set()).add(len(tree.children(u)))
        return out

    for delay, confident, single in [(2, 0.6, 2), ("auto", 0.4, 3), ("auto", 0.6, 0)]:
        shaper = StochasticShaper(temperature=1.0, seed=0, max_children=3, max_depth=4, delay=delay,
                                  confident=confident)
        shaper.begin([1, 2])
        tree = shaper.shape([1, 2], [src], 12)
        w = widths(tree)
        assert tree.drawn[1:].all()
        assert all(w[d] == {1} for d in range(single)), (delay, w)
        assert max(max(v) for d, v in w.items() if d >= single) > 1, (delay, w)


def test_gumbel_top_k_draws_follow_sampling_without_replacement():
    """The drafter's Gumbel-top-k ordering has the law of sequential sampling without
    replacement: the first two draws of 10,000 seeded trees against the exact law,
    chi-square at alpha = 1e-6 (a correct drafter fails with probability 1e-6)."""
    from collections import Counter

    from goose.sources import Observation, StochasticNGramSource
    from goose.testing import chi_square_pvalue
    from goose.trees import StochasticShaper

    src = StochasticNGramSource(ngram_sizes=(1,), k=4)
    src.begin([1])
    q = np.array([0.4, 0.3, 0.2, 0.1])
    src.observe(Observation(np.array([1]), np.array([-1]), np.array([[2, 3, 4, 5]]), q[None]))
    shaper = StochasticShaper(temperature=1.0, seed=0, max_children=2, max_depth=1)
    counts = Counter(tuple(shaper.shape([1], [src], 2).tokens[1:].tolist()) for _ in range(10000))
    law = {(2 + a, 2 + b): q[a] * q[b] / (1 - q[a]) for a in range(4) for b in range(4) if a != b}
    assert chi_square_pvalue(counts, law) > 1e-6
    # power: the law of two independent draws conditioned on being distinct is rejected
    distinct = {k: q[k[0] - 2] * q[k[1] - 2] / (1 - (q**2).sum()) for k in law}
    assert chi_square_pvalue(counts, distinct) < 1e-6


def test_the_verifier_follows_the_trees_and_a_wrong_forced_one_is_refused():
    from goose.verify import (
        GreedyVerifier,
        RejectionVerifier,
        SamplingVerifier,
        TraversalVerifier,
        select_verifier,
    )

    assert isinstance(select_verifier(None, draws=True, temperature=0.0), GreedyVerifier)
    assert isinstance(select_verifier("auto", draws=True, temperature=0.8), TraversalVerifier)
    assert isinstance(select_verifier(None, draws=False, temperature=0.8), SamplingVerifier)
    assert isinstance(select_verifier("rrs", draws=True, temperature=1.0), RejectionVerifier)
    with pytest.raises(ValueError, match="reads the draft distribution q, but this method drafts deterministic"):
        select_verifier("traversal", draws=False, temperature=0.8)
    with pytest.raises(ValueError, match="lossless only for deterministic drafts"):
        select_verifier("match", draws=True, temperature=0.8)
    with pytest.raises(ValueError, match="needs temperature > 0"):
        select_verifier("rrs", draws=True, temperature=0.0)
    with pytest.raises(ValueError, match="unknown verifier 'nope'"):
        select_verifier("nope", draws=True, temperature=0.8)
    drawn = DraftTree([0, 1], [-1, 0], q={0: (np.array([1, 2]), np.array([0.5, 0.5]))}, drawn=[False, True])
    with pytest.raises(ValueError, match="has children drawn from q"):
        SamplingVerifier(0.8).verify(drawn, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="carries no q"):
        DraftTree([0, 1], [-1, 0], drawn=[False, True])
    with pytest.raises(ValueError, match="cannot draw"):
        DraftTree([0, 3], [-1, 0], q={0: (np.array([1, 2]), np.array([0.5, 0.5]))}, drawn=[False, True])
