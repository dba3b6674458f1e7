"""The ``pseudo_label@rN`` stage: the previous round's model scores every candidate span of the
target corpus; span vectors of target and source spans for denoising (docs/METHOD.md §2, §6).

The span vectors are the model's span feature in eval mode (or the pretrained encoder's,
``denoise.features: encoder``), reduced to ``denoise.dim`` dimensions and L2-normalised
(glode/denoising/projection.py); the span table is glode/corpus.py's, the folder layout
glode/pseudo_folder.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from glode.atomic import atomic_dir
from glode.corpus import encoding_stats, gold_labels, load_for_scoring, span_frame, target_span_table
from glode.denoising.projection import reduce_dim
from glode.errors import GlodeError, ParamError
from glode.pseudo_folder import (SOURCE_LABELS, SOURCE_REPS, SPANS_FILE, SPANS_KIND, TARGET_REPS, save_array,
                                 write_pseudo_manifest)
from glode.scoring import score_spans
from glode.settings import DenoiseSettings, DeviceSettings, EvaluateSettings
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
    (``vectors.dim`` and ``vectors.projection``: :func:`~glode.denoising.projection.reduce_dim`, seeded by
    ``vectors.seed``).

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
