"""The ``pseudo_label@rN`` stage: the previous round's model scores every candidate span of the
target corpus; span vectors of target and source spans for denoising (docs/METHOD.md §2, §6).

The span vectors are the model's span feature in eval mode (or the pretrained encoder's,
``denoise.features: encoder``), reduced to ``denoise.dim`` dimensions (:func:`reduce_dim`) and
L2-normalised; the folder layout is glode/pseudo_folder.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from glode.atomic import atomic_dir
from glode.corpus import check_labels_match, encoding_stats, table_labels
from glode.errors import GlodeError, ParamError
from glode.features import EncodedSentence, SentenceEncoder
from glode.predict import kept_entity_mask, score_spans
from glode.progress import progress as progress_bar
from glode.pseudo_folder import (SOURCE_LABELS, SOURCE_REPS, SPANS_FILE, SPANS_KIND, TARGET_REPS, save_array,
                                 write_pseudo_manifest)
from glode.settings import PROJECTION_SAMPLE, DenoiseSettings, DeviceSettings, EvaluateSettings
from glode.spans import tags_to_spans
from glode.tables import read_sentences, write_table


def pseudo_label_round(
    model_dir: Path,
    tables_dir: Path,
    out_dir: Path,
    vectors: DenoiseSettings,
    scoring: EvaluateSettings,
    encoder_dir: Path | None = None,
    progress: bool = True,
    device: DeviceSettings | None = None,
) -> dict:
    """Score target and source candidate spans with a round's model; write spans + vectors
    (``vectors.dim`` and ``vectors.projection``: :func:`reduce_dim`, seeded by ``vectors.seed``).

    ``vectors.features="model"`` takes the vectors from the round's model (its span feature in
    eval mode); ``"encoder"`` from the pretrained encoder in ``encoder_dir``, which no pseudo
    label has trained, so the views built on them can disagree with the model (docs/METHOD.md
    §6, finding 4). That costs one more encoder pass over both corpora.

    The folder is built under a temporary name and renamed into place when complete; its
    manifest (``glode_pseudo.json``) carries the format version, the classes and what the
    sequence length cost (long sentences are scored in windows; lost spans are counted). The
    models run on ``device`` (default settings: ``auto``).
    """
    device = device or DeviceSettings()
    from_model = vectors.features == "model"
    if not from_model and (encoder_dir is None or not Path(encoder_dir).is_dir()):
        raise GlodeError(f"{encoder_dir}: no encoder folder for denoise.features=encoder; run the encoder stage "
                         "(dvc repro encoder)")
    model, tokenizer, meta, enc, target = load_for_scoring(model_dir, tables_dir, device)
    check_dim(vectors.dim, model.feature_dim if from_model else 2 * model.encoder.config.hidden_size, vectors.features)
    classes = model.config.classes
    t_enc = enc.encode([s.tokens for s in target])
    frame, t_vec = target_span_table(model, tokenizer, target, t_enc, scoring.batch_size, progress,
                                     with_features=from_model, precision=device.precision)
    source = read_sentences(tables_dir / "source_train.parquet")
    s_enc = enc.encode([s.tokens for s in source])
    s_frame = span_frame(source, s_enc)
    index = {c: i for i, c in enumerate(classes)}
    s_labels = np.array([index[g] for g in gold_labels(source, s_frame)], dtype=np.int64)
    if from_model:
        s_vec = _model_span_vectors(model, s_enc, tokenizer.pad_token_id, scoring.batch_size, progress, device.precision)
    else:
        config = model.config
        del model
        t_vec, s_vec = _encoder_span_vectors(encoder_dir, config, vectors.seed, (t_enc, s_enc), tokenizer.pad_token_id,
                                             scoring.batch_size, progress, device)
    t_red, s_red = reduce_dim([t_vec, s_vec], vectors.dim, vectors.seed, projection=vectors.projection)

    info = {"target_spans": len(frame), "source_spans": len(s_frame), "dim": int(t_red.shape[1]),
            "projection": vectors.projection, "features": vectors.features,
            "encoding": {"target_unlabelled": encoding_stats(t_enc), "source_train": encoding_stats(s_enc)}}
    with atomic_dir(out_dir) as tmp:
        write_table(frame, tmp / SPANS_FILE, SPANS_KIND,
                    extra_metadata={"classes": classes, "model_round": meta.get("round")})
        save_array(tmp / TARGET_REPS, t_red)
        save_array(tmp / SOURCE_REPS, s_red)
        save_array(tmp / SOURCE_LABELS, s_labels)
        manifest = write_pseudo_manifest(tmp, classes, model_round=meta.get("round"), **info)
    return manifest


def check_dim(dim: int, width: int, features: str) -> None:
    """``denoise.dim`` above the span vectors' width would silently mean the full vectors (0)."""
    if dim > width:
        raise ParamError("denoise.dim", f"{dim} is more than the {width} dimensions of the span vectors "
                         f"(denoise.features: {features}); use at most {width}, or 0 for the full vectors")


