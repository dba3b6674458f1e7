"""The ``train_source`` stage: round 0's model, trained on source gold spans (+ λ·MLM on target text)."""

from __future__ import annotations

from pathlib import Path

from glode.corpus import dev_scorer, encode_training_tables, table_labels, training_data
from glode.settings import DeviceSettings, ModelSettings, TrainSettings


def train_source_model(
    tables_dir: Path,
    encoder_dir: Path,
    out_dir: Path,
    log_dir: Path,
    target: str,
    model_settings: ModelSettings,
    train_settings: TrainSettings,
    progress: bool = True,
    device: DeviceSettings | None = None,
    command: str | None = None,
) -> list[dict]:
    """Round 0: train on source gold spans (+ λ·MLM on target text) and save the model folder.

    The label set comes from the prepared tables (``stats.json``), so it always matches the
    data; the span cap from the target language (``model_settings.span_cap``). The model
    trains on ``device`` (default settings: ``auto``); ``command`` (the stage's command line) goes
    into the folder's model card.
    """
    device = device or DeviceSettings()
    from glode.features import SentenceEncoder
    from glode.distributed import current_world, together
    from glode.model import SpanModelConfig, build_model, save_model
    from glode.training import train

    cap = model_settings.span_cap(target)
    config = SpanModelConfig(classes=["O", *table_labels(tables_dir)], max_span_len=cap,
                             max_seq_len=model_settings.max_seq_len)
    model, tokenizer = build_model(encoder_dir, config, seed=train_settings.seed)
    data = encode_training_tables(SentenceEncoder(tokenizer, cap, model_settings.max_seq_len), tables_dir, config.classes)
    with together():  # the other processes wait for rank 0's dev scores and folder, then all leave the group
        history = train(model, tokenizer, data.source, train_settings, mlm_corpus=data.target, log_dir=log_dir,
                        evaluate=dev_scorer(tokenizer, data.dev_sentences, data.dev, train_settings.eval_batch_size, progress,
                                            device.precision),
                        progress=progress, device=device)
        if current_world().main:  # data-parallel: rank 0 writes the folder
            save_model(model, tokenizer, out_dir, encoder_dir, train_params={**train_settings.recorded(), **device.recorded()},
                       extra={"round": "r0", "history": history, "encoding": data.encoding_stats(),
                              "training_data": training_data(tables_dir)}, command=command)
    return history
