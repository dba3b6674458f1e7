"""Self-training rounds: pseudo-label the target corpus, denoise, retrain (docs/METHOD.md §2-3).

Per round ``rN`` with predecessor ``prev`` (``params.yaml: rounds``):

* ``pseudo_label_round``: model ``prev`` scores every candidate span of the target corpus
  and of the source corpus; writes the target span table with class probabilities and the
  span representations (eval-mode span feature, projected without centring, L2-normalised)
  for denoising.
* ``initial_labels`` (once, from r0): the source model's soft labels Y0: spans predicted
  non-O that survive overlap resolution keep their distribution, all others are one-hot O.
* ``denoise_round``: previous labels + representations -> refined labels (``labels.parquet``)
  and statistics (``metrics/denoise/rN.json``).
* ``train_target_round``: a fresh model trained on source gold + target refined labels
  (+ λ·MLM), saved like r0.

Label tables are sparse: one row per span that is or might be an entity (non-O mass in its
old or new label, admitted as an entity by a view, or a gold entity); every candidate span
without a row is one-hot ``O``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from glode.atomic import atomic_dir, atomic_path
from glode.denoise import GATES, denoise, soft_scores, span_prf
from glode.errors import GlodeError, ParamError
from glode.features import EncodedSentence, SentenceEncoder
from glode.progress import progress as progress_bar
from glode.predict import kept_entity_mask, score_spans
from glode.spans import resolve_overlaps, tags_to_spans
from glode.tables import LABELS_KIND, read_sentences, read_table, write_table

SPANS_KIND = "target_spans"
TARGET_REPS = "target_reps.npy"
SOURCE_REPS = "source_reps.npy"
SOURCE_LABELS = "source_labels.npy"
SPANS_FILE = "spans.parquet"
LABELS_FILE = "labels.parquet"
PSEUDO_MANIFEST = "glode_pseudo.json"
PSEUDO_FORMAT_VERSION = 1


# --------------------------------------------------------------------------- helpers


def round_index(name: str) -> int:
    m = re.fullmatch(r"r(\d+)", name)
    if not m:
        raise ParamError("rounds", f"round name {name!r} must look like r1, r2, ...")
    return int(m.group(1))


def ema_weight(round_name: str, m_start: float, m_step: float, m_min: float) -> float:
    """EMA weight m of a round: ``m_start`` in r1, ``m_step`` less each later round, floored
    at ``m_min``. Depends on the round alone, so adding a round never changes earlier ones."""
    for name, value in (("denoise.m-start", m_start), ("denoise.m-min", m_min)):
        if not 0.0 <= value <= 1.0:
            raise ParamError(name, f"must lie in [0, 1], got {value}")
    if m_step < 0:
        raise ParamError("denoise.m-step", f"must be >= 0, got {m_step}")
    return float(max(m_min, m_start - (round_index(round_name) - 1) * m_step))


def save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def load_array(path: Path) -> np.ndarray:
    if not Path(path).is_file():
        raise GlodeError(f"{path}: missing; run the pseudo_label stage of this round (dvc repro)")
    return np.load(path, allow_pickle=False)


def has_gold(sentences) -> bool:
    """The unlabelled corpus carries usable gold tags when any tag is not O."""
    return any(t != "O" for s in sentences for t in s.tags)


PROJECTIONS = ("svd", "random", "pca")


def check_projection(projection: str) -> None:
    if projection not in PROJECTIONS:
        raise ParamError("denoise.projection", f"must be one of {', '.join(PROJECTIONS)}, got {projection!r}")


def reduce_dim(vectors: Sequence[np.ndarray], dim: int, seed: int, sample: int = 20000,
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
    check_projection(projection)
    sizes = [len(v) for v in vectors]
    total = int(sum(sizes))
    d = vectors[0].shape[1]
    mean, basis = 0.0, None
    if 0 < dim < d:
        rng = np.random.default_rng(seed)
        if projection == "random":
            basis = rng.standard_normal((dim, d))
        else:
            rows = np.arange(total) if total <= sample else np.sort(rng.choice(total, sample, replace=False))
            offsets = np.cumsum([0] + sizes)
            which = np.searchsorted(offsets, rows, side="right") - 1
            fit = np.concatenate([vectors[a][rows[which == a] - offsets[a]] for a in range(len(vectors))]).astype(np.float64)
            if projection == "pca":
                mean = fit.mean(axis=0)
            _, _, vt = np.linalg.svd(fit - mean, full_matrices=False)
            del fit
            # fewer rows than dim give fewer axes: the rest are zero columns (no effect on cosines)
            basis = np.zeros((dim, d))
            basis[: min(dim, len(vt))] = vt[:dim]
            # fix each axis's sign so the projection does not depend on LAPACK's choice
            signs = np.sign(basis[np.arange(dim), np.abs(basis).argmax(axis=1)])
            basis = basis * signs[:, None]
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


# --------------------------------------------------------------------------- pseudo-labelling


def target_span_table(model, tokenizer, target, encoded, batch_size: int, progress: bool, with_features: bool):
    """Every candidate span of the target corpus with the model's class probabilities, its
    argmax, whether it is a kept entity (non-O and not overlapped by a better one), and gold."""
    classes = model.config.classes
    scores = score_spans(model, encoded, tokenizer.pad_token_id, batch_size=batch_size, with_features=with_features,
                         progress=progress, desc="scoring target spans")
    frame = span_frame(target, encoded)
    probs = np.concatenate([sc.probs for sc in scores]).astype(np.float32)
    for c, name in enumerate(classes):
        frame[name] = probs[:, c]
    frame["label"] = np.array(classes, dtype=object)[probs.argmax(axis=1)]
    frame["kept"] = np.concatenate([kept_entity_mask(e, sc.probs) for e, sc in zip(encoded, scores)])
    frame["gold"] = gold_labels(target, frame) if has_gold(target) else pd.Series([None] * len(frame), dtype=object)
    features = np.concatenate([sc.features for sc in scores]) if with_features else None
    return frame, features


def _load_for_scoring(model_dir: Path, tables_dir: Path):
    from glode.model import load_model
    from glode.pipeline import check_labels_match, table_labels

    model, tokenizer, meta = load_model(model_dir)
    check_labels_match(model.config.classes, table_labels(tables_dir), str(model_dir))
    enc = SentenceEncoder(tokenizer, model.config.max_span_len, model.config.max_seq_len)
    target = read_sentences(tables_dir / "target_unlabelled.parquet")
    if not target:
        raise GlodeError(f"{tables_dir / 'target_unlabelled.parquet'}: the target corpus is empty; nothing to pseudo-label")
    return model, tokenizer, meta, enc, target


FEATURES = ("model", "encoder")


def _encoder_span_vectors(plain, encoded, pad_id: int, batch_size: int, progress: bool, desc: str) -> np.ndarray:
    """The pretrained encoder's view of every candidate span: its last-layer vectors at the
    span's first and last sub-token, concatenated. ``plain`` is a span model freshly built on
    the encoder; its untrained width, length and case embeddings are left out."""
    width = 2 * plain.encoder.config.hidden_size
    scores = score_spans(plain, encoded, pad_id, batch_size=batch_size, with_features=True, progress=progress, desc=desc)
    return np.concatenate([sc.features[:, :width] for sc in scores])


def pseudo_label_round(
    model_dir: Path,
    tables_dir: Path,
    out_dir: Path,
    dim: int,
    seed: int,
    batch_size: int = 64,
    progress: bool = True,
    projection: str = "svd",
    features: str = "model",
    encoder_dir: Path | None = None,
) -> dict:
    """Score target and source candidate spans with a round's model; write spans + vectors
    (``dim`` and ``projection``: :func:`reduce_dim`).

    ``features="model"`` takes the vectors from the round's model (its span feature in eval
    mode); ``"encoder"`` from the pretrained encoder in ``encoder_dir``, which no pseudo label
    has trained, so the views built on them can disagree with the model (docs/METHOD.md §6,
    finding 4). That costs one more encoder pass over both corpora.

    The folder is built under a temporary name and renamed into place when complete; its
    manifest (``glode_pseudo.json``) carries the format version, the classes and what the
    sequence length cost (long sentences are scored in windows; lost spans are counted).
    """
    from glode.pipeline import encoding_stats

    check_projection(projection)  # before the long scoring pass
    if features not in FEATURES:
        raise ParamError("denoise.features", f"must be one of {', '.join(FEATURES)}, got {features!r}")
    if features == "encoder" and (encoder_dir is None or not Path(encoder_dir).is_dir()):
        raise GlodeError(f"{encoder_dir}: no encoder folder for denoise.features=encoder; run the encoder stage "
                         "(dvc repro encoder)")
    model, tokenizer, meta, enc, target = _load_for_scoring(model_dir, tables_dir)
    classes = model.config.classes
    from_model = features == "model"
    t_enc = enc.encode([s.tokens for s in target])
    frame, t_vec = target_span_table(model, tokenizer, target, t_enc, batch_size, progress, with_features=from_model)
    source = read_sentences(tables_dir / "source_train.parquet")
    s_enc = enc.encode([s.tokens for s in source])
    s_frame = span_frame(source, s_enc)
    index = {c: i for i, c in enumerate(classes)}
    s_labels = np.array([index[g] for g in gold_labels(source, s_frame)], dtype=np.int64)
    if from_model:
        s_scores = score_spans(model, s_enc, tokenizer.pad_token_id, batch_size=batch_size, with_features=True,
                               progress=progress, desc="scoring source spans")
        s_vec = np.concatenate([sc.features for sc in s_scores])
        del s_scores  # the per-sentence copies; only the stacked features are needed now
    else:
        from glode.model import build_model

        config = model.config
        del model
        plain, _ = build_model(encoder_dir, config, seed=seed)
        t_vec = _encoder_span_vectors(plain, t_enc, tokenizer.pad_token_id, batch_size, progress, "encoder: target spans")
        s_vec = _encoder_span_vectors(plain, s_enc, tokenizer.pad_token_id, batch_size, progress, "encoder: source spans")
        del plain
    t_red, s_red = reduce_dim([t_vec, s_vec], dim, seed, projection=projection)

    info = {"target_spans": len(frame), "source_spans": len(s_frame), "dim": int(t_red.shape[1]), "projection": projection,
            "features": features,
            "encoding": {"target_unlabelled": encoding_stats(t_enc), "source_train": encoding_stats(s_enc)}}
    with atomic_dir(out_dir) as tmp:
        write_table(frame, tmp / SPANS_FILE, SPANS_KIND,
                    extra_metadata={"classes": classes, "model_round": meta.get("round")})
        save_array(tmp / TARGET_REPS, t_red)
        save_array(tmp / SOURCE_REPS, s_red)
        save_array(tmp / SOURCE_LABELS, s_labels)
        manifest = write_pseudo_manifest(tmp, classes, model_round=meta.get("round"), **info)
    return manifest


def write_pseudo_manifest(pseudo_dir: Path, classes: Sequence[str], **info) -> dict:
    """Write the manifest that marks a complete pseudo_label folder of this format version."""
    from glode.pipeline import write_json

    manifest = {"format_version": PSEUDO_FORMAT_VERSION, "kind": "glode-pseudo", "classes": list(classes), **info}
    write_json(Path(pseudo_dir) / PSEUDO_MANIFEST, manifest)
    return manifest


def read_pseudo_manifest(pseudo_dir: Path) -> dict:
    """The manifest of a pseudo_label folder, after checking its format version."""
    path = Path(pseudo_dir) / PSEUDO_MANIFEST
    if not path.is_file():
        raise GlodeError(f"{pseudo_dir}: not a pseudo_label output folder (no {PSEUDO_MANIFEST}); "
                         "run the round's pseudo_label stage (dvc repro)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GlodeError(f"{path}: unreadable ({exc}); rerun the round's pseudo_label stage (dvc repro --force)") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != PSEUDO_FORMAT_VERSION:
        raise GlodeError(f"{path}: pseudo-label folder format version {version!r}, this glode reads version "
                         f"{PSEUDO_FORMAT_VERSION}; rerun the round's pseudo_label stage (dvc repro --force) "
                         "or use the matching glode version")
    return manifest


# --------------------------------------------------------------------------- label tables


def labels_schema(classes: Sequence[str]) -> pa.Schema:
    return pa.schema(
        [
            ("sentence_id", pa.int64()),
            ("start", pa.int32()),
            ("end", pa.int32()),
            ("text", pa.string()),
            ("round", pa.string()),
            ("label", pa.string()),
            ("prob", pa.float32()),
            *[(c, pa.float32()) for c in classes],
            ("prev_label", pa.string()),
            ("global_admitted", pa.list_(pa.string())),
            ("local_admitted", pa.list_(pa.string())),
            ("global_score", pa.float32()),
            ("local_count", pa.int32()),
            ("global_scores", pa.list_(pa.float32())),
            ("local_counts", pa.list_(pa.int32())),
            ("changed", pa.bool_()),
            ("gold", pa.string()),
        ]
    )


def labels_frame(
    spans: pd.DataFrame,
    classes: Sequence[str],
    round_name: str,
    Y_prev: np.ndarray,
    Y_new: np.ndarray,
    rows: np.ndarray,
    g: np.ndarray | None = None,
    G: np.ndarray | None = None,
    n: np.ndarray | None = None,
    L: np.ndarray | None = None,
) -> pd.DataFrame:
    """The user-facing label table for the selected span ``rows``."""
    names = np.array(classes, dtype=object)
    sel = spans.iloc[rows].reset_index(drop=True)
    Yn, Yp = Y_new[rows], Y_prev[rows]
    y_new, y_prev = Yn.argmax(axis=1), Yp.argmax(axis=1)
    out = pd.DataFrame(
        {
            "sentence_id": sel.sentence_id.astype(np.int64),
            "start": sel.start.astype(np.int32),
            "end": sel.end.astype(np.int32),
            "text": sel.text,
            "round": round_name,
            "label": names[y_new],
            "prob": Yn[np.arange(len(rows)), y_new].astype(np.float32),
        }
    )
    for c, name in enumerate(classes):
        out[name] = Yn[:, c].astype(np.float32)
    out["prev_label"] = names[y_prev]

    def admitted(mask):
        if mask is None:
            return pd.Series([[] for _ in rows], dtype=object)
        return pd.Series([list(names[m]) for m in mask[rows]], dtype=object)

    out["global_admitted"] = admitted(G)
    out["local_admitted"] = admitted(L)
    idx = np.arange(len(rows))
    out["global_score"] = (g[rows][idx, y_new] if g is not None else np.full(len(rows), np.nan)).astype(np.float32)
    out["local_count"] = (n[rows][idx, y_new] if n is not None else np.zeros(len(rows))).astype(np.int32)
    out["global_scores"] = pd.Series([r.astype(np.float32).tolist() for r in g[rows]] if g is not None else [[] for _ in rows], dtype=object)
    out["local_counts"] = pd.Series([r.astype(np.int32).tolist() for r in n[rows]] if n is not None else [[] for _ in rows], dtype=object)
    out["changed"] = y_new != y_prev
    out["gold"] = sel.gold.values
    return out


def write_labels(frame: pd.DataFrame, path: Path, classes: Sequence[str], round_name: str) -> None:
    write_table(frame, path, LABELS_KIND, extra_metadata={"classes": list(classes), "round": round_name},
                schema=labels_schema(classes))


def read_labels_dense(path: Path, spans: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """Soft labels for every span row of ``spans`` (one-hot O where the label table has no row)."""
    table = read_table(path, LABELS_KIND)
    stored = table.attrs["glode"].get("classes")
    if stored is not None:
        if json.loads(stored) != list(classes):
            raise GlodeError(f"{path}: labels for classes {json.loads(stored)}, but the model has {list(classes)}; "
                             "rerun the pipeline from the prepare stage")
    Y = np.zeros((len(spans), len(classes)), dtype=np.float32)
    Y[:, 0] = 1.0
    if len(table):
        key = pd.MultiIndex.from_arrays([spans.sentence_id, spans.start, spans.end])
        pos = key.get_indexer(pd.MultiIndex.from_arrays([table.sentence_id, table.start.astype(np.int32), table.end.astype(np.int32)]))
        found = pos >= 0
        Y[pos[found]] = table.loc[found, list(classes)].to_numpy(dtype=np.float32)
    return Y


def _rows_to_store(Y_prev: np.ndarray, Y_new: np.ndarray, gold, G=None, L=None) -> np.ndarray:
    eps = 1e-6
    keep = (Y_prev[:, 0] < 1 - eps) | (Y_new[:, 0] < 1 - eps)
    if G is not None:
        keep |= G[:, 1:].any(axis=1)
    if L is not None:
        keep |= L[:, 1:].any(axis=1)
    if gold is not None:
        keep |= np.array([g is not None and g != "O" for g in gold])
    return np.flatnonzero(keep)


def initial_soft_labels(spans: pd.DataFrame, classes: Sequence[str]) -> np.ndarray:
    """Y0: kept non-O predictions keep their distribution; every other span is one-hot O."""
    probs = spans[list(classes)].to_numpy(dtype=np.float32)
    Y = np.zeros_like(probs)
    Y[:, 0] = 1.0
    kept = spans.kept.to_numpy(dtype=bool)
    Y[kept] = probs[kept]
    return Y


def class_ids(labels, classes: Sequence[str]) -> np.ndarray:
    """Class ids of gold names, -1 for unknown (None)."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(g, -1) if g is not None else -1 for g in labels], dtype=np.int64)


