"""The ``glode`` command: helpers around the DVC pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from glode.rounds import MAX_ROUNDS
from glode.settings import DeviceSettings, EvaluateSettings, TrainSettings
from glode.stagecli import options, run_app, with_settings

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="glode: cross-lingual NER by self-training with global-local denoised pseudo labels. "
    "The pipeline itself runs with `dvc repro`; these commands help around it.",
)


def _print_version(value: bool) -> None:
    if value:
        import glode

        typer.echo(f"glode {glode.__version__}")
        raise typer.Exit()


@app.callback()
def _global_options(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output (for scripts; the same as "
                                        "GLODE_QUIET=1, which also silences the pipeline's stages).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print glode's version and exit.")] = False,
) -> None:
    if quiet:
        import os

        from glode.progress import QUIET_ENV

        os.environ[QUIET_ENV] = "1"


@app.command(context_settings={"ignore_unknown_options": True})  # `-1` is a bad N, not an unknown option
def rounds(
    n: Annotated[int, typer.Argument(min=0, max=MAX_ROUNDS, help="Number of self-training rounds after the source "
                                     f"model r0 (0 to {MAX_ROUNDS}).")],
    params: Annotated[Path, typer.Option(help="The params file to rewrite.")] = Path("params.yaml"),
) -> None:
    """Rewrite the `rounds` chain in params.yaml for N rounds (r1 <- r0, r2 <- r1, ...).

    DVC cannot take `-S rounds=3`; run this, then `dvc repro` (or `dvc exp run`).
    """
    from glode.rounds import rewrite_rounds

    chain = rewrite_rounds(params, n)
    typer.echo(f"{params}: {len(chain)} round(s): " + (", ".join(f"{k} <- {v['prev']}" for k, v in chain.items()) or "none"))


@app.command()
def preset(
    name: Annotated[str, typer.Argument(help="'glode' (the global and local views on, the default), 'paper' (the "
                                                "paper's progressive mode at the reference's timing), 'plain' "
                                                "(self-training without denoising) or 'default' (glode's defaults).")],
    params: Annotated[Path, typer.Option(help="The params file to rewrite.")] = Path("params.yaml"),
) -> None:
    """Switch params.yaml to a named set of values, then run `dvc repro` (or `dvc exp run`).

    `glode`: GLoDe's denoising at glode's settings, the global and local views on (the default;
    above plain self-training at the README's settings, level with it on protocol v3's table,
    docs/RESULTS.md); the rounds chain stays as it is. `paper`: the paper's progressive mode at
    the reference's timing (docs/METHOD.md §7): five one-epoch rounds of one target run (one
    AdamW state and schedule), labels refined from r3 on with the reference's views, loss and
    optimiser values. `plain`: plain self-training, the views off; the rounds chain stays as it
    is. `default`: back to glode's defaults for every key a preset sets, rounds
    included. Only the values change; comments stay, and the file is replaced only if the whole
    new file passes `glode check`.
    """
    from glode.presets import PRESETS, apply_preset

    if name not in PRESETS:
        raise typer.BadParameter(f"unknown preset {name!r}; one of {', '.join(PRESETS)}", param_hint="NAME")
    changed = apply_preset(params, name)
    typer.echo(f"{params}: preset {name}: " + (f"changed {', '.join(changed)}" if changed else "already set, nothing changed"))


@app.command()
def check(
    params: Annotated[Path, typer.Option(help="The params file to check.")] = Path("params.yaml"),
) -> None:
    """Check every key of params.yaml at once: types, ranges, choices, label sets, input paths and
    the rounds chain (cycles, missing predecessors, too many rounds); then the limits of the
    encoder (model.max-seq-len, denoise.dim) and of this machine (train.device, train.precision,
    evaluate.precision). Values that have no effect (k with the local view off) get a note.

    The pipeline's first stage runs the same check, but DVC refuses a `rounds` cycle while it
    builds the graph, before any stage runs, with a message that does not name params.yaml:
    this command names the key.
    """
    from glode.limits import check_params_file
    from glode.rounds import validate_rounds

    parsed, notes = check_params_file(params)
    chain = validate_rounds(parsed.get("rounds"))
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"{params}: every parameter is valid; {len(chain)} round(s)")


@app.command("params")
def params_reference() -> None:
    """Print every params.yaml key with its default, allowed values and meaning, as a markdown
    table (made from the declarations in glode/settings.py; docs/PARAMETERS.md holds the same)."""
    from glode.params import reference_markdown

    typer.echo(reference_markdown(), nl=False)


@app.command("build-encoder")
def build_encoder(
    name: Annotated[str, typer.Argument(help="'embedded', a local folder or a Hugging Face id.")] = "embedded",
    out: Annotated[Path, typer.Option(help="Output folder (an existing encoder folder is replaced).")] = Path("encoder"),
    force: Annotated[bool, typer.Option("--force", help="Replace --out even when it is not an encoder folder.")] = False,
) -> None:
    """Materialise an encoder folder outside the pipeline (what the `encoder` stage runs)."""
    from glode.encoder.build import MARKER_FILE, materialise_encoder
    from glode.errors import GlodeError

    if out.exists() and not force and not (out / MARKER_FILE).is_file():
        kind = "a folder" if out.is_dir() else "a file"
        raise GlodeError(f"{out}: exists and is {kind} that no encoder build wrote (no {MARKER_FILE}); it would be "
                         "replaced as a whole: give --out another path, or pass --force")
    typer.echo(f"written {materialise_encoder(name, out)}")


# --------------------------------------------------------------------------- glode labels

labels_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Inspect, compare and export the refined pseudo labels of a round (rounds/rN/labels.parquet), "
    "from the workspace or from an experiment (--rev).",
)
app.add_typer(labels_app, name="labels")

RevOpt = Annotated[
    str | None,
    typer.Option(help="Read from this git revision or DVC experiment (a name from `dvc exp show`) instead of the workspace."),
]
RepoOpt = Annotated[Path, typer.Option(help="Project root (the folder with dvc.yaml).")]
WindowOpt = Annotated[int, typer.Option(min=0, help="Words of context shown on each side of a span.")]
LimitOpt = Annotated[int, typer.Option(min=0, help="Print at most this many rows (0: all).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing --out file.")]


def _print_rows(headers, rows, total: int, limit: int, what: str) -> None:
    from glode.labels import format_table

    shown = rows if limit <= 0 else rows[:limit]
    if shown:
        typer.echo(format_table(headers, shown))
    more = f"; showing the first {len(shown)} (--limit 0 for all)" if len(shown) < total else ""
    typer.echo(f"{total} {what}{more}")


@labels_app.command("show")
def labels_show(
    round_name: Annotated[str, typer.Argument(metavar="ROUND", help="Round whose labels to show: r0, r1, ...")],
    type_: Annotated[list[str] | None, typer.Option("--type", "-t", help="Only rows with this hard label (repeatable; O allowed).")] = None,
    changed: Annotated[bool, typer.Option("--changed", help="Only spans whose hard label flipped in this round.")] = False,
    min_prob: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Only rows whose hard label has at least this "
                                                   "probability (0 to 1).")] = None,
    max_prob: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Only rows whose hard label has at most this "
                                                   "probability (0 to 1).")] = None,
    disagree: Annotated[bool, typer.Option("--disagree", help="Only spans where the global and local views admitted different classes.")] = False,
    sentence: Annotated[list[int] | None, typer.Option("--sentence", "-s", min=0, help="Only this sentence id (repeatable).")] = None,
    wrong: Annotated[bool, typer.Option("--wrong", help="Only rows whose hard label differs from the gold label.")] = False,
    include_o: Annotated[bool, typer.Option("--include-o", help="Also list rows whose hard label is O (without --type only entities are listed).")] = False,
    limit: LimitOpt = 50,
    window: WindowOpt = 8,
    rev: RevOpt = None,
    repo: RepoOpt = Path("."),
) -> None:
    """Print a round's labelled spans in their sentence context, the span in double square brackets.

    Columns: sentence id, span (word offsets, end exclusive), hard label (* = flipped in this
    round), its probability, the label the round started from, gold, classes admitted by the
    global (prototype) and local (neighbour) views, context. Spans without a row are O.
    """
    from glode.labels import ProjectFiles, check_alignment, filter_labels, read_round_labels, read_target, show_rows

    files = ProjectFiles(repo, rev)
    df = read_round_labels(files, round_name)
    target = read_target(files)
    picked = filter_labels(df, types=type_, changed=changed, min_prob=min_prob, max_prob=max_prob,
                           disagree=disagree, sentences=sentence, wrong=wrong, include_o=include_o)
    shown = picked if limit <= 0 else picked.head(limit)
    check_alignment(shown, target, files.where(f"rounds/{round_name}/labels.parquet"))
    headers, rows = show_rows(shown, target, window)
    _print_rows(headers, rows, len(picked), limit, f"of {len(df)} label rows of {round_name} match")


@labels_app.command("diff")
def labels_diff(
    round_a: Annotated[str, typer.Argument(metavar="RA", help="The earlier round (or the one to compare from).")],
    round_b: Annotated[str, typer.Argument(metavar="RB", help="The later round.")],
    kind: Annotated[list[str] | None, typer.Option(help="Only flips of this kind (repeatable): o_to_entity, entity_to_o, type_swap.")] = None,
    summary_only: Annotated[bool, typer.Option("--summary", help="Print the summary only, no list of flips.")] = False,
    limit: LimitOpt = 50,
    window: WindowOpt = 8,
    rev: RevOpt = None,
    rev_b: Annotated[str | None, typer.Option(help="Read RB from this revision or experiment instead (default: --rev), "
                                              "e.g. to compare the same round across experiments.")] = None,
    repo: RepoOpt = Path("."),
) -> None:
    """Summarise and list the spans whose hard label differs between rounds RA and RB.

    Flips are counted by kind (O -> entity, entity -> O, type swap) and by label pair, and,
    when the corpus has gold tags, as fixed (RB matches gold), broken (RA matched) or still wrong.
    """
    from glode.errors import GlodeError
    from glode.labels import (FLIP_KINDS, ProjectFiles, check_alignment, diff_labels, diff_rows, diff_summary,
                              format_summary, read_round_labels, read_target)

    bad = sorted(set(kind or []) - set(FLIP_KINDS))
    if bad:
        raise GlodeError(f"unknown flip kind(s) {bad}; use {', '.join(FLIP_KINDS)}")
    files_a = ProjectFiles(repo, rev)
    files_b = files_a if (rev_b or rev) == rev else ProjectFiles(repo, rev_b)
    a = read_round_labels(files_a, round_a)
    b = read_round_labels(files_b, round_b)
    flips = diff_labels(a, b)
    name_a = round_a if rev is None else f"{round_a}@{rev}"
    name_b = round_b if (rev_b or rev) is None else f"{round_b}@{rev_b or rev}"
    typer.echo(format_summary(diff_summary(flips), name_a, name_b))
    if summary_only:
        return
    if kind:
        flips = flips[flips.kind.isin(kind)]
    shown = flips if limit <= 0 else flips.head(limit)
    target = read_target(files_b)
    check_alignment(shown, target, f"{files_a.where(f'rounds/{round_a}/labels.parquet')} / "
                                   f"{files_b.where(f'rounds/{round_b}/labels.parquet')}")
    headers, rows = diff_rows(shown, target, window)
    typer.echo("")
    _print_rows(headers, rows, len(flips), limit, "flip(s) listed")


@labels_app.command("export")
def labels_export(
    round_name: Annotated[str, typer.Argument(metavar="ROUND", help="Round whose hard labels to export.")],
    format_: Annotated[str, typer.Option("--format", "-f", help="conll: 'token tag' lines, blank line between sentences; "
                                         "jsonl: one JSON object per sentence (sentence_id, line, tokens, tags, spans with prob; "
                                         "the same schema as `glode predict`).")] = "conll",
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write ('-': standard output).")] = Path("-"),
    gold: Annotated[bool, typer.Option("--gold", help="Add the corpus' gold tags: conll, a middle column (token gold pseudo) "
                                       "as conlleval reads it; jsonl, a 'gold' field.")] = False,
    force: ForceOpt = False,
    rev: RevOpt = None,
    repo: RepoOpt = Path("."),
) -> None:
    """Write the whole target corpus with a round's hard labels as BIO tags.

    Each stored span takes its argmax label; overlapping entity spans are resolved greedily by
    probability (as training does); every other word is O.
    """
    from glode.atomic import atomic_path, check_output_file
    from glode.errors import GlodeError
    from glode.labels import ProjectFiles, check_alignment, export_records, read_round_labels, read_target
    from glode.output_formats import format_bio, format_jsonl

    if format_ not in ("conll", "jsonl"):
        raise GlodeError(f"unknown export format {format_!r}; use conll or jsonl")
    if str(out) != "-":
        check_output_file(out, force, "--out")
    files = ProjectFiles(repo, rev)
    df = read_round_labels(files, round_name)
    target = read_target(files)
    check_alignment(df, target, files.where(f"rounds/{round_name}/labels.parquet"))
    records = list(export_records(df, target))
    text = "".join((format_bio if format_ == "conll" else format_jsonl)(records, gold))
    if str(out) == "-":
        typer.echo(text, nl=False)
        return
    with atomic_path(out) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    n_ent = sum(len(r.spans) for r in records)
    typer.echo(f"{out}: {len(records)} sentences, {n_ent} entities ({round_name}{'' if rev is None else '@' + rev})", err=True)


# --------------------------------------------------------------------------- glode predict


@app.command()
@with_settings
def predict(
    input_: Annotated[str, typer.Argument(metavar="INPUT", help="Text file (one sentence per line) or CoNLL file; '-' reads standard input.")],
    model: Annotated[Path, typer.Option(help="Model folder (models/rN).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write ('-': standard output).")] = Path("-"),
    output_format: Annotated[str, typer.Option("--format", "-f", help="bio: 'token tag' lines; jsonl: one JSON object per sentence "
                                               "(sentence_id, line, tokens, tags, spans with prob; the same schema as "
                                               "`glode labels export`).")] = "bio",
    input_format: Annotated[str, typer.Option(help="auto (CoNLL when lines are 'token ... tag' or -DOCSTART-), text or conll.")] = "auto",
    tokenizer: Annotated[str, typer.Option(help="How text lines become words: whitespace, or simple (punctuation split off).")] = "whitespace",
    batch_size: Annotated[int, typer.Option(min=1, help="Sentences per forward pass (batched by length).")] = 64,
    gold: Annotated[bool, typer.Option("--gold", help="Keep a tagged CoNLL input's tags: bio, a middle column (token gold "
                                       "predicted); jsonl, a 'gold' field.")] = False,
    encoder: Annotated[Path | None, typer.Option(help="Encoder folder holding the frozen word embeddings (default: the one recorded in the model).")] = None,
    threads: Annotated[int, typer.Option(min=0, help="Torch CPU threads (0: torch's default).")] = 0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on standard error.")] = True,
    force: ForceOpt = False,
    *,
    where: Annotated[DeviceSettings, options("device")],  # --device: train.device of params.yaml
    # --precision: evaluate.precision's choices; here auto by default (bf16 where native: 0.09 F1 of fp32 at most on
    # 14 models, 2.4x faster on this CPU; docs/BENCHMARKS.md, "Scoring precision")
    scoring: Annotated[EvaluateSettings, options("precision", defaults={"precision": "auto"})],
    run: Annotated[TrainSettings, options("processes")],  # --processes: train.processes
) -> None:
    """Tag new sentences with a trained model: greedy non-overlapping entity spans, as in evaluation."""
    import time

    from glode.atomic import atomic_path, check_output_file
    from glode.device import scoring_device
    from glode.distributed import launch_workers, sharded_scoring
    from glode.errors import GlodeError
    from glode.output_formats import format_bio, format_jsonl
    from glode.predict import TOKENIZERS, load_predictor, predict_items, read_input

    where = scoring_device(where, scoring.precision)  # before any work: --device and --precision can run here
    if str(out) != "-":
        check_output_file(out, force, "--out")  # before any work: the model and the input take a while
    if output_format not in ("bio", "jsonl"):
        raise GlodeError(f"unknown output format {output_format!r}; use bio or jsonl")
    if tokenizer not in TOKENIZERS:
        raise GlodeError(f"unknown tokenizer {tokenizer!r}; use {' or '.join(TOKENIZERS)}")
    if input_ == "-" and run.processes != 1:
        raise GlodeError(f"--processes {run.processes}: every process reads INPUT, and standard input ('-') can be "
                         "read once; save it to a file and give its name, or use --processes 1")
    items, used = read_input(input_, input_format, tokenizer)  # bad input: one line, before any process starts
    if launch_workers(run.processes, where.device, "predict", "--processes"):  # the launched processes did it all
        return
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the encoder's "Loading weights" bar is noise here
    with sharded_scoring(where.device) as world:  # each process scores its share of the batches
        net, tok, enc = load_predictor(model, encoder, where)
        t0 = time.perf_counter()
        predict_items(net, tok, enc, items, batch_size=batch_size, progress=progress, precision=where.precision)
        seconds = time.perf_counter() - t0
    if not world.main:  # every process has every sentence's spans; rank 0 writes them
        return
    chunks = (format_bio if output_format == "bio" else format_jsonl)(items, gold)
    if str(out) == "-":
        for chunk in chunks:
            typer.echo(chunk, nl=False)
    else:
        with atomic_path(out) as tmp:
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.writelines(chunks)
    n_ent = sum(len(it.spans) for it in items)
    typer.echo(f"{len(items)} sentences ({used}), {n_ent} entities, {len(items) / max(seconds, 1e-9):.1f} sentences/s"
               f" ({where.precision})" + ("" if str(out) == "-" else f" -> {out}"), err=True)


def main() -> None:
    run_app(app)


if __name__ == "__main__":
    main()
