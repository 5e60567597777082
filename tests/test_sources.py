import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from goose.sources import ContextNGramSource, Observation, RecyclingSource, SuffixSource, SuffixTable, suffix_confidence
from goose.sources._reference import naive_ngram_propose
from goose.testing import check_source

from .strategies import assert_property_fails


class OffByOneIndex(ContextNGramSource):
    """Deliberately broken: forgets the n-grams that straddle the old end of the
    stream when the context grows (a classic incremental-index bug)."""

    def _extend(self, tokens):
        s = self._stream
        old = len(s)
        s.extend(int(t) for t in tokens)
        for n, table in self._index.items():
            for i in range(old, len(s) - n):
                table.setdefault(tuple(s[i : i + n]), []).append(i)


ngram_case = st.fixed_dictionaries(
    {
        "stream": st.lists(st.integers(0, 3), max_size=50),
        "cuts": st.lists(st.integers(1, 50), max_size=4),
        "path": st.lists(st.integers(0, 3), max_size=4),
        "sizes": st.lists(st.integers(1, 5), min_size=1, max_size=3),
        "max_tokens": st.integers(1, 8),
        "max_matches": st.integers(1, 3),
        "policy": st.sampled_from(["earliest", "latest"]),
    }
)


def check_ngram_matches_naive(cls):
    @given(ngram_case)
    def prop(case):
        src = cls(case["sizes"], case["max_tokens"], case["max_matches"], case["policy"])
        stream = case["stream"]
        # the context grows in chunks, as it does during decoding
        for cut in sorted(c for c in case["cuts"] if c < len(stream)) + [len(stream)]:
            context = stream[:cut]
            expected = naive_ngram_propose(
                context, case["path"], case["sizes"], case["max_tokens"], case["max_matches"], case["policy"]
            )
            assert src.propose(context, case["path"]) == expected

    prop()


def test_ngram_equals_naive_full_scan():
    check_ngram_matches_naive(ContextNGramSource)


def test_ngram_property_catches_broken_index():
    assert_property_fails(check_ngram_matches_naive, OffByOneIndex)


def test_ngram_examples():
    src = ContextNGramSource((3, 2), max_tokens=4, max_matches=2)
    ctx = [1, 2, 3, 9, 1, 2, 4, 1, 2]
    props = src.propose(ctx)
    assert [p.tokens for p in props] == [(3, 9, 1, 2), (4, 1, 2)]
    assert props[0].key == "n2" and (props[0].support, props[0].total) == (1, 2)
    assert ContextNGramSource((3,), policy="latest").propose(ctx + [3])[0].tokens[:2] == (9, 1)
    assert src.propose([7]) == []  # nothing earlier to match
    assert src.propose([5, 5]) == []  # the only (5, 5) is the query itself


def test_ngram_index_rebuilds_when_context_changes():
    src = ContextNGramSource((2,), max_tokens=2)
    assert src.propose([1, 2, 3, 1, 2])[0].tokens == (3, 1)
    assert src.propose([4, 5, 6, 4, 5])[0].tokens == (6, 4)  # a new sequence, not a growth


@pytest.mark.parametrize("kwargs", [{"ngram_sizes": ()}, {"ngram_sizes": (0,)}, {"max_tokens": 0},
                                    {"max_matches": 0}, {"policy": "middle"}])
def test_ngram_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ContextNGramSource(**kwargs)


def obs(tokens, prev, ids, probs):
    return Observation(np.array(tokens), np.array(prev), np.array(ids), np.array(probs, dtype=float))


def test_recycling_last_position_wins_and_unobserved_rows_are_empty():
    src = RecyclingSource(k=2)
    src.observe(obs([3, 4, 3], [-1, 3, 4], [[1, 2], [5, 6], [7, 8]], [[0.5, 0.2], [0.4, 0.1], [0.6, 0.3]]))
    assert [p.tokens[0] for p in src.propose([0, 3])] == [7, 8]  # the later row of token 3
    assert [p.key for p in src.propose([0, 3])] == ["rank0", "rank1"]
    assert src.propose([0, 9]) == []  # never observed: no proposal
    assert src.propose([0], path=[4])[0].confidence == (0.4,)


