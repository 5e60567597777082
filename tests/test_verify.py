import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from goose.testing import check_verifier
from goose.trees import DraftTree
from goose.verify import GreedyVerifier, LooseVerifier, SamplingVerifier, Verdict, process_logits, sample_and_match
from goose.verify._reference import enumerate_law, naive_greedy, target_law

from .strategies import assert_property_fails, draft_trees

# -- greedy ------------------------------------------------------------------------------


class ParentOffByOne(GreedyVerifier):
    """Deliberately wrong: compares a child with the prediction made AT the child."""

    def verify(self, tree, logits):
        pred, node, acc = logits.argmax(-1).tolist(), 0, []
        while True:
            nxt = [c for c in tree.children(node) if int(tree.tokens[c]) == pred[c]]
            if not nxt:
                return Verdict(tuple(acc), tuple(int(tree.tokens[v]) for v in acc), pred[node])
            node = nxt[0]
            acc.append(node)


def check_greedy_equals_reference(verifier):
    # small integer logits make ties common: ties must go to the lowest id in both
    @given(draft_trees(max_nodes=12, vocab=4), st.data())
    def prop(tree, data):
        rows = data.draw(st.lists(st.lists(st.integers(-2, 2), min_size=4, max_size=4),
                                  min_size=tree.num_nodes, max_size=tree.num_nodes))
        logits = torch.tensor(rows, dtype=torch.float32)
        assert verifier.verify(tree, logits) == naive_greedy(tree, logits)

    prop()


def test_greedy_verifier_equals_path_by_path_reference():
    check_greedy_equals_reference(GreedyVerifier())


def test_greedy_property_catches_off_by_one():
    assert_property_fails(check_greedy_equals_reference, ParentOffByOne())


# -- sampling: exact law in float64 ----------------------------------------------------------


def redraw_on_miss(tree, draw):
    """Deliberately wrong walk: after a miss it draws the bonus again (so the bonus can
    be a child's token, and sequences leave the tree with the wrong law)."""
    node, acc = 0, []
    while True:
        y = draw(node)
        child = tree.child_with_token(node, y)
        if child is None:
            bonus = draw(node)
            return Verdict(tuple(acc), tuple(int(tree.tokens[v]) for v in acc), bonus)
        acc.append(child)
        node = child


def reject_first_child_then_residual_wrong(tree, draw):
    """Deliberately wrong: accepts the first child whenever the draw hits ANY child."""
    node, acc = 0, []
    while True:
        y = draw(node)
        kids = tree.children(node)
        if tree.child_with_token(node, y) is None or not kids:
            return Verdict(tuple(acc), tuple(int(tree.tokens[v]) for v in acc), y)
        acc.append(kids[0])
        node = kids[0]


logit_rows = st.lists(st.sampled_from([float("-inf"), -3.0, -1.0, 0.0, 0.0, 0.5, 2.0, 8.0]),
                      min_size=5, max_size=5)
warpers = st.fixed_dictionaries({"temperature": st.sampled_from([0.3, 0.8, 1.0, 1.7]),
                                 "top_k": st.integers(0, 5), "top_p": st.sampled_from([0.5, 0.9, 0.95, 1.0])})


def check_sampling_law(walk):
    # vocab 5, trees up to 9 nodes: every sibling configuration (no child, some, all
    # tokens; children with zero probability) comes up; logits include -inf and ties.
    @given(draft_trees(max_nodes=9, vocab=5), st.data(), warpers)
    def prop(tree, data, warp):
        rows = data.draw(st.lists(logit_rows, min_size=tree.num_nodes, max_size=tree.num_nodes)
                         .filter(lambda rs: all(max(r) > float("-inf") for r in rs)))
        logits = torch.tensor(rows, dtype=torch.float64)
        probs = SamplingVerifier(**warp).node_probs(logits).double().numpy()
        got = enumerate_law(lambda draw: walk(tree, draw), probs)
        want = target_law(tree, probs)
        assert set(got) == set(want)
        for seq, p in want.items():
            assert got[seq] == pytest.approx(p, abs=1e-12)
        assert sum(got.values()) == pytest.approx(1.0, abs=1e-12)

    prop()


def test_sampling_walk_exact_law_equals_target_law():
    check_sampling_law(sample_and_match)


@pytest.mark.parametrize("broken", [redraw_on_miss, reject_first_child_then_residual_wrong])
def test_sampling_law_catches_broken_walks(broken):
    assert_property_fails(check_sampling_law, broken)


