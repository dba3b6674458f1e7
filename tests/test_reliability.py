"""Issue 6: bad input fails clearly (message, exit status 1, no partial output), stages killed
mid-write leave the previous output intact, and versioned folders refuse unknown versions.

Stage scripts run in-process through their real entry point (``runpy`` + ``run_app``) where
only the exit status and message matter, and as subprocesses where a signal is involved.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from glode.atomic import atomic_path, clean_stale, temp_sibling
from glode.errors import GlodeError, ParamError
from glode.settings import DataSettings, EvaluateSettings
from glode.steps.prepare import prepare_tables
from glode.rounds import validate_rounds
from glode.tables import read_sentences, write_sentences
from tests.hang import hang_env, sigint_default, wait_for_hang
from tests.synthetic import all_words, write_corpus

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["PER", "ORG", "LOC"]
NAMES = ("source_train", "source_dev", "target_unlabelled", "target_test")


def corpora(folder: Path, seed: int = 0) -> dict[str, Path]:
    sizes = {"source_train": 30, "source_dev": 6, "target_unlabelled": 12, "target_test": 8}
    return {name: write_corpus(folder / f"{name}.txt", n, seed=seed + i) for i, (name, n) in enumerate(sizes.items())}


def prepare_args(files: dict[str, Path], out: Path, labels=LABELS, ignore=()) -> list[str]:
    args = [a for name, p in files.items() for a in (f"--{name.replace('_', '-')}", str(p))]
    args += [a for lab in labels for a in ("--labels", lab)]
    args += [a for lab in ignore for a in ("--ignore-labels", lab)]
    return [*args, "--out", str(out)]


def run_stage(script: str, args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """Run ``stages/<script>`` through its ``__main__`` entry point; (exit status, stderr)."""
    monkeypatch.setattr(sys, "argv", [str(ROOT / "stages" / script), *map(str, args)])
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        runpy.run_path(str(ROOT / "stages" / script), run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        for sig, handler in handlers.items():  # run_app installs its own
            signal.signal(sig, handler)
    return code, capsys.readouterr().err


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


# ------------------------------------------------------------------ bad input: prepare


def _set(files, name, content):
    files[name].write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return files[name]


BAD_INPUTS = {
    # case: (file, content or None for "missing", expected line or None, expected text)
    "missing file": ("source_dev", None, None, "file not found"),
    "empty file": ("source_train", "", None, "no sentences found"),
    "empty target corpus": ("target_unlabelled", "-DOCSTART- O\n\n\n", None, "no sentences found"),
    "one column": ("source_dev", "Anna B-PER\nlebt O\n\nin O\nBerlin\n", 5, "line has one column"),
    "bad tag": ("target_test", "Anna B-PER\n\nin O\nBerlin S-LOC\n", 4, "is not 'O', 'B-TYPE' or 'I-TYPE'"),
    "unknown type": ("source_train", "Anna B-PER\nEuro B-MISC\n\nx O\n\nUS B-MISC\n", 2, "MISC (2 entities"),
    "not utf-8": ("target_unlabelled", b"Anna B-PER\n\nM\xfcnchen B-LOC\n", 3, "byte offset 13"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_clear_error_exit_1_no_partial_output(tmp_path, monkeypatch, capsys, case):
    name, content, line, text = BAD_INPUTS[case]
    files = corpora(tmp_path / "data")
    out = tmp_path / "tables"
    prepare_tables(files, DataSettings(labels=LABELS), out)  # a previous good run
    before = snapshot(out)
    if content is None:
        files[name].unlink()
    else:
        _set(files, name, content)
    code, err = run_stage("prepare.py", prepare_args(files, out), monkeypatch, capsys)
    assert code == 1, err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line, no traceback
    where = f"{files[name]}:{line}:" if line else f"{files[name]}:"
    assert where in err and text in err, err
    assert snapshot(out) == before and leftovers(tmp_path) == []
    # and with no previous run, nothing at all appears
    code, _ = run_stage("prepare.py", prepare_args(files, tmp_path / "fresh"), monkeypatch, capsys)
    assert code == 1 and not (tmp_path / "fresh").exists() and leftovers(tmp_path) == []


def test_messages_say_what_to_do(tmp_path):
    files = corpora(tmp_path)
    _set(files, "source_train", "Euro B-MISC\nzone O\n\nAnna B-PER\n")
    with pytest.raises(GlodeError) as err:
        prepare_tables(files, DataSettings(labels=LABELS), tmp_path / "t")
    assert "data.labels" in str(err.value) and "data.ignore-labels" in str(err.value)
    _set(files, "source_train", b"\xff\xfeA\x00")
    with pytest.raises(GlodeError, match="re-encode the file as UTF-8"):
        prepare_tables(files, DataSettings(labels=LABELS), tmp_path / "t")


def test_windows_line_endings_are_accepted(tmp_path):
    lf = corpora(tmp_path / "lf")
    crlf = corpora(tmp_path / "crlf")
    for p in crlf.values():
        p.write_bytes(p.read_bytes().replace(b"\n", b"\r\n"))
    prepare_tables(lf, DataSettings(labels=LABELS), tmp_path / "t_lf")
    prepare_tables(crlf, DataSettings(labels=LABELS), tmp_path / "t_crlf")
    for name in NAMES:
        a = read_sentences(tmp_path / "t_lf" / f"{name}.parquet")
        b = read_sentences(tmp_path / "t_crlf" / f"{name}.parquet")
        assert a == b and all("\r" not in t for s in b for t in s.tokens + s.tags)


def test_empty_label_set_gets_the_stages_own_message(tmp_path, monkeypatch, capsys):
    """`data.labels: []`: DVC passes no --labels at all; that used to be click's MissingParameter."""
    files = corpora(tmp_path / "data")
    code, err = run_stage("prepare.py", prepare_args(files, tmp_path / "t", labels=()), monkeypatch, capsys)
    assert code == 1 and err.startswith("error: parameter 'data.labels'") and err.count("\n") == 1, err
    assert "the entity label set is empty" in err and not (tmp_path / "t").exists()


