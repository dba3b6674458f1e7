"""The ``evaluate@M`` stage: a model's entity scores on the target test set."""

from __future__ import annotations

from pathlib import Path

from glode.atomic import write_json
from glode.corpus import check_labels_match, encode_table, evaluate_corpus, table_labels
from glode.errors import GlodeError
from glode.settings import DeviceSettings, EvaluateSettings


def evaluate_model(model_dir: Path, test_table: Path, metrics_path: Path, settings: EvaluateSettings,
                   encoder_dir: Path | None = None, progress: bool = True, device: DeviceSettings | None = None) -> dict:
    """Score a saved model on a labelled target table and write the metrics JSON; the model runs
    on ``device`` (default settings: ``auto``). Among data-parallel processes
    (``glode.distributed.sharded_scoring``) each scores its share and rank 0 alone writes."""
    from glode.device import place_model
    from glode.distributed import current_world
    from glode.features import SentenceEncoder
    from glode.model import load_model

    device = device or DeviceSettings()
    model, tokenizer, meta = load_model(model_dir, encoder_dir)
    place_model(model, device.device, device.precision)
    cfg = model.config
    stats = Path(test_table).parent / "stats.json"
    if stats.is_file():  # tables written by the prepare stage: same label set as the model?
        check_labels_match(cfg.classes, table_labels(stats.parent), str(model_dir))
    encoder = SentenceEncoder(tokenizer, cfg.max_span_len, cfg.max_seq_len)
    sentences, encoded = encode_table(encoder, test_table, None)
    if not sentences:
        raise GlodeError(f"{test_table}: no test sentences")
    scores = evaluate_corpus(model, tokenizer, sentences, encoded, settings.batch_size, progress, device.precision)
    scores["round"] = meta.get("round")
    scores["max_span_len"] = cfg.max_span_len
    if device.precision != "fp32":  # scores of a reduced precision say so (fp32 metrics keep their bytes)
        scores["scoring_precision"] = device.precision
    if current_world().main:
        write_json(metrics_path, scores)
    return scores