# --------------------------------------------------------------------------- denoising


START_CHOICES = ("labels", "model")
INIT_CHOICES = ("encoder", "previous", "chain")  # retrain.init


def denoise_round(
    round_name: str,
    pseudo_dir: Path,
    prev_labels: Path,
    out_labels: Path,
    metrics_path: Path,
    *,
    k: int,
    o_keep_rate: float,
    local_scale: float,
    m_start: float,
    m_step: float,
    m_min: float,
    prototype: str,
    momentum: float,
    use_global: bool,
    use_local: bool,
    index: str,
    auto_threshold: int,
    nprobe: int,
    seed: int,
    start: str = "labels",
    gate: str = "none",
    local_cap: float = 1.0,
    select: float = 1.0,
    select_rest: float = 0.0,
    prototype_from: str = "all",
    visits: float = 1.0,
) -> dict:
    """Refine a round's starting labels with the global and local views; write labels + stats.

    ``visits`` is how many update steps a label takes this round with the round's weight m:
    the reference updates a target span at every visit of its sentence to a training batch,
    with views that change little within an epoch, so n steps towards the same views are one
    step with weight m^n (docs/METHOD.md §7).

    ``start="labels"`` (GLoDe) starts from the previous round's refined labels;
    ``start="model"`` starts from the previous model's own soft pseudo labels (Y0-style) of
    this round, which with both views off is plain self-training. ``gate``, ``local_cap``,
    ``select``, ``select_rest`` and ``prototype_from`` are passed to :func:`glode.denoise.denoise` (``gate="agree"``:
    a top class only changes where the views agree); its parameter errors name the
    ``params.yaml`` key.
    """
    from glode.pipeline import write_json

    if start not in START_CHOICES:
        raise ParamError("denoise.start", f"must be one of {', '.join(START_CHOICES)}, got {start!r}")
    if gate not in GATES:
        raise ParamError("denoise.gate", f"must be one of {', '.join(GATES)}, got {gate!r}")
    read_pseudo_manifest(pseudo_dir)
    spans = read_table(pseudo_dir / SPANS_FILE, SPANS_KIND)
    classes = json.loads(spans.attrs["glode"]["classes"])
    if start == "labels":
        Y = read_labels_dense(prev_labels, spans, classes)
    else:
        Y = initial_soft_labels(spans, classes)
    Q = load_array(pseudo_dir / TARGET_REPS)
    S = load_array(pseudo_dir / SOURCE_REPS)
    s_labels = load_array(pseudo_dir / SOURCE_LABELS)
    if len(Q) != len(spans):
        raise GlodeError(f"{pseudo_dir}: {len(Q)} vectors for {len(spans)} spans; rerun the pseudo_label stage")
    if not visits > 0:
        raise ParamError("denoise.visits", f"must be > 0, got {visits}")
    m_round = ema_weight(round_name, m_start, m_step, m_min)
    m = m_round**visits
    try:
        res = denoise(Q, Y, S, s_labels, m=m, k=k, o_keep_rate=o_keep_rate, local_scale=local_scale,
                      local_cap=local_cap, select=select, select_rest=select_rest, prototype=prototype,
                      prototype_from=prototype_from, momentum=momentum, use_global=use_global,
                      use_local=use_local, gate=gate, seed=seed, index=index, auto_threshold=auto_threshold,
                      nprobe=nprobe, threads=None)
    except ParamError as exc:  # name the params.yaml key, not the library argument
        key = exc.name if exc.name == "k" else "denoise." + exc.name.replace("_", "-")
        raise ParamError(key, str(exc).split(": ", 1)[1]) from None
    gold = spans.gold.to_numpy(dtype=object)
    rows = _rows_to_store(Y, res.Y_new, gold, res.G, res.L)
    frame = labels_frame(spans, classes, round_name, Y, res.Y_new, rows, res.g, res.G, res.n, res.L)
    write_labels(frame, out_labels, classes, round_name)
    gold_ids = class_ids(gold, classes)
    summary = res.summary(gold=gold_ids if (gold_ids >= 0).any() else None, class_names=classes)
    summary.update(round=round_name, start=start, gate=gate, m=m, k=k, local_cap=local_cap, label_rows=int(len(frame)))
    if visits != 1:  # (absent at the default, so the default run's statistics read as before)
        summary.update(m_round=m_round, visits=visits)
    if "gold" in summary:  # pseudo-label P/R/F1 before and after, from the denoising summary
        summary["pseudo_label"] = summary.pop("gold")
        summary["pseudo_label_f1"] = summary["pseudo_label"]["after"]["f1"]
        summary["pseudo_label_soft_f1"] = summary["pseudo_label"]["soft_after"]["f1"]
    write_json(metrics_path, summary)
    return summary