def test_implausible_corpus_is_warned_by_prepare(tmp_path, monkeypatch, capsys):
    files = corpora(tmp_path / "data")
    # the unlabelled corpus without blank lines between sentences: one sentence of 1200 tokens
    _set(files, "target_unlabelled", "".join(f"w{i} O\n" for i in range(1200)))
    code, err = run_stage("prepare.py", prepare_args(files, tmp_path / "t"), monkeypatch, capsys)
    assert code == 0 and f"warning: {files['target_unlabelled']}:1: a sentence of 1200 tokens" in err, err
    stats = json.loads((tmp_path / "t/stats.json").read_text())
    assert any("1200 tokens" in w for w in stats["warnings"])


# ------------------------------------------------------------------ label sets that differ


def test_source_label_set_differs_from_target(tmp_path, monkeypatch, capsys):
    """CoNLL-style source with MISC, WikiAnn-style target without: an error that says how to
    drop MISC, and `data.ignore-labels` reads it as O (counted)."""
    files = corpora(tmp_path)
    _set(files, "source_train", files["source_train"].read_text() + "\nEuro B-MISC\nzone I-MISC\nis O\n\nGerman B-MISC\n")
    code, err = run_stage("prepare.py", prepare_args(files, tmp_path / "t"), monkeypatch, capsys)
    assert code == 1 and "MISC (2 entities" in err and "data.ignore-labels" in err
    code, err = run_stage("prepare.py", prepare_args(files, tmp_path / "t", ignore=["MISC"]), monkeypatch, capsys)
    assert code == 0, err
    stats = json.loads((tmp_path / "t/stats.json").read_text())
    assert stats["tables"]["source_train"]["ignored_entities"] == {"MISC": 2}
    assert stats["ignore_labels"] == ["MISC"] and stats["warnings"] == []
    tags = {t for s in read_sentences(tmp_path / "t/source_train.parquet") for t in s.tags}
    assert not any("MISC" in t for t in tags)


def test_label_missing_from_source_is_an_error_and_from_target_a_warning(tmp_path, monkeypatch, capsys):
    files = corpora(tmp_path)
    # learning MISC as well: the source has it, the (WikiAnn-like) target test set does not
    _set(files, "source_train", files["source_train"].read_text() + "\nEuro B-MISC\n")
    code, err = run_stage("prepare.py", prepare_args(files, tmp_path / "t", labels=[*LABELS, "MISC"]), monkeypatch, capsys)
    assert code == 0 and "warning:" in err and "no MISC entities in the target test set" in err
    assert "MISC" in json.loads((tmp_path / "t/stats.json").read_text())["warnings"][0]
    # a label the source never shows cannot be learned
    code, err = run_stage("prepare.py", prepare_args(files, tmp_path / "u", labels=[*LABELS, "DATE"], ignore=["MISC"]), monkeypatch, capsys)
    assert code == 1 and "['DATE']" in err and "never occur in the source" in err and not (tmp_path / "u").exists()
    with pytest.raises(ParamError, match="data.ignore-labels"):
        prepare_tables(files, DataSettings(labels=LABELS, ignore_labels=["PER"]), tmp_path / "v")


