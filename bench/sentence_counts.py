"""Per test sentence entity counts of one model, for the paired bootstrap of protocol v3.

    python bench/sentence_counts.py --model models/r1 --test tables/target_test.parquet \
        --encoder encoder --metrics metrics/r1.json --out counts.json

Loads the model folder and the prepared test table with glode's own functions (whatever
``glode`` is first on PYTHONPATH: bench/results.py runs this with the work folder's snapshot
first), predicts with the evaluate stage's decoding, and counts per sentence the true
positives, predicted and gold entities under seqeval strict IOB2 (the very entity sets
``seqeval.metrics`` compares, ``seqeval.scheme.Entities``; gold through ``to_bio2``,
predictions through ``spans_to_tags`` as in ``glode.metrics.ner_scores``). The summed counts
must reproduce the stage's metrics JSON (precision, recall and F1 through ``glode.metrics.prf``,
bit for bit); otherwise the script exits non-zero and writes nothing: counts that do not
describe the measured cell must not feed a bootstrap.

The output holds the three columns as comma-separated strings (compact in a cell JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


class CountMismatch(RuntimeError):
    """Summed per-sentence counts do not reproduce the cell's metrics."""


def sentence_counts(gold_tags: list[list[str]], pred_spans: list[list]) -> np.ndarray:
    """(sentences, 3) int array of (true positives, predicted, gold) entities per sentence,
    seqeval strict IOB2: an entity is (start, end, type) of ``seqeval.scheme.Entities``."""
    from seqeval.scheme import IOB2, Entities

    from glode.spans import spans_to_tags, to_bio2

    if len(gold_tags) != len(pred_spans):
        raise ValueError(f"{len(gold_tags)} gold sentences but {len(pred_spans)} predicted")
    gold_bio = [to_bio2(t) for t in gold_tags]
    pred_bio = [spans_to_tags(p, len(t)) for p, t in zip(pred_spans, gold_bio)]
    gold_ents = Entities(gold_bio, IOB2).entities
    pred_ents = Entities(pred_bio, IOB2).entities
    out = np.zeros((len(gold_bio), 3), dtype=np.int64)
    for i, (g, p) in enumerate(zip(gold_ents, pred_ents)):
        g, p = set(g), set(p)
        out[i] = (len(g & p), len(p), len(g))
    return out


def check_against(counts: np.ndarray, metrics: dict, where: str = "metrics") -> dict:
    """Precision, recall and F1 of the summed counts; CountMismatch unless they equal ``metrics``'s exactly."""
    from glode.metrics import prf

    tp, pred, gold = (int(x) for x in np.asarray(counts).sum(axis=0))
    got = prf(tp, pred, gold)
    bad = {k: (got[k], metrics.get(k)) for k in ("precision", "recall", "f1") if got[k] != metrics.get(k)}
    if bad:
        raise CountMismatch(f"{where}: per-sentence counts (tp {tp}, predicted {pred}, gold {gold}) give "
                            + ", ".join(f"{k} {a!r} but the metrics say {b!r}" for k, (a, b) in bad.items())
                            + "; the predictions differ from the evaluate stage's, so these counts do not describe the cell")
    return got


def encode_counts(counts: np.ndarray) -> dict:
    c = np.asarray(counts)
    return {"sentences": int(len(c)), **{k: ",".join(map(str, c[:, j].tolist())) for j, k in enumerate(("tp", "pred", "gold"))}}


def decode_counts(stored: dict) -> np.ndarray:
    cols = [np.array([int(x) for x in stored[k].split(",")] if stored[k] else [], dtype=np.int64) for k in ("tp", "pred", "gold")]
    out = np.stack(cols, axis=1) if cols[0].size else np.zeros((0, 3), dtype=np.int64)
    if len(out) != stored["sentences"]:
        raise ValueError(f"stored counts hold {len(out)} sentences, expected {stored['sentences']}")
    return out


def model_counts(model_dir: Path, test_table: Path, encoder_dir: Path | None, batch_size: int) -> np.ndarray:
    """Predict the test table with the saved model exactly as the evaluate stage does; count."""
    from glode.features import SentenceEncoder
    from glode.model import load_model
    from glode.corpus import encode_table, predict_corpus

    model, tokenizer, _ = load_model(model_dir, encoder_dir)
    cfg = model.config
    encoder = SentenceEncoder(tokenizer, cfg.max_span_len, cfg.max_seq_len)
    sentences, encoded = encode_table(encoder, test_table, None)
    predictions = predict_corpus(model, tokenizer, encoded, batch_size, progress=False)
    return sentence_counts([s.tags for s in sentences], predictions)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--metrics", type=Path, required=True, help="the evaluate stage's metrics JSON to reproduce")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--encoder", type=Path, help="encoder folder (frozen word embeddings); default: as saved")
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args(argv)
    counts = model_counts(args.model, args.test, args.encoder, args.batch_size)
    try:
        scores = check_against(counts, json.loads(args.metrics.read_text()), str(args.metrics))
    except CountMismatch as exc:
        print(f"sentence_counts: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**encode_counts(counts), **scores, "model": str(args.model)}) + "\n")
    print(f"{args.model}: {len(counts)} sentences, F1 {scores['f1']:.6f} reproduced from per-sentence counts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
