"""The ``pseudo_label@rN`` stage: the previous round's model scores every candidate span of the
target corpus; span vectors of target and source spans for denoising (docs/METHOD.md §2, §6).

The span vectors are the model's span feature in eval mode (or the pretrained encoder's,
``denoise.features: encoder``), reduced to ``denoise.dim`` dimensions and L2-normalised
(glode/denoising/projection.py); the span table is glode/corpus.py's, the folder layout
glode/pseudo_folder.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from glode.atomic import atomic_dir
from glode.corpus import encoding_stats, gold_labels, has_gold, load_for_scoring, span_frame, target_span_table
from glode.denoising.projection import fit_projection, fitting_sentences
from glode.errors import GlodeError, ParamError
from glode.progress import progress as progress_bar
from glode.pseudo_folder import (SOURCE_LABELS, SOURCE_REPS, SPANS_FILE, SPANS_KIND, TARGET_REPS, array_writer,
                                 save_array, spans_schema, write_pseudo_manifest)
from glode.scoring import score_spans
from glode.settings import PROJECTION_SAMPLE, DenoiseSettings, DeviceSettings, EvaluateSettings
from glode.tables import read_sentences, table_writer

#: sentences scored, projected and written at a time. The stage holds one chunk's span features
#: (~70,000 spans of CoNLL text x the feature width in float32, ~220 MB with the embedded
#: encoder) besides the encoded corpora, however large the corpus (docs/SCALE.md "Corpus scale")
CHUNK_SENTENCES = 1024


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
    (``vectors.dim`` and ``vectors.projection``: :func:`~glode.denoising.projection.fit_projection`,
    seeded by ``vectors.seed``).

    ``vectors.features="model"`` takes the vectors from the round's model (its span feature in
    eval mode); ``"encoder"`` from the pretrained encoder in ``encoder_dir``, which no pseudo
    label has trained, so the views built on them can disagree with the model (docs/METHOD.md
    §6, finding 4). That costs one more encoder pass over both corpora.

    Streams: the projection is fitted on the vectors of a seeded sample of sentences
    (:func:`~glode.denoising.projection.fitting_sentences`, scored first), then each corpus is
    scored, projected and appended to its files :data:`CHUNK_SENTENCES` sentences at a time, so
    memory does not grow with the span vectors of the corpus. The folder is built under a
    temporary name and renamed into place when complete; its manifest (``glode_pseudo.json``)
    carries the format version, the classes and what the sequence length cost (long sentences
    are scored in windows; lost spans are counted). The models run on ``device`` (default
    settings: ``auto``).
    """
    device = device or DeviceSettings()
    from_model = vectors.features == "model"
    if not from_model and (encoder_dir is None or not Path(encoder_dir).is_dir()):
        raise GlodeError(f"{encoder_dir}: no encoder folder for denoise.features=encoder; run the encoder stage "
                         "(dvc repro encoder)")
    model, tokenizer, meta, enc, target = load_for_scoring(model_dir, tables_dir, device)
    classes = model.config.classes
    span_vectors = (_model_vectors(model, tokenizer.pad_token_id, scoring.batch_size, device.precision) if from_model
                    else _encoder_vectors(encoder_dir, model.config, vectors.seed, tokenizer.pad_token_id,
                                          scoring.batch_size, device))
    check_dim(vectors.dim, span_vectors.width, vectors.features)
    t_enc = enc.encode([s.tokens for s in target])
    source = read_sentences(tables_dir / "source_train.parquet")
    s_enc = enc.encode([s.tokens for s in source])
    s_frame = span_frame(source, s_enc)
    index = {c: i for i, c in enumerate(classes)}
    s_labels = np.array([index[g] for g in gold_labels(source, s_frame)], dtype=np.int64)
    projection = _fit_projection(span_vectors, t_enc, s_enc, vectors)
    n_target = int(sum(len(e.span_word_start) for e in t_enc))

    info = {"target_spans": n_target, "source_spans": len(s_frame), "dim": projection.dim,
            "projection": vectors.projection, "features": vectors.features,
            "encoding": {"target_unlabelled": encoding_stats(t_enc), "source_train": encoding_stats(s_enc)}}
    if device.precision != "fp32":  # (evaluate.precision; absent at fp32, so fp32 folders keep their bytes)
        info["scoring_precision"] = device.precision
    with_gold = has_gold(target)
    bar = progress_bar(total=len(target) + len(source), desc="scoring spans", unit="sentence", enabled=progress)
    with atomic_dir(out_dir) as tmp:
        with (table_writer(tmp / SPANS_FILE, SPANS_KIND, spans_schema(classes),
                           extra_metadata={"classes": classes, "model_round": meta.get("round")}) as write_spans,
              array_writer(tmp / TARGET_REPS, n_target, projection.dim) as write_target):
            for lo in range(0, len(target), CHUNK_SENTENCES):
                hi = min(lo + CHUNK_SENTENCES, len(target))
                frame, features = target_span_table(model, tokenizer, target[lo:hi], t_enc[lo:hi], scoring.batch_size,
                                                     False, with_features=from_model, precision=device.precision,
                                                     first_id=lo, with_gold=with_gold)
                write_spans(frame)
                write_target(projection.apply(features if from_model else span_vectors(t_enc[lo:hi])))
                bar.update(hi - lo)
        with array_writer(tmp / SOURCE_REPS, len(s_frame), projection.dim) as write_source:
            for lo in range(0, len(source), CHUNK_SENTENCES):
                write_source(projection.apply(span_vectors(s_enc[lo : lo + CHUNK_SENTENCES])))
                bar.update(min(CHUNK_SENTENCES, len(source) - lo))
        bar.close()
        save_array(tmp / SOURCE_LABELS, s_labels)
        manifest = write_pseudo_manifest(tmp, classes, model_round=meta.get("round"), **info)
    return manifest


