"""What each DVC stage does, as plain functions with explicit parameters.

torch, the model code and seqeval are imported inside the functions that need them, so
that the light stages (prepare, report) start in a second.

Stage scripts in ``stages/`` only parse options and call these; tests call them directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence


from glode.atomic import atomic_dir, write_json
from glode.conll import read_conll_counts
from glode.errors import GlodeError, InputError, ParamError
from glode.params import check_label_sets
from glode.tables import SENTENCES, read_sentences, sentences_frame, write_table

#: Table names written by the prepare stage.
TABLES = ("source_train", "source_dev", "target_unlabelled", "target_test")


def span_cap(target: str, max_span_len: int, max_span_len_char: int, char_languages: Sequence[str]) -> int:
    """The span cap for a target language: character-tokenised languages need a larger one."""
    cap = max_span_len_char if target in set(char_languages) else max_span_len
    if cap < 1:
        raise ParamError("model.max-span-len", f"must be >= 1, got {cap}")
    return cap


def prepare_tables(
    files: dict[str, Path],
    labels: Sequence[str],
    out_dir: Path,
    max_sentences: dict[str, int] | None = None,
    ignore_labels: Sequence[str] = (),
) -> dict:
    """Read and validate the four CoNLL inputs, write one parquet table each plus stats.json.

    Every file is read and checked before anything is written, and the tables folder is
    replaced as a whole, so bad input leaves the previous tables (or none). Entity types in
    ``ignore_labels`` are read as O. A label that the source training data never shows is an
    error (the model could not learn it); one the target test set never shows is a warning
    in ``stats.json`` (``warnings``), since its predictions can only be false positives there.
    """
    labels = list(labels)
    check_label_sets(labels, ignore_labels)
    stats = {}
    frames = {}
    warnings = []
    for name in TABLES:
        sentences, counts = read_conll_counts(files[name], labels, ignore_labels)
        warnings += counts["warnings"]
        limit = (max_sentences or {}).get(name, 0)
        if limit and limit > 0:
            sentences = sentences[:limit]
        frames[name] = sentences_frame(sentences)
        per_type = {lab: 0 for lab in labels}
        for spans in frames[name]["spans"]:
            for sp in spans:
                per_type[sp["label"]] += 1
        stats[name] = {
            "file": str(files[name]),
            "sentences": len(sentences),
            "tokens": int(sum(len(s.tokens) for s in sentences)),
            "entities": int(sum(per_type.values())),
            "per_type": per_type,
            "ignored_entities": counts["ignored"],
        }
    if not stats["target_unlabelled"]["sentences"]:
        raise InputError(files["target_unlabelled"], None, "the target corpus is empty after data.max-target-sentences; "
                         "set it to 0 (all) or a positive number")
    unlearnable = [lab for lab in labels if not stats["source_train"]["per_type"][lab]]
    if unlearnable:
        raise InputError(files["source_train"], None, f"entity types {unlearnable} of data.labels never occur in the "
                         "source training data (after data.max-source-sentences), so the model cannot learn them; "
                         "remove them from data.labels or use source data that has them")
    warnings += [f"{files['target_test']}: no {lab} entities in the target test set; the model's {lab} predictions "
                "there can only be false positives (a label set that differs between source and target? list the "
                "type under data.ignore-labels to drop it)"
                for lab in labels if not stats["target_test"]["per_type"][lab]]
    with atomic_dir(out_dir) as tmp:
        for name, frame in frames.items():
            write_table(frame, tmp / f"{name}.parquet", kind=SENTENCES, extra_metadata={"source_file": str(files[name])})
        write_json(tmp / "stats.json", {"labels": labels, "ignore_labels": list(ignore_labels), "tables": stats,
                                        "warnings": warnings})
    return {**stats, "warnings": warnings}


if TYPE_CHECKING:
    from glode.features import EncodedSentence, SentenceEncoder


def encode_table(encoder: SentenceEncoder, path: Path, label_index: dict[str, int] | None) -> tuple[list, list[EncodedSentence]]:
    """Read a sentence table and encode it; attach gold span labels when ``label_index`` is given."""
    sentences = read_sentences(path)
    encoded = encoder.encode([s.tokens for s in sentences], progress=True, desc=f"encoding {Path(path).name}")
    if label_index is not None:
        from glode.features import attach_gold
        from glode.spans import tags_to_spans

        for sent, enc in zip(sentences, encoded):
            attach_gold(enc, tags_to_spans(sent.tags), label_index)
    return sentences, encoded


def predict_corpus(model, tokenizer, encoded, batch_size: int, progress: bool = True):
    """Decoded entity spans per sentence (word level, end exclusive)."""
    from glode.predict import decode_spans, score_spans

    scores = score_spans(model, encoded, tokenizer.pad_token_id, batch_size=batch_size, progress=progress, desc="predicting")
    classes = model.config.classes
    return [decode_spans(enc, sc.probs, classes) for enc, sc in zip(encoded, scores)]


def evaluate_corpus(model, tokenizer, sentences, encoded, batch_size: int, progress: bool = True) -> dict:
    """seqeval strict-IOB2 entity scores plus the paper's span F1 on a labelled corpus."""
    from glode.metrics import ner_scores

    predictions = predict_corpus(model, tokenizer, encoded, batch_size, progress)
    scores = ner_scores(
        [s.tags for s in sentences],
        predictions,
        max_span_len=model.config.max_span_len,
        visible_words=[e.n_visible for e in encoded],
        lost_spans=[e.lost_spans for e in encoded],
    )
    scores.update(encoding_stats(encoded))
    return scores