def initial_labels(model_dir: Path, tables_dir: Path, out_labels: Path, metrics_path: Path,
                   batch_size: int = 64, progress: bool = True) -> dict:
    """r0's label table: Y0, the source model's soft labels, and their pseudo-label scores."""
    from glode.pipeline import write_json

    from glode.pipeline import encoding_stats

    model, tokenizer, _, enc, target = _load_for_scoring(model_dir, tables_dir)
    classes = model.config.classes
    t_enc = enc.encode([s.tokens for s in target])
    spans, _ = target_span_table(model, tokenizer, target, t_enc, batch_size, progress, with_features=False)
    Y = initial_soft_labels(spans, classes)
    gold = spans.gold.to_numpy(dtype=object)
    rows = _rows_to_store(Y, Y, gold)
    write_labels(labels_frame(spans, classes, "r0", Y, Y, rows), out_labels, classes, "r0")
    gold_ids = class_ids(gold, classes)
    y = Y.argmax(axis=1)
    summary = {"round": "r0", "spans": int(len(spans)), "label_rows": int(len(rows)),
               "per_class": {c: int(v) for c, v in zip(classes, np.bincount(y, minlength=len(classes)))},
               "encoding": encoding_stats(t_enc)}
    if (gold_ids >= 0).any():
        summary["pseudo_label"] = {"known": int((gold_ids >= 0).sum()), "after": span_prf(y, gold_ids),
                                   "soft_after": soft_scores(Y, gold_ids)}
        summary["pseudo_label_f1"] = summary["pseudo_label"]["after"]["f1"]
        summary["pseudo_label_soft_f1"] = summary["pseudo_label"]["soft_after"]["f1"]
    write_json(metrics_path, summary)
    return summary


