"""glode/spans.py: BIO <-> span conversion, candidate enumeration, greedy overlap resolution."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glode.errors import GlodeError, LabelError
from glode.spans import Span, candidate_spans, resolve_overlaps, spans_to_tags, tags_to_spans, to_bio2


# --- to_bio2 / tags_to_spans / spans_to_tags ---------------------------------------------


def test_to_bio2_repairs_iob1():
    assert to_bio2(["I-PER", "I-PER", "O", "I-LOC", "I-ORG", "B-ORG", "I-ORG"]) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-ORG", "B-ORG", "I-ORG",
    ]
    assert to_bio2(["B-PER", "I-PER", "O"]) == ["B-PER", "I-PER", "O"]
    assert to_bio2([]) == []


@pytest.mark.parametrize("bad", ["X", "B-", "b-PER", "S-PER", "", "I"])
def test_to_bio2_rejects_invalid(bad):
    with pytest.raises(ValueError):
        to_bio2(["O", bad])


def test_tags_to_spans_end_exclusive():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "I-ORG"]
    assert tags_to_spans(tags) == [Span(0, 2, "PER"), Span(3, 4, "LOC"), Span(4, 6, "LOC"), Span(6, 7, "ORG")]
    assert tags_to_spans(["I-PER", "I-PER"]) == [Span(0, 2, "PER")]  # IOB1 accepted


def test_spans_to_tags_and_errors():
    assert spans_to_tags([(1, 3, "ORG"), Span(4, 5, "PER")], 5) == ["O", "B-ORG", "I-ORG", "O", "B-PER"]
    assert spans_to_tags([], 2) == ["O", "O"]
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([(0, 2, "PER"), (1, 3, "LOC")], 4)
    with pytest.raises(ValueError, match="overlaps"):
        spans_to_tags([(0, 2, "PER"), (0, 2, "LOC")], 4)
    for bad in [(0, 5, "PER"), (2, 2, "PER"), (-1, 1, "PER"), (0, 1, "O"), (0, 1, "")]:
        with pytest.raises(ValueError):
            spans_to_tags([bad], 4)


LABELS = ["PER", "ORG", "LOC"]


@st.composite
def bio2_sequences(draw):
    n = draw(st.integers(0, 30))
    tags: list[str] = []
    for _ in range(n):
        choices = ["O"] + [f"B-{t}" for t in LABELS]
        if tags and tags[-1] != "O":
            choices.append("I-" + tags[-1][2:])
        tags.append(draw(st.sampled_from(choices)))
    return tags


@settings(max_examples=200, deadline=None)
@given(bio2_sequences())
def test_bio2_tags_round_trip_through_spans(tags):
    spans = tags_to_spans(tags)
    assert spans_to_tags(spans, len(tags)) == tags
    assert to_bio2(tags) == tags
    assert all(0 <= s.start < s.end <= len(tags) for s in spans)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["O", "B-PER", "I-PER", "I-LOC", "B-LOC"]), max_size=20))
def test_any_iob_sequence_normalises_and_round_trips(tags):
    bio2 = to_bio2(tags)
    assert spans_to_tags(tags_to_spans(tags), len(tags)) == bio2
    assert to_bio2(bio2) == bio2


TAG_PIECES = st.one_of(
    st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-MISC", "I-"]),
    st.text(max_size=6),
    st.builds(lambda p, t: f"{p}-{t}", st.sampled_from("BIESOX"), st.text(max_size=3)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(TAG_PIECES, max_size=15))
def test_fuzz_tags_convert_or_raise_label_error(tags):
    """Any tag list: BIO -> spans -> BIO round-trips, or the project's own error, nothing else."""
    try:
        bio2 = to_bio2(tags)
        spans = tags_to_spans(tags)
    except LabelError as err:
        assert isinstance(err, GlodeError) and "invalid tag" in str(err)
        assert any(t != "O" and not (len(t) > 2 and t[0] in "BI" and t[1] == "-" and not any(c.isspace() for c in t))
                   for t in tags)
        return
    assert spans_to_tags(spans, len(tags)) == bio2
    assert tags_to_spans(bio2) == spans


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-2, 12), st.integers(-2, 12),
                       st.one_of(st.sampled_from(["PER", "LOC", "O", ""]), st.text(max_size=3))), max_size=5),
    st.integers(-1, 10),
)
def test_fuzz_spans_convert_or_raise_label_error(spans, n_words):
    """Any span list: spans -> BIO -> spans round-trips, or the project's own error."""
    try:
        tags = spans_to_tags(spans, n_words)
    except LabelError:
        return
    assert len(tags) == n_words
    assert tags_to_spans(tags) == sorted(Span(*sp) for sp in spans)