def test_recycling_proposals_follow_the_table():
    """A row's proposals are made once per version of the row: an observation that
    rewrites it, a new name or a new floor is seen at once, and a subclass with rows of
    its own is asked every time."""
    src = RecyclingSource(k=2)
    src.observe(obs([3], [-1], [[5, 6]], [[0.5, 0.2]]))
    first = src.propose([0, 3])
    assert [p.tokens[0] for p in first] == [5, 6]
    first.clear()  # the caller owns the list it was given
    src.observe(obs([4], [-1], [[1, 2]], [[0.3, 0.3]]))  # another row: token 3's stands
    assert [p.tokens[0] for p in src.propose([0, 3])] == [5, 6]
    src.observe(obs([3], [-1], [[7, 8]], [[0.6, 0.1]]))  # token 3's row rewritten
    assert [(p.tokens[0], p.confidence[0]) for p in src.propose([0, 3])] == [(7, 0.6), (8, 0.1)]
    src.name, src.min_prob = "tr", 0.5
    assert [(p.tokens[0], p.source) for p in src.propose([0, 3])] == [(7, "tr")]

    class Shifted(RecyclingSource):
        def row(self, token, prev=-1):
            ids, probs = super().row(token, prev)
            return ids + prev, probs

    shifted = Shifted(k=2)
    shifted.observe(obs([3], [-1], [[5, 6]], [[0.5, 0.2]]))
    assert shifted.propose([1, 3])[0].tokens == (6,) and shifted.propose([2, 3])[0].tokens == (7,)


def test_recycling_bigram_tier_and_renormalize():
    src = RecyclingSource(k=2, bigram=True, renormalize=True)
    src.observe(obs([3, 3], [1, 2], [[5, 6], [7, 8]], [[0.3, 0.1], [0.2, 0.2]]))
    assert src.propose([1, 3])[0].tokens == (5,)  # bigram (1, 3)
    assert src.propose([2, 3])[0].tokens == (7,)  # bigram (2, 3)
    assert src.propose([9, 3])[0].tokens == (7,)  # unigram row: the last one
    assert src.propose([1, 3])[0].confidence == pytest.approx((0.75,))


def test_recycling_cold_and_hot_start():
    cold, hot = RecyclingSource(k=1), RecyclingSource(k=1, hot_start=True)
    for src in (cold, hot):
        src.observe(obs([3], [-1], [[4]], [[0.9]]))
        src.begin([1, 2])
    assert cold.propose([3]) == [] and hot.propose([3])[0].tokens == (4,)


def test_recycling_bad_arguments():
    with pytest.raises(ValueError, match="k must be >= 1"):
        RecyclingSource(k=0)
    with pytest.raises(ValueError):
        RecyclingSource(min_prob=2.0)


@pytest.mark.parametrize("make", [ContextNGramSource, lambda: ContextNGramSource((3, 2, 1), 5, 3, "latest"),
                                  RecyclingSource, lambda: RecyclingSource(k=3, bigram=True)])
def test_builtin_sources_conform(make):
    check_source(make)


@given(st.lists(st.integers(0, 6), min_size=1, max_size=40), st.booleans(), st.integers(0, 10**6))
def test_prefill_positions_lose_nothing_for_the_recycling_table(prompt, bigram, seed):
    from goose.engine import prefill_positions as _prefill_positions

    rng = np.random.default_rng(seed)
    tokens = np.asarray(prompt, dtype=np.int64)
    prev = np.concatenate([[-1], tokens[:-1]])
    top_ids = rng.integers(0, 7, (len(prompt), 3))
    top_probs = rng.random((len(prompt), 3))
    full, narrow = RecyclingSource(k=3, bigram=bigram), RecyclingSource(k=3, bigram=bigram)
    full.observe(Observation(tokens, prev, top_ids, top_probs))
    pos = _prefill_positions(list(prompt), {narrow.prefill_positions, "none"})
    assert pos is not None and np.all(np.diff(pos) > 0)
    narrow.observe(Observation(tokens[pos], prev[pos], top_ids[pos], top_probs[pos]))
    assert np.array_equal(full._ids, narrow._ids) and np.array_equal(full._probs, narrow._probs)
    assert full._bigram.keys() == narrow._bigram.keys()
    assert all(np.array_equal(full._bigram[key][0], narrow._bigram[key][0]) for key in full._bigram)


def test_prefill_positions_union_and_errors():
    from goose.engine import prefill_positions as _prefill_positions

    prompt = [5, 1, 5, 2, 5, 1]
    assert _prefill_positions(prompt, {"all", "last-token"}) is None
    assert _prefill_positions(prompt, {"last-token"}).tolist() == [3, 4, 5]
    assert _prefill_positions(prompt, {"last-token", "last-pair"}).tolist() == [0, 2, 3, 4, 5]
    assert _prefill_positions(prompt, {"none"}).tolist() == []
    with pytest.raises(ValueError, match="prefill_positions"):
        _prefill_positions(prompt, {"some"})


# -- SuffixSource: counts after the longest earlier suffix ----------------------------------
def naive_followers(stream, query, depth, min_match=1):
    """The longest suffix of ``query`` (<= depth tokens) followed somewhere in ``stream``,
    and its followers' counts, by a full scan."""
    for k in range(min(depth, len(query)), min_match - 1, -1):
        q, counts = list(query[-k:]), {}
        for i in range(len(stream) - k):
            if stream[i : i + k] == q:
                counts[stream[i + k]] = counts.get(stream[i + k], 0) + 1
        if counts:
            return k, counts
    return 0, {}


