"""The ``train_target@rN`` stage: round rN's model, trained on source gold + the round's refined
target labels (+ λ·MLM), saved like r0's (docs/METHOD.md §3)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from glode.corpus import check_labels_match, dev_scorer, encode_training_tables, table_labels, training_data
from glode.errors import GlodeError
from glode.features import EncodedSentence, SentenceEncoder
from glode.label_table import read_labels_dense, read_neighbour_weights
from glode.pseudo_folder import read_spans
from glode.settings import DeviceSettings, RetrainSettings, TrainSettings
from glode.spans import resolve_overlaps


def train_target_round(
    round_name: str,
    prev_model_dir: Path,
    tables_dir: Path,
    pseudo_dir: Path,
    labels_path: Path,
    encoder_dir: Path,
    out_dir: Path,
    log_dir: Path,
    train_settings: TrainSettings,
    retrain: RetrainSettings,
    progress: bool = True,
    device: DeviceSettings | None = None,
    command: str | None = None,
) -> list[dict]:
    """Train round ``rN``'s model on source gold + the round's refined target labels (+ λ·MLM).

    ``retrain.init="encoder"`` starts from the pretrained encoder (the paper's default rounds);
    ``"previous"`` from the previous round's model; ``"chain"`` (the paper's progressive mode,
    docs/METHOD.md §7) from the pretrained encoder when the previous model is the source model
    r0 and from the previous round's model otherwise, so that r1, r2, ... are one target training
    run cut into rounds. The span cap and sequence length are the previous model's; the number
    of epochs is ``retrain.epochs`` where set. With ``retrain.schedule-rounds`` > 0 the chained
    rounds share one AdamW state (saved in each model folder) and one learning-rate schedule, as
    the reference's single target run. The model trains on ``device`` (default settings:
    ``auto``); ``command`` (the stage's command line) goes into the model card.
    """
    device = device or DeviceSettings()
    from glode.distributed import current_world, together
    from glode.model import save_model
    from glode.training import train

    cfg = retrain.train_settings(train_settings)
    chosen = round_start(retrain.init, prev_model_dir)
    model, tokenizer = _starting_model(chosen, prev_model_dir, tables_dir, encoder_dir, cfg.seed)
    config = model.config
    data = encode_training_tables(SentenceEncoder(tokenizer, config.max_span_len, config.max_seq_len), tables_dir,
                                  config.classes)
    attach_target_labels(data.target, pseudo_dir, labels_path, config.classes, retrain.harden_o, retrain.span_weights)
    chained = _chained_run(retrain, round_name, chosen, prev_model_dir)

    with together():  # the other processes wait for rank 0's dev scores and folder, then all leave the group
        history = train(model, tokenizer, data.source, cfg, mlm_corpus=data.target, target=data.target, log_dir=log_dir,
                        evaluate=dev_scorer(tokenizer, data.dev_sentences, data.dev, cfg.eval_batch_size, progress,
                                            device.precision),
                        progress=progress, device=device, target_loss=retrain.target_loss, chained=chained)
        if current_world().main:  # data-parallel: rank 0 writes the folder
            started = {"started_from": chosen} if retrain.init == "chain" else {}
            if retrain.target_loss != "soft-ce":  # (absent at the defaults, so that earlier folders keep their bytes)
                started["target_loss"] = retrain.target_loss
            if retrain.harden_o > 0:
                started["harden_o"] = retrain.harden_o
            if retrain.span_weights != "none":
                started["span_weights"] = retrain.span_weights
            if chained is not None:
                started["schedule"] = {"round": chained.index, "of": chained.rounds}
            save_model(model, tokenizer, out_dir, encoder_dir, train_params={**cfg.recorded(), **device.recorded(), "init": retrain.init,
                                                                               **started},
                       extra={"round": round_name, "history": history, "encoding": data.encoding_stats(),
                              "training_data": training_data(tables_dir)}, command=command,
                       optimizer_state=None if chained is None else chained.state)
    return history


def _chained_run(retrain: RetrainSettings, round_name: str, chosen: str, prev_model_dir: Path):
    """The round's place in one optimiser run over ``retrain.schedule-rounds`` chained rounds
    (None: the round trains with its own optimiser and schedule), with the previous round's
    AdamW state when the round continues the previous model."""
    if retrain.schedule_rounds == 0:
        return None
    import torch

    from glode.model import OPTIMIZER_FILE
    from glode.rounds import round_number
    from glode.training import ChainedRun

    state = None  # (RetrainSettings refuses schedule-rounds without init: chain)
    if chosen == "previous":
        path = Path(prev_model_dir) / OPTIMIZER_FILE
        if not path.is_file():
            raise GlodeError(f"{path}: missing; retrain.schedule-rounds continues the previous round's optimiser, so "
                             f"that round must have been trained with it too (rerun it: dvc repro -f "
                             f"train_target@{Path(prev_model_dir).name})")
        state = torch.load(path, map_location="cpu", weights_only=True)
    return ChainedRun(round_number(round_name), retrain.schedule_rounds, state)


def round_start(init: str, prev_model_dir: Path) -> str:
    """Where a round's model starts: ``"encoder"`` (fresh from the pretrained encoder) or
    ``"previous"``. ``init="chain"`` resolves to the encoder after the source model r0 and to
    the previous model after any later round (read from the previous folder's metadata)."""
    from glode.model import read_model_meta

    if init != "chain":
        return init
    return "encoder" if read_model_meta(prev_model_dir).get("round") == "r0" else "previous"


def _starting_model(chosen: str, prev_model_dir: Path, tables_dir: Path, encoder_dir: Path, seed: int):
    """(model, tokenizer): a fresh model on the encoder with the previous model's architecture
    (no weights loaded), or the previous model itself; either for the tables' label set."""
    from glode.model import SpanModelConfig, build_model, load_model, read_model_meta

    if chosen == "encoder":
        config = SpanModelConfig(**read_model_meta(prev_model_dir)["config"])
        check_labels_match(config.classes, table_labels(tables_dir), str(prev_model_dir))
        return build_model(encoder_dir, config, seed=seed)
    model, tokenizer, _ = load_model(prev_model_dir, encoder_dir)
    check_labels_match(model.config.classes, table_labels(tables_dir), str(prev_model_dir))
    return model, tokenizer


def attach_target_labels(target: Sequence[EncodedSentence], pseudo_dir: Path, labels_path: Path,
                         classes: Sequence[str], harden_o: float, span_weights: str) -> None:
    """Set each target sentence's soft span targets (``span_soft``) from the round's label table.

    With ``span_weights="neighbours"`` a pseudo entity's target row is scaled by its neighbour
    weight (:func:`glode.label_table.read_neighbour_weights`): both target losses are linear in
    the label, so a row ``w·Y`` is the span's loss times ``w``."""
    spans, scored_for = read_spans(pseudo_dir)
    if scored_for != list(classes):
        raise GlodeError(f"{pseudo_dir}: spans scored for classes {scored_for}, model has {list(classes)}")
    Y = read_labels_dense(labels_path, spans, scored_for)
    weights = read_neighbour_weights(labels_path, spans, scored_for) if span_weights == "neighbours" else None
    bounds = np.cumsum([0] + [len(e.span_word_start) for e in target])
    if bounds[-1] != len(spans):
        raise GlodeError(f"{pseudo_dir}: {len(spans)} spans, but the target corpus has {bounds[-1]} candidate spans "
                         "with this model's span cap; rerun the pseudo_label stage")
    for i, e in enumerate(target):
        e.span_soft = target_soft_labels(e, Y[bounds[i] : bounds[i + 1]], harden_o)
        if weights is not None:
            entity = e.span_soft.argmax(axis=1) != 0  # after overlap resolution: a lost entity trains as O, weight 1
            e.span_soft[entity] *= weights[bounds[i] : bounds[i + 1]][entity, None]


def target_soft_labels(encoded: EncodedSentence, Y: np.ndarray, harden_o: float = 0.0) -> np.ndarray:
    """Soft targets for one sentence: entity labels that lose overlap resolution (by the
    probability of their argmax) become hard O, as in docs/METHOD.md §3; with ``harden_o`` > 0,
    so does a label whose top class is O and whose entity mass is at most ``harden_o`` (soft
    cross-entropy would otherwise learn that small mass, which the reference's loss ignores)."""
    Y = Y.copy()
    best = Y.argmax(axis=1)
    if harden_o > 0:
        faint = (best == 0) & (1.0 - Y[:, 0] <= harden_o)
        Y[faint] = 0.0
        Y[faint, 0] = 1.0
    ent = np.flatnonzero(best != 0)
    if len(ent) > 1:
        cands = [(int(encoded.span_word_start[i]), int(encoded.span_word_end[i]), str(i), float(Y[i, best[i]])) for i in ent]
        kept = {int(s.label) for s in resolve_overlaps(cands)}
        for i in ent:
            if int(i) not in kept:
                Y[i] = 0.0
                Y[i, 0] = 1.0
    return Y