def check_dim(dim: int, width: int, features: str) -> None:
    """``denoise.dim`` above the span vectors' width would silently mean the full vectors (0)."""
    if dim > width:
        raise ParamError("denoise.dim", f"{dim} is more than the {width} dimensions of the span vectors "
                         f"(denoise.features: {features}); use at most {width}, or 0 for the full vectors")


class _SpanVectors:
    """``vectors(encoded sentences) -> (spans, width) float32``: a model's span features in eval
    mode, the first ``width`` columns of them."""

    def __init__(self, model, width: int, pad_id: int, batch_size: int, precision: str):
        self.model, self.width, self.pad_id, self.batch_size, self.precision = model, width, pad_id, batch_size, precision

    def __call__(self, encoded: Sequence) -> np.ndarray:
        scores = score_spans(self.model, encoded, self.pad_id, batch_size=self.batch_size, with_features=True,
                             progress=False, precision=self.precision)
        if not scores:
            return np.zeros((0, self.width), dtype=np.float32)
        return np.concatenate([sc.features[:, : self.width] for sc in scores])


def _model_vectors(model, pad_id: int, batch_size: int, precision: str) -> _SpanVectors:
    """The round's model's span feature (eval mode)."""
    return _SpanVectors(model, model.feature_dim, pad_id, batch_size, precision)


def _encoder_vectors(encoder_dir: Path, config, seed: int, pad_id: int, batch_size: int,
                     device: DeviceSettings) -> _SpanVectors:
    """The pretrained encoder's view of a span: its last-layer vectors at the span's first and
    last sub-token, concatenated. The span model built on the encoder for it is fresh; its
    untrained width, length and case embeddings are left out."""
    from glode.device import place_model
    from glode.model import build_model

    plain, _ = build_model(encoder_dir, config, seed=seed)
    place_model(plain, device.device, device.precision)
    return _SpanVectors(plain, 2 * plain.encoder.config.hidden_size, pad_id, batch_size, device.precision)


def _fit_projection(span_vectors: _SpanVectors, t_enc: Sequence, s_enc: Sequence, vectors: DenoiseSettings):
    """The projection, fitted on the span vectors of a seeded sample of target and source
    sentences (``"random"`` needs none)."""
    fit = np.zeros((0, span_vectors.width), dtype=np.float32)
    if vectors.projection != "random" and 0 < vectors.dim < span_vectors.width:
        counts = [np.array([len(e.span_word_start) for e in corpus]) for corpus in (t_enc, s_enc)]
        t_ids, s_ids = fitting_sentences(counts, PROJECTION_SAMPLE, vectors.seed)
        fit = np.concatenate([span_vectors([t_enc[i] for i in t_ids]), span_vectors([s_enc[i] for i in s_ids])])
    return fit_projection(fit, vectors.dim, vectors.seed, vectors.projection)