class ForgetsTheSeam(SuffixTable):
    """Deliberately broken: each extension starts a fresh tail, so suffixes that span
    two commits are never counted (the classic incremental-index bug)."""

    def extend(self, tokens):
        self.tail = []
        super().extend(tokens)


suffix_case = st.fixed_dictionaries({
    "stream": st.lists(st.integers(0, 3), min_size=1, max_size=50),
    "cuts": st.lists(st.integers(1, 50), max_size=4),
    "query": st.lists(st.integers(0, 3), min_size=1, max_size=9),
    "depth": st.integers(1, 6),
})


def check_suffix_table_matches_naive(cls):
    @given(suffix_case)
    def prop(case):
        stream, table = case["stream"], cls(case["depth"])
        done = 0
        for cut in sorted({c for c in case["cuts"] if c < len(stream)} | {len(stream)}):
            table.extend(stream[done:cut])  # the sequence grows in chunks, as it does when decoding
            done = cut
            assert table.continuations(case["query"]) == naive_followers(stream[:cut], case["query"], case["depth"])

    prop()


def test_suffix_table_counts_equal_a_full_scan():
    check_suffix_table_matches_naive(SuffixTable)


def test_suffix_table_property_catches_a_forgotten_seam():
    assert_property_fails(check_suffix_table_matches_naive, ForgetsTheSeam)


def test_suffix_table_work_per_token_is_bounded_by_its_depth():
    table = SuffixTable(max_depth=4)
    stream = [int(t) for t in np.random.default_rng(0).integers(0, 50, 5000)]
    table.extend(stream)
    entries = sum(sum(len(f) for f in level.values()) for level in table.counts)
    assert table.tokens == 5000 and entries <= 4 * 5000 and len(table.tail) == 4


def test_suffix_source_chains_follow_counts_and_stop_on_low_confidence():
    src = SuffixSource(min_match=1, max_tokens=10, min_prob=0.3, max_matches=2)
    context = [7, 1, 2, 3, 7, 1, 2, 4, 7, 1, 2, 3, 9, 7, 1]
    src.begin(context)
    props = src.propose(context)
    # after "7 1" came "2" three times; then "7 1 2" was followed by 3 twice and 4 once
    assert [p.tokens[:2] for p in props] == [(2, 3)]  # one first token only: nothing else followed "7 1"
    p = props[0]
    assert p.key == "k2" and (p.support, p.total) == (3, 3)
    assert p.confidence[0] == pytest.approx(suffix_confidence(2, 3, 3))
    assert p.confidence[1] == pytest.approx(suffix_confidence(3, 2, 3))
    # "7 1 2 3" was followed by 7 and by 9 (the first seen wins the tie); from there the
    # suffix is long and seen once: the chain copies on to max_tokens with confidence near 1
    assert p.tokens == (2, 3, 7, 1, 2, 4, 7, 1, 2, 3)
    assert p.confidence[2] == pytest.approx(suffix_confidence(4, 1, 2)) and min(p.confidence[3:]) > 0.98
    # at min_prob 0.5 the chain ends before the tie: 0.9375 * 0.71875 * 0.646 < 0.5
    strict = SuffixSource(min_match=1, max_tokens=10, min_prob=0.5)
    strict.begin(context)
    assert strict.propose(context)[0].tokens == (2, 3)
    assert src.propose(context, path=[5]) == []  # "7 1 5" and "1 5" and "5" never occurred
    assert SuffixSource().propose([]) == []


def test_suffix_source_shares_only_finished_responses():
    shared = SuffixTable()
    src = SuffixSource(min_match=2, shared=shared)
    src.begin([1, 2])
    src.commit([3, 4, 5])
    src.end([1, 2, 3, 4, 5])
    assert shared.tokens == 3 and shared.continuations([3, 4]) == (2, {5: 1})  # the response, not the prompt
    src.begin([8, 9, 3, 4])  # a new request: the earlier response is drafted from
    assert src.propose([8, 9, 3, 4])[0].tokens[0] == 5
    src.commit([6])
    src.abort([8, 9, 3, 4, 6])  # a failed request teaches nothing
    assert shared.tokens == 3
    with pytest.raises(ValueError, match="depth"):
        SuffixSource(max_depth=12, shared=SuffixTable(8))
    for bad in ({"min_match": 0}, {"min_prob": 1.0}, {"max_tokens": 0}):
        with pytest.raises(ValueError):
            SuffixSource(**bad)


@pytest.mark.parametrize("make", [SuffixSource, lambda: SuffixSource(min_match=1, max_matches=3, shared=SuffixTable())])
def test_suffix_sources_conform(make):
    check_source(make)