# --------------------------------------------------------------------------- retraining


def target_soft_labels(encoded: EncodedSentence, Y: np.ndarray) -> np.ndarray:
    """Soft targets for one sentence: entity labels that lose overlap resolution (by the
    probability of their argmax) become hard O, as in docs/METHOD.md §3."""
    Y = Y.copy()
    best = Y.argmax(axis=1)
    ent = np.flatnonzero(best != 0)
    if len(ent) > 1:
        cands = [(int(encoded.span_word_start[i]), int(encoded.span_word_end[i]), str(i), float(Y[i, best[i]])) for i in ent]
        kept = {int(s.label) for s in resolve_overlaps(cands)}
        for i in ent:
            if int(i) not in kept:
                Y[i] = 0.0
                Y[i, 0] = 1.0
    return Y


def round_start(init: str, prev_model_dir: Path) -> str:
    """Where a round's model starts: ``"encoder"`` (fresh from the pretrained encoder) or
    ``"previous"``. ``init="chain"`` resolves to the encoder after the source model r0 and to
    the previous model after any later round (read from the previous folder's metadata)."""
    from glode.model import read_model_meta

    if init not in INIT_CHOICES:
        raise ParamError("retrain.init", f"must be one of {', '.join(INIT_CHOICES)}, got {init!r}")
    if init != "chain":
        return init
    return "encoder" if read_model_meta(prev_model_dir).get("round") == "r0" else "previous"