@pytest.mark.slow
def test_sampling_verifier_matches_target_statistically():
    # chi-square per tree at level 1e-6 / 25 (Bonferroni): false failure rate <= 1e-6
    check_verifier(lambda: SamplingVerifier(generator=torch.Generator().manual_seed(1)), mode="sampling")


@pytest.mark.slow
def test_statistical_check_has_power_against_greedy():
    with pytest.raises(AssertionError):
        check_verifier(GreedyVerifier, mode="sampling", trials=5)


def test_sampling_is_seeded_reproducible():
    tree = DraftTree([0, 1, 2, 3], [-1, 0, 1, 0])
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    runs = [[SamplingVerifier(0.8, top_p=0.95, generator=g).verify(tree, logits) for _ in range(20)]
            for g in (torch.Generator().manual_seed(3), torch.Generator().manual_seed(3))]
    assert runs[0] == runs[1]


def test_process_logits_matches_transformers_warpers():
    lp = pytest.importorskip("transformers.generation.logits_process")
    scores = torch.randn(6, 50, generator=torch.Generator().manual_seed(0)) * 3
    chain = [lp.TemperatureLogitsWarper(0.7), lp.TopKLogitsWarper(20), lp.TopPLogitsWarper(0.9)]
    expected = scores.clone()
    for w in chain:
        expected = w(None, expected)
    assert torch.equal(process_logits(scores, 0.7, 20, 0.9), expected)


def test_greedy_conformance_and_bad_shapes():
    check_verifier(GreedyVerifier)
    with pytest.raises(ValueError, match="shape"):
        GreedyVerifier().verify(DraftTree([0, 1], [-1, 0]), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="vocabulary"):
        GreedyVerifier().verify(DraftTree([0, 9], [-1, 0]), torch.zeros(2, 4))


@pytest.mark.parametrize("kwargs", [{"temperature": 0}, {"top_k": -1}, {"top_p": 0}, {"top_p": 1.5}])
def test_sampling_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        SamplingVerifier(**kwargs)


def test_loose_verifier_is_labelled_lossy_and_loosens():
    assert LooseVerifier.lossless is False and GreedyVerifier.lossless is True
    tree = DraftTree.chain(0, [1, 2, 3])
    logits = torch.full((4, 5), -5.0)
    logits[0, 4] = logits[0, 1] = 0.0  # unsure at the root, prefers 1 or 4 (tie -> 1... set 4 higher)
    logits[0, 4] = 0.1
    logits[1, 2] = logits[2, 3] = logits[3, 0] = 5.0
    assert GreedyVerifier().verify(tree, logits).emitted == (4,)
    loose = LooseVerifier(window=3, entropy_threshold=0.3).verify(tree, logits)
    assert loose.emitted == (1, 2, 3, 0)
    assert np.isclose(float(logits.softmax(-1)[0].max()), float(logits.softmax(-1)[0, 4]))


def test_a_lossy_verifier_is_never_a_default_and_is_asked_for_by_name_at_temperature_0_only():
    from goose.engine import GenerationRequest
    from goose.methods import METHODS
    from goose.verify import LOSSY_VERIFIERS, Sampling, select_verifier

    for name in METHODS:  # whatever the method draws, auto chooses a lossless verifier
        for sampling in (Sampling(), Sampling(0.8, top_p=0.95)):
            request = GenerationRequest(name, sampling=sampling)
            assert request.verifier is None
            for draws in (False, True):
                assert select_verifier(None, draws, sampling=sampling).lossless
                assert select_verifier("auto", draws, sampling=sampling).lossless
    assert set(LOSSY_VERIFIERS) == {"loose"}
    v = select_verifier("loose-w3-e0.25", False)
    assert isinstance(v, LooseVerifier) and (v.window, v.entropy_threshold) == (3, 0.25) and not v.lossless
    assert GenerationRequest("goose", verifier="loose").cost_kind == (False, False)  # it reads whole rows
    for make in (lambda: select_verifier("loose", False, temperature=0.8),
                 lambda: GenerationRequest("goose", sampling=Sampling(0.8), verifier="loose")):
        with pytest.raises(ValueError, match="lossy.*needs temperature 0"):
            make()
    with pytest.raises(ValueError, match="unknown verifier 'loosely'"):
        GenerationRequest("goose", verifier="loosely")
    with pytest.raises(ValueError, match="window must be >= 2"):
        select_verifier("loose-w1", False)
