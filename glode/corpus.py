"""A prepared corpus as the span model sees it: encoded tables, the label set they were prepared
for, predictions and entity scores over a whole corpus, and the target span table (every
candidate span of the target corpus with a model's class probabilities) that the
``initial_labels`` and ``pseudo_label@rN`` steps start from.

The training, labelling and evaluation steps (``glode/steps/``) share these; torch, the model
code and seqeval are imported inside the functions, so that importing this module stays cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from glode.errors import GlodeError
from glode.settings import DeviceSettings
from glode.tables import read_sentences

if TYPE_CHECKING:
    from glode.features import EncodedSentence, SentenceEncoder


def table_labels(tables_dir: Path) -> list[str]:
    """The entity label set the prepare stage validated the data against."""
    path = Path(tables_dir) / "stats.json"
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["labels"])
    except FileNotFoundError:
        raise GlodeError(f"{path}: missing; run the prepare stage first (dvc repro prepare)") from None
    except (KeyError, json.JSONDecodeError) as exc:
        raise GlodeError(f"{path}: unreadable ({exc}); rerun the prepare stage") from exc


def training_data(tables_dir: Path) -> dict[str, dict]:
    """The source file and sentence count of each table a training run reads (from ``stats.json``),
    for the model card; empty where the tables carry no statistics."""
    path = Path(tables_dir) / "stats.json"
    if not path.is_file():
        return {}
    tables = json.loads(path.read_text(encoding="utf-8")).get("tables", {})
    return {name: {"file": t.get("file"), "sentences": t.get("sentences")} for name, t in tables.items()
            if name in ("source_train", "source_dev", "target_unlabelled")}


def check_labels_match(model_classes: Sequence[str], labels: Sequence[str], where: str) -> None:
    """A model folder is usable on prepared tables only with the very label set (and order) they use."""
    if list(model_classes[1:]) != list(labels):
        raise GlodeError(
            f"{where}: the model was trained for labels {list(model_classes[1:])} but the prepared tables use "
            f"{list(labels)} (data.labels); retrain the model on these tables (dvc repro), or pass the model "
            "folder that was trained on them"
        )


def encode_table(encoder: SentenceEncoder, path: Path, label_index: dict[str, int] | None) -> tuple[list, list[EncodedSentence]]:
    """Read a sentence table and encode it; attach gold span labels when ``label_index`` is given.
    Gold entities that the sequence length cuts out are warned about on the terminal
    (:func:`warn_lost_gold`)."""
    sentences = read_sentences(path)
    encoded = encoder.encode([s.tokens for s in sentences], progress=True, desc=f"encoding {Path(path).name}")
    warn_lost_gold(path, sentences, encoded, encoder.max_span_len, encoder.max_seq_len)
    if label_index is not None:
        from glode.features import attach_gold
        from glode.spans import tags_to_spans

        for sent, enc in zip(sentences, encoded):
            attach_gold(enc, tags_to_spans(sent.tags), label_index)
    return sentences, encoded


def lost_gold_entities(sentences, encoded: Sequence[EncodedSentence], max_span_len: int) -> tuple[int, int]:
    """(lost, total): gold entities within the span cap that no window holds whole (never scored,
    never trained on), and all gold entities within the cap."""
    from glode.spans import tags_to_spans

    lost = total = 0
    for sent, enc in zip(sentences, encoded):
        if not sent.tags:
            continue
        gone = {(int(a), int(b)) for a, b in enc.lost_spans}
        for sp in tags_to_spans(sent.tags):
            if sp.end - sp.start <= max_span_len:
                total += 1
                lost += (sp.start, sp.end) in gone
    return lost, total


def warn_lost_gold(path: Path, sentences, encoded: Sequence[EncodedSentence], max_span_len: int, max_seq_len: int) -> int:
    """Print a warning when ``model.max-seq-len`` is so short that gold entities fit in no window
    (they count as misses, and training never sees them); returns how many. The metrics record
    the count too (``gold_entities_truncated``), but a run should not have to be read to see it."""
    lost, total = lost_gold_entities(sentences, encoded, max_span_len)
    if lost:
        import sys

        print(f"warning: {path}: {lost} of {total} gold entities fit in no window of model.max-seq-len={max_seq_len} "
              "sub-tokens, so they are never scored or trained on (a miss in every score); raise model.max-seq-len",
              file=sys.stderr)
    return lost


def encoding_stats(encoded: Sequence[EncodedSentence]) -> dict[str, int]:
    """What the sequence length cost a corpus: sentences scored in several windows (nothing
    lost), candidate spans no window held whole (never scored), words whose sub-tokens were
    cut because one word exceeds a whole window."""
    return {
        "windowed_sentences": int(sum(bool(e.windows) for e in encoded)),
        "lost_spans": int(sum(len(e.lost_spans) for e in encoded)),
        "cut_words": int(sum(e.cut_words for e in encoded)),
    }


def predict_corpus(model, tokenizer, encoded, batch_size: int, progress: bool = True, precision: str = "fp32"):
    """Decoded entity spans per sentence (word level, end exclusive)."""
    from glode.scoring import decode_spans, score_spans

    scores = score_spans(model, encoded, tokenizer.pad_token_id, batch_size=batch_size, progress=progress, desc="predicting",
                         precision=precision)
    classes = model.config.classes
    return [decode_spans(enc, sc.probs, classes) for enc, sc in zip(encoded, scores)]


def evaluate_corpus(model, tokenizer, sentences, encoded, batch_size: int, progress: bool = True,
                    precision: str = "fp32") -> dict:
    """seqeval strict-IOB2 entity scores plus the paper's span F1 on a labelled corpus."""
    from glode.metrics import ner_scores

    predictions = predict_corpus(model, tokenizer, encoded, batch_size, progress, precision)
    scores = ner_scores(
        [s.tags for s in sentences],
        predictions,
        max_span_len=model.config.max_span_len,
        visible_words=[e.n_visible for e in encoded],
        lost_spans=[e.lost_spans for e in encoded],
    )
    scores.update(encoding_stats(encoded))
    return scores