def train_target_round(
    round_name: str,
    prev_model_dir: Path,
    tables_dir: Path,
    pseudo_dir: Path,
    labels_path: Path,
    encoder_dir: Path,
    out_dir: Path,
    log_dir: Path,
    train_cfg,
    init: str = "encoder",
    eval_batch_size: int = 64,
    progress: bool = True,
) -> list[dict]:
    """Train round ``rN``'s model on source gold + the round's refined target labels (+ λ·MLM).

    ``init="encoder"`` starts from the pretrained encoder (the paper's default rounds);
    ``"previous"`` from the previous round's model; ``"chain"`` (the paper's progressive mode,
    docs/METHOD.md §7) from the pretrained encoder when the previous model is the source model
    r0 and from the previous round's model otherwise, so that r1, r2, ... are one target training
    run cut into rounds. The span cap and sequence length are the previous model's.
    """
    from glode.model import SpanModelConfig, build_model, load_model, read_model_meta, save_model
    from glode.pipeline import check_labels_match, encode_table, encoding_stats, evaluate_corpus, table_labels
    from glode.training import config_dict, train

    chosen = round_start(init, prev_model_dir)
    if chosen == "encoder":  # only the previous model's architecture is needed: no weights loaded
        config = SpanModelConfig(**read_model_meta(prev_model_dir)["config"])
        check_labels_match(config.classes, table_labels(tables_dir), str(prev_model_dir))
        model, tokenizer = build_model(encoder_dir, config, seed=train_cfg.seed)
    else:
        model, tokenizer, _ = load_model(prev_model_dir, encoder_dir)
        config = model.config
        check_labels_match(config.classes, table_labels(tables_dir), str(prev_model_dir))
    enc = SentenceEncoder(tokenizer, config.max_span_len, config.max_seq_len)
    index = {c: i for i, c in enumerate(config.classes)}
    _, source = encode_table(enc, tables_dir / "source_train.parquet", index)
    dev_sents, dev = encode_table(enc, tables_dir / "source_dev.parquet", None)
    target_sents, target = encode_table(enc, tables_dir / "target_unlabelled.parquet", None)
    read_pseudo_manifest(pseudo_dir)
    spans = read_table(pseudo_dir / SPANS_FILE, SPANS_KIND)
    classes = json.loads(spans.attrs["glode"]["classes"])
    if classes != config.classes:
        raise GlodeError(f"{pseudo_dir}: spans scored for classes {classes}, model has {config.classes}")
    Y = read_labels_dense(labels_path, spans, classes)
    bounds = np.cumsum([0] + [len(e.span_word_start) for e in target])
    if bounds[-1] != len(spans):
        raise GlodeError(f"{pseudo_dir}: {len(spans)} spans, but the target corpus has {bounds[-1]} candidate spans "
                         "with this model's span cap; rerun the pseudo_label stage")
    for i, e in enumerate(target):
        e.span_soft = target_soft_labels(e, Y[bounds[i] : bounds[i + 1]])

    def evaluate(m) -> dict:
        s = evaluate_corpus(m, tokenizer, dev_sents, dev, eval_batch_size, progress=progress)
        return {"precision": s["precision"], "recall": s["recall"], "f1": s["f1"]}

    history = train(model, tokenizer, source, train_cfg, mlm_corpus=target, target=target, log_dir=log_dir,
                    evaluate=evaluate if dev else None, progress=progress)
    save_model(model, tokenizer, out_dir, encoder_dir, train_params={**config_dict(train_cfg), "init": init,
                                                                           **({"started_from": chosen} if init == "chain" else {})},
               extra={"round": round_name, "history": history,
                      "encoding": {"source_train": encoding_stats(source), "target_unlabelled": encoding_stats(target)}})
    return history