# ------------------------------------------------------------------ model-level checks


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Prepared tiny tables, a tiny encoder and two untrained model folders: one for the tables'
    label set, one for another label set."""
    from glode.model import SpanModelConfig, build_model, save_model
    from tests.tiny_encoder import build_tiny_encoder

    root = tmp_path_factory.mktemp("world")
    prepare_tables(corpora(root / "data"), DataSettings(labels=LABELS), root / "tables")
    enc = build_tiny_encoder(root / "encoder", words=all_words())
    for folder, classes in (("models", ["O", *LABELS]), ("other", ["O", "PER", "LOC", "MISC"])):
        model, tok = build_model(enc, SpanModelConfig(classes=classes, max_span_len=3, max_seq_len=16), seed=0)
        save_model(model, tok, root / folder / "r0", enc, extra={"round": "r0"})
    return root


def test_model_from_another_label_set_is_refused(world, tmp_path, monkeypatch, capsys):
    out = tmp_path / "pseudo"
    args = ["--round", "r1", "--prev", "r0", "--models", world / "other", "--tables", world / "tables", "--out", out]
    code, err = run_stage("pseudo_label.py", args, monkeypatch, capsys)
    assert code == 1 and "['PER', 'LOC', 'MISC']" in err and "['PER', 'ORG', 'LOC']" in err, err
    assert str(world / "other" / "r0") in err and not out.exists()
    code, err = run_stage("evaluate.py", ["--model", world / "other/r0", "--metrics", tmp_path / "m.json",
                                          "--test", world / "tables/target_test.parquet"], monkeypatch, capsys)
    assert code == 1 and "trained for labels" in err and not (tmp_path / "m.json").exists()


def test_broken_round_chain_is_refused(world, tmp_path, monkeypatch, capsys):
    for prev, text in (("r2", "not an earlier round"), ("r7", "not an earlier round"), ("x", "not an earlier round")):
        code, err = run_stage("pseudo_label.py", ["--round", "r2", "--prev", prev, "--models", world / "models",
                                                  "--out", tmp_path / "p", "--tables", world / "tables"], monkeypatch, capsys)
        assert code == 1 and "parameter 'rounds.r2.prev'" in err and text in err and "glode rounds N" in err
    with pytest.raises(ParamError, match="defined later"):  # a cycle needs a forward reference
        validate_rounds({"r1": {"prev": "r2"}, "r2": {"prev": "r1"}})
    with pytest.raises(ParamError, match="not a round"):
        validate_rounds({"r1": {"prev": "r9"}})


def test_empty_target_table_and_k_out_of_range(world, tmp_path, monkeypatch, capsys):
    import shutil

    # the pseudo_label -> denoise path on the real (untrained) model: k must fit the memory bank
    pseudo = tmp_path / "pseudo"
    args = ["--round", "r1", "--prev", "r0", "--models", world / "models", "--tables", world / "tables",
            "--out", pseudo, "--dim", "8"]
    code, err = run_stage("pseudo_label.py", args, monkeypatch, capsys)
    assert code == 0, err
    manifest = json.loads((pseudo / "glode_pseudo.json").read_text())
    assert manifest["format_version"] == 1
    # max_seq_len 16 with the tiny character vocabulary: long sentences go in windows, and the
    # spans that no window holds whole (long words) are counted, not silently dropped
    coding = manifest["encoding"]["target_unlabelled"]
    assert coding["windowed_sentences"] > 0 and coding["lost_spans"] >= 0
    assert manifest["target_spans"] == len(pd.read_parquet(pseudo / "spans.parquet"))
    from glode.steps.initial_labels import initial_labels

    initial_labels(world / "models/r0", world / "tables", tmp_path / "r0.parquet", tmp_path / "r0.json",
                       EvaluateSettings(), progress=False)
    for k, text in ((0, "expected an integer >= 1"), (10**6, "memory bank")):  # k < 1 is refused before reading
        out = tmp_path / f"labels-{k}.parquet"
        code, err = run_stage("denoise.py", ["--round", "r1", "--pseudo", pseudo, "--prev-labels", tmp_path / "r0.parquet",
                                             "--out", out, "--metrics", tmp_path / "d.json", "--k", k, "--use-local"],
                           monkeypatch, capsys)  # the bank bounds k only where the local view searches it
        assert code == 1 and "parameter 'k'" in err and text in err, err
        assert not out.exists() and not (tmp_path / "d.json").exists()
    # an unknown pseudo-label folder version is an error, not a crash
    manifest["format_version"] = 99
    (pseudo / "glode_pseudo.json").write_text(json.dumps(manifest))
    code, err = run_stage("denoise.py", ["--round", "r1", "--pseudo", pseudo, "--prev-labels", tmp_path / "r0.parquet",
                                         "--out", tmp_path / "l.parquet", "--metrics", tmp_path / "d.json", "--k", 2],
                          monkeypatch, capsys)
    assert code == 1 and "format version 99" in err and "pseudo_label" in err
    # an empty target corpus (tables edited by hand) stops pseudo-labelling with a message
    tables = tmp_path / "tables"
    shutil.copytree(world / "tables", tables)
    write_sentences([], tables / "target_unlabelled.parquet")
    code, err = run_stage("pseudo_label.py", [*args[:7], tables, "--out", tmp_path / "p2"], monkeypatch, capsys)
    assert code == 1 and "target corpus is empty" in err and not (tmp_path / "p2").exists()


def test_encoder_that_needs_a_download(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    code, err = run_stage("encoder.py", ["--name", "glode-tests/no-such-model-1f3a", "--out", tmp_path / "enc"],
                          monkeypatch, capsys)
    assert code == 1 and "needs a download" in err and "encoder.name to that local path" in err, err
    assert "huggingface-cli download glode-tests/no-such-model-1f3a" in err and not (tmp_path / "enc").exists()


# ------------------------------------------------------------------ interrupted stages


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killed_prepare_keeps_the_previous_tables(tmp_path, sig):
    """Kill the prepare stage while it writes its tables folder (two of four tables written):
    the previous tables stay as they were, and the next run completes and tidies up. SIGINT
    (Ctrl-C) is SIGTERM's twin: status 130 (it used to be 0, which let `cmd && next` go on), one
    line, the temporary folder removed."""
    old = corpora(tmp_path / "old", seed=0)
    new = corpora(tmp_path / "new", seed=100)
    out = tmp_path / "tables"
    prepare_tables(old, DataSettings(labels=LABELS), out)
    before = snapshot(out)
    marker = tmp_path / "hang.pid"
    env = hang_env(dict(os.environ), "prepare.py:target_unlabelled.parquet", marker)
    proc = subprocess.Popen([sys.executable, str(ROOT / "stages/prepare.py"), *prepare_args(new, out)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)
    try:
        pid = wait_for_hang(proc, marker, 120, "the stage", poll=0.05)
        partial = [p for p in tmp_path.iterdir() if p.name.startswith(".tables.tmp-")]
        assert len(partial) == 1 and (partial[0] / "source_train.parquet").exists()  # mid-write
        os.kill(pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 128 + sig), err
    assert snapshot(out) == before  # the previous output is intact
    if sig != signal.SIGKILL:
        word = "interrupted" if sig == signal.SIGINT else "terminated"
        assert leftovers(tmp_path) == [] and err == f"{word}; partial outputs removed\n", err
    else:
        assert len(leftovers(tmp_path)) == 1  # the dead writer's hidden temporary folder
    prepare_tables(new, DataSettings(labels=LABELS), out)  # the next run completes and removes the dead writer's leftovers
    assert leftovers(tmp_path) == []
    assert snapshot(out) != before
    assert read_sentences(out / "target_test.parquet") == read_sentences_from(new["target_test"])


def read_sentences_from(path: Path):
    from glode.conll import read_conll

    return read_conll(path, LABELS)


def test_stale_temporaries_of_dead_writers_are_cleaned_or_restored(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".out.txt.tmp-{dead.pid}").write_text("half")
    (tmp_path / f".out.txt.tmp-{os.getpid()}").write_text("mine")  # a live writer's: kept
    (tmp_path / f".folder.old-{dead.pid}").mkdir()  # moved aside, never replaced: put back
    (tmp_path / f".folder.old-{dead.pid}" / "a").write_text("previous")
    assert len(clean_stale(tmp_path / "out.txt")) == 1
    assert (tmp_path / f".out.txt.tmp-{os.getpid()}").exists()
    clean_stale(tmp_path / "folder")
    assert (tmp_path / "folder" / "a").read_text() == "previous"
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("done")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "out.txt"]


def test_labels_parquet_of_unknown_version_is_an_error(tmp_path):
    import pyarrow.parquet as pq

    from glode.tables import read_table

    path = write_sentences(read_sentences_from(corpora(tmp_path)["source_dev"]), tmp_path / "s.parquet")
    table = pq.read_table(path)
    meta = dict(table.schema.metadata)
    meta[b"glode_schema_version"] = b"7"
    pq.write_table(table.replace_schema_metadata(meta), path)
    with pytest.raises(GlodeError, match="schema version '7'"):
        read_table(path, "sentences")
    assert isinstance(pd.read_parquet(path), pd.DataFrame)  # still a valid parquet file for other tools


def test_temporary_outputs_are_ignored_by_git(tmp_path):
    """What a SIGKILL leaves (glode/atomic.py's hidden siblings, which every output, the encoder
    folder included, is written through) is not listed by `git status`, so `git add .` cannot
    commit it."""
    names = [temp_sibling(Path("tables")), temp_sibling(Path("rounds/r1/pseudo"), "old"),
             temp_sibling(Path("models/r1/weights.safetensors")), temp_sibling(Path("encoder"))]
    proc = subprocess.run(["git", "check-ignore", "--no-index", *map(str, names)], cwd=ROOT, capture_output=True, text=True)
    assert sorted(proc.stdout.split()) == sorted(map(str, names)), proc.stderr
    kept = subprocess.run(["git", "check-ignore", "--no-index", "tables.txt", "glode/atomic.py", "logs/params-check.txt"],
                          cwd=ROOT, capture_output=True, text=True)
    assert kept.stdout == "", kept.stdout


# ------------------------------------------------------------------ issue 39: Ctrl-C on a glode command


def glode_env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def test_ctrl_c_on_glode_predict_exits_130_and_writes_nothing(world, tmp_path):
    """`kill -INT` on `glode predict -o FILE` just before it renames its output into place: status
    130 (it used to be 0, so `glode predict ... && next-step` went on without the file), one
    line, no output file and no hidden temporary."""
    text = tmp_path / "in.txt"
    text.write_text("Anna lebt in Berlin\nSiemens baut in Ulm\n", encoding="utf-8")
    out = tmp_path / "out.txt"
    marker = tmp_path / "hang.pid"
    env = hang_env(glode_env(), f"cli.py:{out.name}", marker)
    proc = subprocess.Popen([sys.executable, "-m", "glode.cli", "-q", "predict", str(text), "--model", str(world / "models/r0"),
                             "-o", str(out), "--no-progress"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=sigint_default)
    try:
        os.kill(wait_for_hang(proc, marker, 120, "glode predict", poll=0.05), signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and err == "interrupted; partial outputs removed\n", (proc.returncode, err)
    assert not out.exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------ issue 39: limits glode check did not see


def check_project(tmp_path: Path, **values) -> Path:
    """A project folder with a schema-default params.yaml (tests/params_fixture.py) and tiny input
    files, ``values`` (dotted keys) set in it."""
    from tests.params_fixture import default_params, write_params

    files = corpora(tmp_path / "c")
    for name, rel in (("source_train", "data/en/train.txt"), ("source_dev", "data/en/dev.txt"),
                      ("target_unlabelled", "data/de/train.txt"), ("target_test", "data/de/test.txt")):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        files[name].replace(tmp_path / rel)
    params = default_params()
    for key, value in values.items():
        section, _, name = key.rpartition(".")
        (params[section] if section else params)[name] = value
    return write_params(tmp_path / "params.yaml", params)


def glode_check(params: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "glode.cli", "check", "--params", str(params)], cwd=params.parent,
                          env=glode_env(), capture_output=True, text=True, timeout=300)


def test_glode_check_sees_the_encoder_and_machine_limits(tmp_path):
    """`model.max-seq-len: 2000`, `denoise.dim` above the span vectors' width and an accelerator or
    precision this machine lacks passed `glode check` and failed minutes later (a torch size
    mismatch, a silently full-width projection, a ParamError in train_source). Now the check
    stage and `glode check` name each key, reading the encoder's positions from its config."""
    import torch

    from glode.limits import limit_problems
    from tests.params_fixture import default_params

    enc = tmp_path / "enc"
    enc.mkdir()
    (enc / "config.json").write_text(json.dumps({"model_type": "xlm-roberta", "max_position_embeddings": 514,
                                                 "pad_token_id": 1, "hidden_size": 8}))
    params = default_params()
    params["encoder"]["name"] = str(enc)
    params["model"]["max-seq-len"] = 513
    params["denoise"]["dim"] = 300
    problems = limit_problems(params, tmp_path)
    assert any(p.startswith("model.max-seq-len: 513 is more than the 512 sub-tokens") for p in problems), problems
    assert any(p.startswith("denoise.dim: 300 is more than the 266 dimensions") for p in problems), problems
    params["denoise"]["features"] = "encoder"  # the encoder's end points only: 2 x 8
    assert any("denoise.dim: 300 is more than the 16 dimensions" in p for p in limit_problems(params, tmp_path))

    accelerator = "mps" if torch.cuda.is_available() else "cuda"
    root = check_project(tmp_path / "p", **{"model.max-seq-len": 2000, "denoise.dim": 5000, "train.device": accelerator})
    proc = glode_check(root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "model.max-seq-len: 2000 is more than the 512 sub-tokens" in proc.stderr and "'embedded'" in proc.stderr
    assert "denoise.dim: 5000 is more than the 1018 dimensions" in proc.stderr  # 2 x 384 + 250 (model features)
    if not torch.backends.mps.is_available():
        assert f"train.device: '{accelerator}': this machine has no" in proc.stderr, proc.stderr
    if not torch.cuda.is_available():
        root = check_project(tmp_path / "q", **{"train.precision": "fp16"})
        proc = glode_check(root)
        assert proc.returncode == 1 and "train.precision: fp16 needs a CUDA device" in proc.stderr, proc.stderr


def test_k_with_the_local_view_off_is_a_note_not_an_error(tmp_path, monkeypatch, capsys):
    root = check_project(tmp_path, **{"k": 500, "denoise.use-local": False})
    proc = glode_check(root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("note: k=500: no effect while denoise.use-local is false"), proc.stderr
    assert proc.stderr.count("\n") == 1 and "every parameter is valid" in proc.stdout
    code, err = run_stage("check.py", ["--params", root, "--out", tmp_path / "stamp.txt"], monkeypatch, capsys)
    assert code == 0 and err.startswith("note: k=500: no effect while denoise.use-local is false"), err
    root = check_project(tmp_path / "on", **{"k": 500})  # the local view on: no note
    assert glode_check(root).stderr == ""


def test_sequence_length_beyond_the_encoder_and_dim_beyond_the_vectors_stop_the_stages(world, tmp_path, monkeypatch, capsys):
    """The stages check the same limits themselves (a params.yaml that skipped the check)."""
    from glode.model import SpanModelConfig, build_model, load_model

    with pytest.raises(ParamError, match="model.max-seq-len.*2000 is more than the 512 sub-tokens"):
        build_model(world / "encoder", SpanModelConfig(classes=["O", *LABELS], max_seq_len=2000), seed=0)
    # a model folder trained with such a length on short sentences only: refused when loaded
    import shutil

    folder = Path(shutil.copytree(world / "models/r0", tmp_path / "long"))
    meta = json.loads((folder / "glode_model.json").read_text())
    meta["config"]["max_seq_len"] = 2000
    (folder / "glode_model.json").write_text(json.dumps(meta))
    with pytest.raises(GlodeError, match="its sequence length 2000 .* more than the 512 sub-tokens its encoder takes"):
        load_model(folder)
    # denoise.dim above the width of the span vectors (tiny encoder: 2 x 32 + 250)
    out = tmp_path / "pseudo"
    code, err = run_stage("pseudo_label.py", ["--round", "r1", "--prev", "r0", "--models", world / "models", "--tables",
                                              world / "tables", "--out", out, "--dim", 400], monkeypatch, capsys)
    assert code == 1 and "parameter 'denoise.dim': 400 is more than the 314 dimensions" in err, err
    assert not out.exists()


def test_gold_entities_cut_by_the_sequence_length_are_a_warning_with_the_count(world, tmp_path, monkeypatch, capsys):
    """`model.max-seq-len: 3` (one sub-token per window) used to cut most multi-word gold
    entities with nothing on the terminal; only the metrics JSON recorded it."""
    from glode.corpus import encode_table, lost_gold_entities
    from glode.features import SentenceEncoder
    from glode.model import load_model

    _, tok, _ = load_model(world / "models/r0")
    table = world / "tables/source_train.parquet"
    sentences, encoded = encode_table(SentenceEncoder(tok, 3, 3), table, None)
    lost, total = lost_gold_entities(sentences, encoded, 3)
    err = capsys.readouterr().err
    assert 0 < lost <= total and f"warning: {table}: {lost} of {total} gold entities fit in no window of " \
                                 "model.max-seq-len=3" in err, err
    encode_table(SentenceEncoder(tok, 3, 128), table, None)
    assert "warning" not in capsys.readouterr().err  # nothing lost: nothing said
    # the evaluate stage says it on the terminal, with the count its metrics record
    import shutil

    folder = Path(shutil.copytree(world / "models/r0", tmp_path / "short"))
    meta = json.loads((folder / "glode_model.json").read_text())
    meta["config"]["max_seq_len"] = 3
    (folder / "glode_model.json").write_text(json.dumps(meta))
    test = world / "tables/target_test.parquet"
    code, err = run_stage("evaluate.py", ["--model", folder, "--metrics", tmp_path / "m.json", "--test", test],
                          monkeypatch, capsys)
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert code == 0 and metrics["gold_entities_truncated"] > 0, err
    assert f"warning: {test}: {metrics['gold_entities_truncated']} of" in err, err


# ------------------------------------------------------------------ issue 39: damaged model and encoder folders


@pytest.mark.parametrize("damage", ["no tokenizer.json", "truncated weights"])
def test_damaged_model_and_encoder_folders_are_one_line_naming_the_file(world, tmp_path, monkeypatch, capsys, damage):
    """Each used to be a raw ValueError (no backend tokenizer) or a SafetensorError traceback."""
    import shutil

    from glode.model import SpanModelConfig, build_model, save_model

    encoder = Path(shutil.copytree(world / "encoder", tmp_path / "encoder"))

    def model_folder() -> Path:  # frozen word embeddings: the folder reads them from ../../encoder
        shutil.rmtree(tmp_path / "models", ignore_errors=True)
        model, tok = build_model(encoder, SpanModelConfig(classes=["O", *LABELS], max_span_len=3, max_seq_len=16), seed=0)
        model.freeze_word_embeddings(True)
        return save_model(model, tok, tmp_path / "models/r0", encoder)

    def spoil(folder: Path, weights: str) -> str:
        if damage == "no tokenizer.json":
            (folder / "tokenizer.json").unlink()
            return "tokenizer.json is missing"
        data = (folder / weights).read_bytes()
        (folder / weights).write_bytes(data[: len(data) // 2])
        return f"{weights} is damaged or truncated"

    model = model_folder()
    text = spoil(model, "weights.safetensors")
    args = ["--model", model, "--metrics", tmp_path / "m.json", "--test", world / "tables/target_test.parquet"]
    code, err = run_stage("evaluate.py", args, monkeypatch, capsys)
    assert code == 1 and err.startswith(f"error: {model}: {text}") and err.count("\n") == 1, err
    assert not (tmp_path / "m.json").exists()
    # the encoder folder: read by training (build_model) and for a model's frozen word embeddings
    model_folder()
    text = spoil(encoder, "model.safetensors")
    if damage == "truncated weights":  # a model folder reads only the encoder's weights
        code, err = run_stage("evaluate.py", args, monkeypatch, capsys)
        assert code == 1 and err.startswith(f"error: {encoder}: {text}") and err.count("\n") == 1, err
    code, err = run_stage("train_source.py", ["--target", "de", "--tables", world / "tables", "--encoder", encoder,
                                              "--out", tmp_path / "new", "--logs", tmp_path / "logs"], monkeypatch, capsys)
    assert code == 1 and err.startswith(f"error: {encoder}: {text}") and err.count("\n") == 1, err
    assert "dvc repro -f encoder" in err and not (tmp_path / "new").exists()


# ------------------------------------------------------------------ issue 39: output paths of glode commands


def test_output_paths_are_checked_before_any_work(world, tmp_path):
    """`-o DIR` used to crash with IsADirectoryError (predict after all its work); an existing
    file (even a gold test.txt) was overwritten silently."""
    from typer.testing import CliRunner

    from glode.cli import app

    text = tmp_path / "in.txt"
    text.write_text("Anna lebt in Berlin\n", encoding="utf-8")
    folder = tmp_path / "folder"
    folder.mkdir()
    gold = tmp_path / "test.txt"
    gold.write_text("Anna B-PER\n", encoding="utf-8")
    predict = ["predict", str(text), "--model", str(world / "models/r0"), "--no-progress"]
    for args in (predict, ["labels", "export", "r1", "--repo", str(tmp_path / "no-project")]):
        result = CliRunner().invoke(app, [*args, "-o", str(folder)])
        assert result.exit_code == 1 and f"{folder}: is a directory" in str(result.exception), result.output
        result = CliRunner().invoke(app, [*args, "-o", str(gold)])
        assert result.exit_code == 1 and f"{gold}: exists; pass --force" in str(result.exception), result.output
        assert gold.read_text() == "Anna B-PER\n"
        result = CliRunner().invoke(app, [*args, "-o", str(gold / "x.txt")])
        assert result.exit_code == 1 and f"{gold} is a file, not a folder" in str(result.exception), result.output
    # the model and the input are read only after the checks: a missing model is not what is reported
    result = CliRunner().invoke(app, ["predict", str(text), "--model", str(tmp_path / "nope"), "-o", str(folder)])
    assert "is a directory" in str(result.exception)
    result = CliRunner().invoke(app, [*predict, "-o", str(gold), "--force"])
    assert result.exit_code == 0, result.output
    assert gold.read_text().startswith("Anna ") and gold.read_text() != "Anna B-PER\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "in.txt", "test.txt"]


def test_build_encoder_does_not_replace_a_folder_it_did_not_write(tmp_path):
    from typer.testing import CliRunner

    from glode.cli import app

    data = tmp_path / "data"
    data.mkdir()
    (data / "train.txt").write_text("Anna B-PER\n")
    result = CliRunner().invoke(app, ["build-encoder", "embedded", "--out", str(data)])
    assert result.exit_code == 1 and "no encoder build wrote" in str(result.exception)
    assert (data / "train.txt").read_text() == "Anna B-PER\n"


# ------------------------------------------------------------------ issue 39: glode commands that read params.yaml


@pytest.mark.parametrize("command", [["rounds", "2"], ["preset", "paper"], ["check"]])
def test_glode_commands_report_a_bad_params_file_in_one_line(tmp_path, command):
    """`glode rounds` and `glode preset` printed a traceback for a YAML error or a missing file."""
    bad = tmp_path / "params.yaml"
    bad.write_text("k: [300,\ntarget: de\n", encoding="utf-8")
    for params, text in ((bad, f"{bad}: not valid YAML"), (tmp_path / "none.yaml", "none.yaml: file not found"),
                         (tmp_path, "is a folder")):
        proc = subprocess.run([sys.executable, "-m", "glode.cli", *command, "--params", str(params)], cwd=tmp_path,
                              env=glode_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1 and proc.stderr.startswith("error: ") and text in proc.stderr, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert bad.read_text() == "k: [300,\ntarget: de\n"


# ------------------------------------------------------------------ issue 39: encoder names


def test_a_path_like_encoder_name_is_not_taken_for_a_hub_id(tmp_path, monkeypatch, capsys):
    """`encoder.name: models/my-encoder` in a project with a models/ folder is a missing folder,
    not a Hugging Face id to look for online."""
    from glode.params import check_params
    from tests.params_fixture import default_params

    root = check_project(tmp_path)
    (root.parent / "models").mkdir()
    params = default_params()
    params["encoder"]["name"] = "models/my-encoder"
    assert check_params(params, root.parent) == [
        "encoder.name: 'models/my-encoder': no such folder (models/ is a folder here, so this is a path, not a "
        "Hugging Face id); give 'embedded', an existing folder or a Hugging Face id"]
    monkeypatch.chdir(root.parent)
    code, err = run_stage("encoder.py", ["--name", "models/my-encoder", "--out", tmp_path / "enc"], monkeypatch, capsys)
    assert code == 1 and err.startswith("error: parameter 'encoder.name': 'models/my-encoder': no such folder"), err


def test_a_hub_id_without_a_network_fails_at_once(tmp_path, monkeypatch, capsys):
    """Without HF_HUB_OFFLINE the hub client retried a dead network for ~50 s before the message."""
    import time

    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    code, err = run_stage("encoder.py", ["--name", "glode-tests/no-such-model-1f3a", "--out", tmp_path / "enc"],
                          monkeypatch, capsys)
    took = time.monotonic() - start
    assert code == 1 and "needs a download" in err and "127.0.0.1:9 cannot be reached" in err, err
    assert err.count("\n") == 1 and took < 15, (took, err)
    assert not (tmp_path / "enc").exists()


# ------------------------------------------------------------------ issue 39: a full disk


def test_a_full_disk_keeps_the_previous_tables_and_says_what_failed(tmp_path, monkeypatch, capsys):
    """ENOSPC in the middle of writing the tables folder (simulated: the third parquet write
    fails): one line naming the output, the previous tables intact, no temporary left."""
    import errno

    import pyarrow.parquet as pq

    files = corpora(tmp_path / "data")
    out = tmp_path / "tables"
    prepare_tables(files, DataSettings(labels=LABELS), out)
    before = snapshot(out)
    real = pq.write_table
    calls = []

    def full_disk(table, where, *args, **kwargs):
        calls.append(where)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", full_disk)
    code, err = run_stage("prepare.py", prepare_args(corpora(tmp_path / "new", seed=7), out), monkeypatch, capsys)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith(f"error: {out}: writing failed (No space left on device)") and "previous version of tables is unchanged" in err
    assert len(calls) == 3 and snapshot(out) == before and leftovers(tmp_path) == []


def test_a_real_full_tmpfs_keeps_the_previous_tables(tmp_path):
    """The same on a real 96 KiB tmpfs (needs `unshare -rm`, i.e. user namespaces; skipped
    without): the second, larger corpus does not fit beside the previous tables."""
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("no unshare")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {tmp_path}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {probe.stderr.strip()}")
    small = corpora(tmp_path / "small")
    big = {name: write_corpus(tmp_path / "big" / f"{name}.txt", 1500, seed=i) for i, name in enumerate(NAMES)}
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    stage = [sys.executable, str(ROOT / "stages/prepare.py")]
    script = "\n".join([
        f"mount -t tmpfs -o size=96k tmpfs {mnt} || exit 99",  # the small tables take 24 KiB, the big 128 KiB
        f"{subprocess.list2cmdline(stage + prepare_args(small, mnt / 'tables'))} >/dev/null 2>&1 || exit 98",
        f"cd {mnt} && find tables -type f | sort | xargs sha256sum > {tmp_path}/before.txt",
        f"{subprocess.list2cmdline(stage + prepare_args(big, mnt / 'tables'))} 2> {tmp_path}/err.txt; echo $? > {tmp_path}/rc.txt",
        f"cd {mnt} && find tables -type f | sort | xargs sha256sum > {tmp_path}/after.txt; ls -A {mnt} > {tmp_path}/ls.txt",
    ])
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=glode_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    err = (tmp_path / "err.txt").read_text()
    assert (tmp_path / "rc.txt").read_text().strip() == "1", err
    assert err.count("\n") == 1 and err.startswith(f"error: {mnt / 'tables'}: writing failed ("), err
    assert "No space left on device" in err and "the previous version of tables is unchanged" in err, err
    assert (tmp_path / "after.txt").read_text() == (tmp_path / "before.txt").read_text() != ""
    assert (tmp_path / "ls.txt").read_text().split() == ["tables"]