def encoding_stats(encoded: Sequence[EncodedSentence]) -> dict[str, int]:
    """What the sequence length cost a corpus: sentences scored in several windows (nothing
    lost), candidate spans no window held whole (never scored), words whose sub-tokens were
    cut because one word exceeds a whole window."""
    return {
        "windowed_sentences": int(sum(bool(e.windows) for e in encoded)),
        "lost_spans": int(sum(len(e.lost_spans) for e in encoded)),
        "cut_words": int(sum(e.cut_words for e in encoded)),
    }


def train_source_model(
    tables_dir: Path,
    encoder_dir: Path,
    out_dir: Path,
    log_dir: Path,
    max_span_len: int,
    max_seq_len: int,
    train_cfg,
    eval_batch_size: int = 64,
    dev_every_epoch: bool = True,
    progress: bool = True,
) -> list[dict]:
    """Round 0: train on source gold spans (+ λ·MLM on target text) and save the model folder.

    The label set comes from the prepared tables (``stats.json``), so it always matches the data.
    """
    from glode.features import SentenceEncoder
    from glode.model import SpanModelConfig, build_model, save_model
    from glode.training import config_dict, train

    labels = table_labels(tables_dir)
    config = SpanModelConfig(classes=["O", *labels], max_span_len=max_span_len, max_seq_len=max_seq_len)
    model, tokenizer = build_model(encoder_dir, config, seed=train_cfg.seed)
    encoder = SentenceEncoder(tokenizer, max_span_len, max_seq_len)
    label_index = {c: i for i, c in enumerate(config.classes)}
    _, source = encode_table(encoder, tables_dir / "source_train.parquet", label_index)
    dev_sents, dev = encode_table(encoder, tables_dir / "source_dev.parquet", None)
    _, mlm = encode_table(encoder, tables_dir / "target_unlabelled.parquet", None)

    def evaluate(m) -> dict:
        s = evaluate_corpus(m, tokenizer, dev_sents, dev, eval_batch_size, progress=progress)
        return {"precision": s["precision"], "recall": s["recall"], "f1": s["f1"]}

    history = train(
        model,
        tokenizer,
        source,
        train_cfg,
        mlm_corpus=mlm,
        log_dir=log_dir,
        evaluate=evaluate if dev_every_epoch and dev else None,
        progress=progress,
    )
    save_model(
        model,
        tokenizer,
        out_dir,
        encoder_dir,
        train_params=config_dict(train_cfg),
        extra={"round": "r0", "history": history, "encoding": {"source_train": encoding_stats(source),
                                                                "target_unlabelled": encoding_stats(mlm)}},
    )
    return history


def evaluate_model(model_dir: Path, test_table: Path, metrics_path: Path, batch_size: int, encoder_dir: Path | None = None, progress: bool = True) -> dict:
    """Score a saved model on a labelled target table and write the metrics JSON."""
    from glode.features import SentenceEncoder
    from glode.model import load_model

    model, tokenizer, meta = load_model(model_dir, encoder_dir)
    cfg = model.config
    stats = Path(test_table).parent / "stats.json"
    if stats.is_file():  # tables written by the prepare stage: same label set as the model?
        check_labels_match(cfg.classes, table_labels(stats.parent), str(model_dir))
    encoder = SentenceEncoder(tokenizer, cfg.max_span_len, cfg.max_seq_len)
    sentences, encoded = encode_table(encoder, test_table, None)
    if not sentences:
        raise GlodeError(f"{test_table}: no test sentences")
    scores = evaluate_corpus(model, tokenizer, sentences, encoded, batch_size, progress)
    scores["round"] = meta.get("round")
    scores["max_span_len"] = cfg.max_span_len
    write_json(metrics_path, scores)
    return scores


def table_labels(tables_dir: Path) -> list[str]:
    """The entity label set the prepare stage validated the data against."""
    path = Path(tables_dir) / "stats.json"
    try:
        return list(json.loads(path.read_text(encoding="utf-8"))["labels"])
    except FileNotFoundError:
        raise GlodeError(f"{path}: missing; run the prepare stage first (dvc repro prepare)") from None
    except (KeyError, json.JSONDecodeError) as exc:
        raise GlodeError(f"{path}: unreadable ({exc}); rerun the prepare stage") from exc


def check_labels_match(model_classes: Sequence[str], labels: Sequence[str], where: str) -> None:
    """A model folder is usable on prepared tables only with the very label set (and order) they use."""
    if list(model_classes[1:]) != list(labels):
        raise GlodeError(
            f"{where}: the model was trained for labels {list(model_classes[1:])} but the prepared tables use "
            f"{list(labels)} (data.labels); retrain the model on these tables (dvc repro), or pass the model "
            "folder that was trained on them"
        )