# --- candidate_spans ------------------------------------------------------------------------


def test_candidate_spans_order_and_count():
    assert candidate_spans(3, 2) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
    assert candidate_spans(0, 4) == []
    assert len(candidate_spans(10, 4)) == 10 + 9 + 8 + 7
    assert candidate_spans(2, 10) == [(0, 1), (0, 2), (1, 2)]
    with pytest.raises(ValueError):
        candidate_spans(3, 0)


# --- resolve_overlaps -----------------------------------------------------------------------


def test_resolve_high_score_span_beats_two_lower_ones():
    cands = [(0, 2, "PER", 0.6), (2, 4, "LOC", 0.7), (1, 3, "ORG", 0.9)]
    assert resolve_overlaps(cands) == [Span(1, 3, "ORG")]


def test_resolve_two_lower_ones_kept_when_higher():
    cands = [(0, 2, "PER", 0.8), (2, 4, "LOC", 0.7), (1, 3, "ORG", 0.6), (5, 6, "PER", 0.1)]
    assert resolve_overlaps(cands) == [Span(0, 2, "PER"), Span(2, 4, "LOC"), Span(5, 6, "PER")]


def test_resolve_last_span_is_not_kept_blindly():
    # The reference implementation always kept the last candidate; it must lose here.
    cands = [(0, 3, "ORG", 0.9), (2, 3, "LOC", 0.5)]
    assert resolve_overlaps(cands) == [Span(0, 3, "ORG")]


def test_resolve_ties_are_deterministic():
    cands = [(1, 3, "LOC", 0.5), (0, 2, "PER", 0.5), (0, 1, "ORG", 0.5)]
    expected = [Span(0, 1, "ORG"), Span(1, 3, "LOC")]  # tie -> earlier start, then shorter
    assert resolve_overlaps(cands) == expected
    assert resolve_overlaps(list(reversed(cands))) == expected
    same = [(0, 2, "PER", 0.5), (0, 2, "LOC", 0.5)]
    assert resolve_overlaps(same) == resolve_overlaps(same[::-1]) == [Span(0, 2, "LOC")]


def test_resolve_accepts_no_candidates_ranks_nan_lowest_and_refuses_empty_spans():
    assert resolve_overlaps([]) == []
    assert resolve_overlaps([(0, 1, "PER", float("nan")), (0, 1, "LOC", 0.0)]) == [Span(0, 1, "LOC")]
    with pytest.raises(ValueError):
        resolve_overlaps([(2, 2, "PER", 1.0)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(1, 4), st.sampled_from(LABELS), st.floats(0, 1)), max_size=25))
def test_resolved_spans_never_overlap_and_every_dropped_one_loses_to_a_kept_one(raw):
    cands = [(s, s + w, lab, sc) for s, w, lab, sc in raw]
    kept = resolve_overlaps(cands)
    covered = [i for sp in kept for i in range(sp.start, sp.end)]
    assert len(covered) == len(set(covered))  # no overlaps
    assert kept == sorted(kept)
    # maximality: every dropped candidate overlaps a kept span with a score at least as high
    best = {}
    for s, e, lab, sc in cands:
        best[(s, e, lab)] = max(best.get((s, e, lab), -1.0), sc)
    for s, e, lab, sc in cands:
        if Span(s, e, lab) in kept:
            continue
        assert any(k.start < e and s < k.end and best[(k.start, k.end, k.label)] >= sc for k in kept)