@dataclass
class TrainingTables:
    """The prepared tables a training run reads, encoded for its model."""

    source: list[EncodedSentence]  #: source training sentences, with gold span labels
    dev_sentences: list  #: source dev sentences (their gold tags score each epoch)
    dev: list[EncodedSentence]
    target: list[EncodedSentence]  #: the unlabelled target corpus: MLM text, and the target labels' spans in rN

    def encoding_stats(self) -> dict[str, dict[str, int]]:
        """What the sequence length cost the two training corpora (recorded in the model folder)."""
        return {"source_train": encoding_stats(self.source), "target_unlabelled": encoding_stats(self.target)}


def encode_training_tables(encoder: SentenceEncoder, tables_dir: Path, classes: Sequence[str]) -> TrainingTables:
    """The source training (with gold labels for ``classes``), source dev and target tables, encoded."""
    label_index = {c: i for i, c in enumerate(classes)}
    _, source = encode_table(encoder, tables_dir / "source_train.parquet", label_index)
    dev_sentences, dev = encode_table(encoder, tables_dir / "source_dev.parquet", None)
    _, target = encode_table(encoder, tables_dir / "target_unlabelled.parquet", None)
    return TrainingTables(source, dev_sentences, dev, target)


def dev_scorer(tokenizer, dev_sentences, dev_encoded, batch_size: int, progress: bool = True, precision: str = "fp32"):
    """The per-epoch dev check of a training run: entity P/R/F1 on the source dev set, or None
    without dev sentences."""
    if not dev_encoded:
        return None

    def evaluate(model) -> dict:
        s = evaluate_corpus(model, tokenizer, dev_sentences, dev_encoded, batch_size, progress=progress,
                            precision=precision)
        return {"precision": s["precision"], "recall": s["recall"], "f1": s["f1"]}

    return evaluate


# --------------------------------------------------------------------------- the target span table


