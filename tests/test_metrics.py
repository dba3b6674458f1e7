"""seqeval entity scores and the paper's span F1, checked by hand and against seqeval."""

from __future__ import annotations

import json
import random
import warnings

import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from glode.metrics import ner_scores
from glode.spans import Span, tags_to_spans


def test_entity_and_span_scores_match_a_hand_computed_case():
    gold = [
        ["B-PER", "I-PER", "O", "B-LOC"],
        ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "I-ORG", "O"],  # 5 words: over a cap of 4
        ["O", "B-PER"],
    ]
    pred = [
        [Span(0, 2, "PER"), Span(3, 4, "ORG")],  # 1 right, 1 wrong type
        [Span(0, 4, "ORG")],  # wrong boundary
        [Span(1, 2, "PER")],  # right
    ]
    s = ner_scores(gold, pred, max_span_len=4)
    assert s["gold_entities"] == 4 and s["pred_entities"] == 4 and s["gold_entities_over_cap"] == 1
    assert s["precision"] == pytest.approx(2 / 4) and s["recall"] == pytest.approx(2 / 4)
    assert s["f1"] == pytest.approx(0.5)
    assert s["per_type"]["PER"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 2}
    assert s["per_type"]["LOC"]["support"] == 1 and s["per_type"]["LOC"]["recall"] == 0.0
    assert s["per_type"]["ORG"]["precision"] == 0.0
    # span F1 ignores the 5-word ORG: 3 gold, 4 predicted, 2 correct
    assert s["span"]["precision"] == pytest.approx(2 / 4)
    assert s["span"]["recall"] == pytest.approx(2 / 3)
    assert s["span"]["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s["span_gold_entities"] == 3 and s["sentences"] == 3
    json.dumps(s)


def test_span_f1_respects_visible_words():
    gold = [["B-PER", "O", "B-LOC", "I-LOC"]]
    pred = [[Span(0, 1, "PER")]]
    s = ner_scores(gold, pred, max_span_len=4, visible_words=[3])  # LOC is cut by truncation
    assert s["span"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert s["recall"] == pytest.approx(0.5)  # seqeval still counts it
    assert s["gold_entities_truncated"] == 1


def test_span_f1_leaves_out_lost_spans_and_counts_them():
    gold = [["B-PER", "O", "B-LOC", "I-LOC", "O"]]
    pred = [[Span(0, 1, "PER")]]
    s = ner_scores(gold, pred, max_span_len=4, lost_spans=[[(2, 4), (3, 5)]])  # no window held LOC whole
    assert s["span"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert s["recall"] == pytest.approx(0.5) and s["gold_entities_truncated"] == 1
    with pytest.raises(ValueError):
        ner_scores(gold, pred, max_span_len=4, lost_spans=[])


def test_over_cap_gold_ignored_by_span_f1():
    gold = [["B-ORG"] + ["I-ORG"] * 5, ["B-PER"]]
    s = ner_scores(gold, [[], [Span(0, 1, "PER")]], max_span_len=4)
    assert s["span"]["recall"] == 1.0 and s["recall"] == pytest.approx(0.5)
    assert s["gold_entities_over_cap"] == 1


def test_zero_predictions_no_warnings():
    gold = [["B-PER", "O"], ["O"]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = ner_scores(gold, [[], []], max_span_len=4)
        empty = ner_scores([], [], max_span_len=4)
        no_gold = ner_scores([["O", "O"]], [[]], max_span_len=4)
    for x in (s, empty, no_gold):
        assert x["precision"] == x["recall"] == x["f1"] == 0.0
        assert x["span"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        json.dumps(x)
    assert s["per_type"]["PER"]["support"] == 1
    assert type(s["precision"]) is float and type(s["per_type"]["PER"]["support"]) is int


def test_mismatched_overlapping_or_out_of_range_predictions_are_refused():
    with pytest.raises(ValueError):
        ner_scores([["O"]], [], max_span_len=4)
    with pytest.raises(ValueError):
        ner_scores([["O", "O"]], [[Span(0, 2, "PER"), Span(1, 2, "LOC")]], max_span_len=4)
    with pytest.raises(ValueError):
        ner_scores([["O"]], [[Span(0, 3, "PER")]], max_span_len=4)


def _random_bio2(rng: random.Random, n: int) -> list[str]:
    tags: list[str] = []
    for _ in range(n):
        r = rng.random()
        if tags and tags[-1] != "O" and r < 0.35:
            tags.append("I-" + tags[-1][2:])
        elif r < 0.65:
            tags.append("O")
        else:
            tags.append("B-" + rng.choice(["PER", "ORG", "LOC"]))
    return tags


def test_matches_seqeval_oracle_on_random_sequences():
    rng = random.Random(0)
    for trial in range(30):
        gold = [_random_bio2(rng, rng.randint(0, 12)) for _ in range(rng.randint(1, 15))]
        pred_tags = [_random_bio2(rng, len(g)) for g in gold]
        # mix: some predictions equal to gold so that scores are not all near zero
        pred_tags = [g if rng.random() < 0.3 else p for g, p in zip(gold, pred_tags)]
        pred = [tags_to_spans(p) for p in pred_tags]
        s = ner_scores(gold, pred, max_span_len=3)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = dict(mode="strict", scheme=IOB2, zero_division=0)
            assert s["precision"] == pytest.approx(float(precision_score(gold, pred_tags, **kw)))
            assert s["recall"] == pytest.approx(float(recall_score(gold, pred_tags, **kw)))
            assert s["f1"] == pytest.approx(float(f1_score(gold, pred_tags, **kw)))
            report = classification_report(gold, pred_tags, output_dict=True, **kw)
        for typ, row in s["per_type"].items():
            assert row["f1"] == pytest.approx(float(report[typ]["f1-score"]))
            assert row["support"] == int(report[typ]["support"])
        # span F1 by brute force
        gold_spans = {(i, sp) for i, g in enumerate(gold) for sp in tags_to_spans(g) if sp.end - sp.start <= 3}
        pred_spans = {(i, sp) for i, p in enumerate(pred) for sp in p}
        tp = len(gold_spans & pred_spans)
        p = tp / len(pred_spans) if pred_spans else 0.0
        r = tp / len(gold_spans) if gold_spans else 0.0
        assert s["span"]["precision"] == pytest.approx(p) and s["span"]["recall"] == pytest.approx(r)
        assert s["gold_entities"] == sum(len(tags_to_spans(g)) for g in gold)