def _model_span_vectors(model, encoded, pad_id: int, batch_size: int, progress: bool,
                        precision: str = "fp32") -> np.ndarray:
    """The round's model's span feature (eval mode) of every candidate span of ``encoded``."""
    scores = score_spans(model, encoded, pad_id, batch_size=batch_size, with_features=True,
                         progress=progress, desc="scoring source spans", precision=precision)
    return np.concatenate([sc.features for sc in scores])


def _encoder_span_vectors(encoder_dir: Path, config, seed: int, corpora, pad_id: int, batch_size: int,
                          progress: bool, device: DeviceSettings | None = None) -> list[np.ndarray]:
    """The pretrained encoder's view of every candidate span of each corpus (target, source):
    its last-layer vectors at the span's first and last sub-token, concatenated. The span model
    built on the encoder for it is fresh; its untrained width, length and case embeddings are
    left out."""
    from glode.device import place_model
    from glode.model import build_model

    device = device or DeviceSettings()
    plain, _ = build_model(encoder_dir, config, seed=seed)
    place_model(plain, device.device, device.precision)
    width = 2 * plain.encoder.config.hidden_size
    out = []
    for encoded, desc in zip(corpora, ("encoder: target spans", "encoder: source spans")):
        scores = score_spans(plain, encoded, pad_id, batch_size=batch_size, with_features=True, progress=progress,
                             desc=desc, precision=device.precision)
        out.append(np.concatenate([sc.features[:, :width] for sc in scores]))
    return out


def reduce_dim(vectors: Sequence[np.ndarray], dim: int, seed: int, sample: int = PROJECTION_SAMPLE,
               chunk: int = 16384, projection: str = "svd") -> list[np.ndarray]:
    """Project every array to ``dim`` dimensions, then L2-normalise rows. ``dim <= 0`` or
    ``>= d`` keeps the full feature.

    ``projection`` (docs/METHOD.md §6): ``"svd"`` projects onto the top ``dim`` right singular
    vectors of the *uncentred* union (fit on a seeded sample of ``sample`` rows), the best
    rank-``dim`` fit of the raw vectors; ``"random"`` is a fixed Gaussian projection drawn from
    ``seed`` (the reference's untrained projection head, without its bias); ``"pca"`` centres
    first, the old behaviour kept for comparison: with ~96% of spans O, centring turns the O
    mean into an anti-entity direction and the O prototype stops describing O spans. With fewer
    spans than ``dim`` the missing axes are zero columns, so the output is always ``dim`` wide.

    Works chunk by chunk: memory beyond the inputs is the fitting sample plus the float32
    outputs, never a float64 copy of the corpus (span features of a 3000-sentence CoNLL corpus
    are about 2 GB).
    """
    choices = DenoiseSettings.params()["projection"].choices
    if projection not in choices:  # (the settings refuse it first)
        raise ValueError(f"projection must be one of {', '.join(choices)}, got {projection!r}")
    sizes = [len(v) for v in vectors]
    total = int(sum(sizes))
    d = vectors[0].shape[1]
    mean, basis = _projection(vectors, sizes, dim, seed, sample, projection) if 0 < dim < d else (0.0, None)
    res = []
    bar = progress_bar(total=total, desc="projecting span vectors", unit="span")
    for v in vectors:
        out = np.empty((len(v), dim if basis is not None else d), dtype=np.float32)
        for lo in range(0, len(v), chunk):
            x = v[lo : lo + chunk].astype(np.float64)
            if basis is not None:
                x = (x - mean) @ basis.T
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            out[lo : lo + chunk] = x / np.maximum(norm, 1e-12)
            bar.update(len(x))
        res.append(out)
    bar.close()
    return res