def span_frame(sentences, encoded: Sequence[EncodedSentence], first_id: int = 0) -> pd.DataFrame:
    """sentence_id, start, end, text of every candidate span, in corpus order (the sentences
    numbered from ``first_id``: a chunk of a corpus)."""
    sid, start, end, text = [], [], [], []
    for i, (s, e) in enumerate(zip(sentences, encoded), start=first_id):
        for a, b in zip(e.span_word_start.tolist(), e.span_word_end.tolist()):
            sid.append(i)
            start.append(a)
            end.append(b)
            text.append(" ".join(s.tokens[a:b]))
    return pd.DataFrame(
        {
            "sentence_id": np.asarray(sid, dtype=np.int64),
            "start": np.asarray(start, dtype=np.int32),
            "end": np.asarray(end, dtype=np.int32),
            "text": pd.Series(text, dtype=object),
        }
    )


def gold_labels(sentences, frame: pd.DataFrame, first_id: int = 0) -> np.ndarray:
    """Gold class name of each span row ("O" where no gold entity has exactly that extent)."""
    from glode.spans import tags_to_spans

    lookup = {}
    for i, s in enumerate(sentences, start=first_id):
        for sp in tags_to_spans(s.tags):
            lookup[(i, sp.start, sp.end)] = sp.label
    return np.array(
        [lookup.get((int(a), int(b), int(c)), "O") for a, b, c in zip(frame.sentence_id, frame.start, frame.end)],
        dtype=object,
    )


def target_span_table(model, tokenizer, target, encoded, batch_size: int, progress: bool, with_features: bool,
                      precision: str = "fp32", first_id: int = 0, with_gold: bool | None = None):
    """Every candidate span of the target corpus with the model's class probabilities, its
    argmax, whether it is a kept entity (non-O and not overlapped by a better one), and gold.

    ``target`` may be a chunk of the corpus whose first sentence is number ``first_id``;
    ``with_gold`` then says whether the corpus (not just the chunk) has gold (default: the
    chunk's :func:`has_gold`), so that every chunk fills the gold column alike."""
    from glode.scoring import kept_entity_mask, score_spans

    classes = model.config.classes
    scores = score_spans(model, encoded, tokenizer.pad_token_id, batch_size=batch_size, with_features=with_features,
                         progress=progress, desc="scoring target spans", precision=precision)
    frame = span_frame(target, encoded, first_id)
    probs = np.concatenate([sc.probs for sc in scores]).astype(np.float32)
    for c, name in enumerate(classes):
        frame[name] = probs[:, c]
    frame["label"] = np.array(classes, dtype=object)[probs.argmax(axis=1)]
    frame["kept"] = np.concatenate([kept_entity_mask(e, sc.probs) for e, sc in zip(encoded, scores)])
    with_gold = has_gold(target) if with_gold is None else with_gold
    frame["gold"] = gold_labels(target, frame, first_id) if with_gold else pd.Series([None] * len(frame), dtype=object)
    features = np.concatenate([sc.features for sc in scores]) if with_features else None
    return frame, features


def load_for_scoring(model_dir: Path, tables_dir: Path, device: DeviceSettings | None = None):
    """A model folder ready to score the target corpus: the model (on ``device``), its tokenizer
    and metadata, a sentence encoder with its span cap and sequence length, and the target sentences."""
    from glode.device import place_model
    from glode.features import SentenceEncoder
    from glode.model import load_model

    device = device or DeviceSettings()
    model, tokenizer, meta = load_model(model_dir)
    place_model(model, device.device, device.precision)
    check_labels_match(model.config.classes, table_labels(tables_dir), str(model_dir))
    enc = SentenceEncoder(tokenizer, model.config.max_span_len, model.config.max_seq_len)
    target = read_sentences(tables_dir / "target_unlabelled.parquet")
    if not target:
        raise GlodeError(f"{tables_dir / 'target_unlabelled.parquet'}: the target corpus is empty; nothing to pseudo-label")
    return model, tokenizer, meta, enc, target


def has_gold(sentences) -> bool:
    """The unlabelled corpus carries usable gold tags when any tag is not O."""
    return any(t != "O" for s in sentences for t in s.tags)
