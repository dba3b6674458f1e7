"""bench/sentence_counts.py: per-sentence entity counts that sum to glode.metrics' scores exactly."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from glode.metrics import ner_scores
from glode.model import SpanModelConfig, build_model, save_model
from glode.settings import DataSettings, EvaluateSettings
from glode.steps.evaluate import evaluate_model
from glode.steps.prepare import prepare_tables
from glode.spans import tags_to_spans, to_bio2
from tests.bench_modules import load
from tests.synthetic import all_words, write_corpus
from tests.tiny_encoder import build_tiny_encoder

sc = load("sentence_counts")
TYPES = ["PER", "ORG", "LOC"]


def _random_case(rng: random.Random, n: int):
    """Gold tags with IOB1-style and broken sequences (I- after O, type changes), and
    non-overlapping predictions that sometimes hit a gold entity exactly."""
    gold, pred = [], []
    for _ in range(n):
        length = rng.randint(0, 9)
        tags = [rng.choice(["O", "O", "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "I-LOC", "B-LOC"]) for _ in range(length)]
        gold.append(tags)
        spans, pos = [], 0
        gold_spans = tags_to_spans(to_bio2(tags))
        while pos < length:
            hit = next((s for s in gold_spans if s.start == pos), None)
            if hit and rng.random() < 0.6:
                spans.append((hit.start, hit.end, hit.label if rng.random() < 0.8 else rng.choice(TYPES)))
                pos = hit.end
            elif rng.random() < 0.3:
                end = min(length, pos + rng.randint(1, 3))
                spans.append((pos, end, rng.choice(TYPES)))
                pos = end
            else:
                pos += 1
        pred.append(spans)
    return gold, pred


@pytest.mark.parametrize("seed", range(5))
def test_counts_sum_to_ner_scores_exactly(seed):
    gold, pred = _random_case(random.Random(seed), 120)
    counts = sc.sentence_counts(gold, pred)
    scores = ner_scores(gold, pred, max_span_len=3)
    got = sc.check_against(counts, scores)
    assert (got["precision"], got["recall"], got["f1"]) == (scores["precision"], scores["recall"], scores["f1"])
    for (tp, n_pred, n_gold), tags, spans in zip(counts, gold, pred):  # an oracle per sentence via glode.spans
        g = set(tags_to_spans(to_bio2(tags)))
        p = {(s[0], s[1], s[2]) for s in spans}
        assert (n_gold, n_pred, tp) == (len(g), len(p), len({(s.start, s.end, s.label) for s in g} & p))
    assert counts[:, 0].sum() > 0 and counts[:, 0].sum() < counts[:, 2].sum()


def test_mismatch_is_loud_and_roundtrip():
    gold, pred = _random_case(random.Random(9), 40)
    counts = sc.sentence_counts(gold, pred)
    scores = ner_scores(gold, pred, max_span_len=3)
    counts[0, 1] += 1  # one more predicted entity than the metrics saw
    with pytest.raises(sc.CountMismatch, match="precision"):
        sc.check_against(counts, scores, "m.json")
    counts[0, 1] -= 1
    stored = json.loads(json.dumps(sc.encode_counts(counts)))
    assert np.array_equal(sc.decode_counts(stored), counts)
    assert sc.decode_counts(sc.encode_counts(np.zeros((0, 3), dtype=int))).shape == (0, 3)


def test_script_reproduces_the_evaluate_stage(tmp_path):
    """A saved (random, tiny) model: the script's counts give the evaluate stage's F1; a
    metrics file from other predictions makes it fail without writing anything."""
    for name, n, seed in (("en/train", 30, 1), ("en/dev", 6, 2), ("de/train", 10, 3), ("de/test", 25, 4)):
        write_corpus(tmp_path / f"data/{name}.txt", n, seed=seed)
    files = {"source_train": tmp_path / "data/en/train.txt", "source_dev": tmp_path / "data/en/dev.txt",
             "target_unlabelled": tmp_path / "data/de/train.txt", "target_test": tmp_path / "data/de/test.txt"}
    prepare_tables(files, DataSettings(labels=TYPES), tmp_path / "tables")
    encoder = build_tiny_encoder(tmp_path / "encoder", words=all_words())
    model, tok = build_model(encoder, SpanModelConfig(classes=["O", *TYPES], max_span_len=3, max_seq_len=24), seed=0)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 0.6, 0.6, 0.6]))
    model.freeze_word_embeddings(True)
    model_dir = save_model(model, tok, tmp_path / "models/r1", encoder)
    test = tmp_path / "tables/target_test.parquet"
    metrics = evaluate_model(model_dir, test, tmp_path / "metrics/r1.json", EvaluateSettings(batch_size=4),
                             progress=False)
    assert metrics["pred_entities"] > 0
    out = tmp_path / "counts.json"
    args = ["--model", str(model_dir), "--test", str(test), "--encoder", str(encoder), "--batch-size", "8",
            "--metrics", str(tmp_path / "metrics/r1.json"), "--out", str(out)]
    assert sc.main(args) == 0
    stored = json.loads(out.read_text())
    counts = sc.decode_counts(stored)
    assert stored["f1"] == metrics["f1"] and len(counts) == 25
    assert counts[:, 1].sum() == metrics["pred_entities"] and counts[:, 2].sum() == metrics["gold_entities"]
    (tmp_path / "metrics/other.json").write_text(json.dumps({**metrics, "f1": metrics["f1"] + 1e-9}))
    out.unlink()
    assert sc.main([*args[:-4], "--metrics", str(tmp_path / "metrics/other.json"), "--out", str(out)]) == 1
    assert not out.exists()
