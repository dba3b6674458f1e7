"""DVC stages `train_source` (r0: source gold + λ·MLM on target text) and `train_target@rN`
(source gold + the round's refined target labels + λ·MLM)."""

from pathlib import Path
from typing import Annotated

import typer

from glode.params import check_options, section_keys
from glode.pipeline import span_cap, train_source_model
from glode.selftrain import train_target_round
from glode.stagecli import run_app, single_command
from glode.training import TrainConfig

# options that DVC fills from params.yaml, and their keys there
PARAMS = {
    **section_keys("model", "max_span_len", "max_span_len_char", "char_languages", "max_seq_len"),
    **section_keys("train", "epochs", "lr", "head_lr", "batch_size", "seed", "weight_decay", "warmup_ratio", "grad_clip",
                   "mlm_weight", "mlm_rate", "mlm_batch_size", "freeze_word_embeddings", "eval_batch_size"),
    "init": "retrain.init",
    "retrain_epochs": "retrain.epochs",
}


def main(
    target: Annotated[str, typer.Option(help="r0: target language code (selects the span cap).")] = "",
    round: Annotated[str, typer.Option(help="Round to train: r0 (source model) or rN (self-training).")] = "r0",
    prev_model: Annotated[Path | None, typer.Option(help="rN: the previous round's model folder.")] = None,
    pseudo: Annotated[Path | None, typer.Option(help="rN: the round's pseudo_label folder.")] = None,
    labels_table: Annotated[Path | None, typer.Option(help="rN: the round's refined labels.parquet.")] = None,
    init: Annotated[str, typer.Option(help="rN: start from the pretrained 'encoder' (paper), the 'previous' model, or "
                                      "'chain': r1 from the encoder, later rounds from the previous one (progressive mode).")] = "encoder",
    retrain_epochs: Annotated[float, typer.Option(help="rN: passes over the source sentences per round (a fraction "
                                                  "is allowed; 0: the same as --epochs).")] = 0.0,
    tables: Annotated[Path, typer.Option(help="Folder of prepared parquet tables.")] = Path("tables"),
    encoder: Annotated[Path, typer.Option(help="Encoder folder.")] = Path("encoder"),
    out: Annotated[Path, typer.Option(help="Model folder to write.")] = Path("models/r0"),
    logs: Annotated[Path, typer.Option(help="dvclive log folder.")] = Path("logs/r0"),
    max_span_len: Annotated[int, typer.Option(help="Longest candidate span, in words.")] = 4,
    max_span_len_char: Annotated[int, typer.Option(help="Longest candidate span for character-tokenised languages.")] = 10,
    char_languages: Annotated[list[str], typer.Option(help="Character-tokenised target languages (repeat).")] = ["zh"],
    max_seq_len: Annotated[int, typer.Option(help="Sub-tokens per sentence, specials included; words beyond are cut and counted.")] = 128,
    epochs: Annotated[int, typer.Option(help="Passes over the source sentences.")] = 2,
    lr: Annotated[float, typer.Option(help="Encoder learning rate (AdamW).")] = 5e-5,
    head_lr: Annotated[float, typer.Option(help="Learning rate of the span head.")] = 1e-3,
    batch_size: Annotated[int, typer.Option(help="Sentences per batch.")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay.")] = 0.01,
    warmup_ratio: Annotated[float, typer.Option(help="Share of steps with linear warm-up.")] = 0.1,
    grad_clip: Annotated[float, typer.Option(help="Gradient norm clip (0: off).")] = 1.0,
    mlm_weight: Annotated[float, typer.Option(help="λ, weight of the masked-LM loss on target text (0: off).")] = 0.001,
    mlm_rate: Annotated[float, typer.Option(help="Share of sub-tokens masked for the MLM loss.")] = 0.25,
    mlm_batch_size: Annotated[int, typer.Option(help="Target sentences per masked-LM batch (the MLM pass dominates step time).")] = 8,
    freeze_word_embeddings: Annotated[bool, typer.Option(help="Freeze the word-embedding matrix (about halves step time).")] = True,
    eval_batch_size: Annotated[int, typer.Option(help="Sentences per batch when scoring dev.")] = 64,
) -> None:
    """Train a round's span NER model (r0 on the source language, rN also on target pseudo labels)."""
    check_options(locals(), PARAMS)
    cfg = TrainConfig(
        epochs=epochs, lr=lr, head_lr=head_lr, batch_size=batch_size, seed=seed, weight_decay=weight_decay,
        warmup_ratio=warmup_ratio, grad_clip=grad_clip, mlm_weight=mlm_weight, mlm_rate=mlm_rate, mlm_batch_size=mlm_batch_size,
        freeze_word_embeddings=freeze_word_embeddings,
    )
    if round == "r0":
        if not target:
            raise typer.BadParameter("r0 needs --target (the target language selects the span cap)")
        cap = span_cap(target, max_span_len, max_span_len_char, char_languages)
        history = train_source_model(tables, encoder, out, logs, cap, max_seq_len, cfg, eval_batch_size)
    else:
        if retrain_epochs > 0:  # a whole number stays an int, so that the model folder reads as before
            cfg.epochs = int(retrain_epochs) if float(retrain_epochs).is_integer() else retrain_epochs
        if prev_model is None or pseudo is None or labels_table is None:
            raise typer.BadParameter("rounds after r0 need --prev-model, --pseudo and --labels-table")
        history = train_target_round(round, prev_model, tables, pseudo, labels_table, encoder, out, logs, cfg,
                                     init=init, eval_batch_size=eval_batch_size)
    for h in history:
        typer.echo(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in h.items()))


if __name__ == "__main__":
    run_app(single_command(main))
