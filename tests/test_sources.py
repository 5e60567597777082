import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from goose.sources import ContextNGramSource, Observation, RecyclingSource
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