def _projection(vectors: Sequence[np.ndarray], sizes: list[int], dim: int, seed: int, sample: int,
                projection: str) -> tuple[np.ndarray | float, np.ndarray]:
    """(mean, basis): ``x -> (x - mean) @ basis.T`` maps a vector to ``dim`` dimensions."""
    rng = np.random.default_rng(seed)
    if projection == "random":
        return 0.0, rng.standard_normal((dim, vectors[0].shape[1]))
    total = int(sum(sizes))
    rows = np.arange(total) if total <= sample else np.sort(rng.choice(total, sample, replace=False))
    offsets = np.cumsum([0] + sizes)
    which = np.searchsorted(offsets, rows, side="right") - 1
    fit = np.concatenate([vectors[a][rows[which == a] - offsets[a]] for a in range(len(vectors))]).astype(np.float64)
    mean = fit.mean(axis=0) if projection == "pca" else 0.0
    _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
    del fit
    # fewer rows than dim give fewer axes: the rest are zero columns (no effect on cosines)
    basis = np.zeros((dim, vectors[0].shape[1]))
    basis[: min(dim, len(vt))] = vt[:dim]
    # fix each axis's sign so the projection does not depend on LAPACK's choice
    signs = np.sign(basis[np.arange(dim), np.abs(basis).argmax(axis=1)])
    return mean, basis * signs[:, None]


def span_frame(sentences, encoded: Sequence[EncodedSentence]) -> pd.DataFrame:
    """sentence_id, start, end, text of every candidate span, in corpus order."""
    sid, start, end, text = [], [], [], []
    for i, (s, e) in enumerate(zip(sentences, encoded)):
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


def gold_labels(sentences, frame: pd.DataFrame) -> np.ndarray:
    """Gold class name of each span row ("O" where no gold entity has exactly that extent)."""
    lookup = {}
    for i, s in enumerate(sentences):
        for sp in tags_to_spans(s.tags):
            lookup[(i, sp.start, sp.end)] = sp.label
    return np.array(
        [lookup.get((int(a), int(b), int(c)), "O") for a, b, c in zip(frame.sentence_id, frame.start, frame.end)],
        dtype=object,
    )


def target_span_table(model, tokenizer, target, encoded, batch_size: int, progress: bool, with_features: bool,
                      precision: str = "fp32"):
    """Every candidate span of the target corpus with the model's class probabilities, its
    argmax, whether it is a kept entity (non-O and not overlapped by a better one), and gold."""
    classes = model.config.classes
    scores = score_spans(model, encoded, tokenizer.pad_token_id, batch_size=batch_size, with_features=with_features,
                         progress=progress, desc="scoring target spans", precision=precision)
    frame = span_frame(target, encoded)
    probs = np.concatenate([sc.probs for sc in scores]).astype(np.float32)
    for c, name in enumerate(classes):
        frame[name] = probs[:, c]
    frame["label"] = np.array(classes, dtype=object)[probs.argmax(axis=1)]
    frame["kept"] = np.concatenate([kept_entity_mask(e, sc.probs) for e, sc in zip(encoded, scores)])
    frame["gold"] = gold_labels(target, frame) if has_gold(target) else pd.Series([None] * len(frame), dtype=object)
    features = np.concatenate([sc.features for sc in scores]) if with_features else None
    return frame, features


def load_for_scoring(model_dir: Path, tables_dir: Path, device: DeviceSettings | None = None):
    """A model folder ready to score the target corpus: the model (on ``device``), its tokenizer
    and metadata, a sentence encoder with its span cap and sequence length, and the target sentences."""
    from glode.device import place_model
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
