"""`glode labels show|diff|export`: label filters, flips between rounds, BIO export, --rev via dvc.api."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glode.cli import app
from glode.conll import Sentence, read_conll
from glode.errors import GlodeError
from glode.labels import (ProjectFiles, diff_labels, diff_summary, export_records, filter_labels, highlight,
                          read_round_labels, read_target)
from glode.tables import write_sentences
from tests.round_outputs import CLASSES, R1, R2, SENTENCES, write_round


@pytest.fixture
def project(tmp_path) -> Path:
    write_sentences(SENTENCES, tmp_path / "tables/target_unlabelled.parquet")
    write_round(tmp_path, R1, "r1")
    write_round(tmp_path, R2, "r2")
    return tmp_path


def cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_label_filters_select_by_type_change_probability_disagreement_sentence_and_gold(project):
    df = read_round_labels(ProjectFiles(project), "r1")
    assert df.attrs["classes"] == CLASSES
    key = lambda d: [(r.sentence_id, r.start, r.end) for r in d.itertuples()]  # noqa: E731
    assert key(filter_labels(df)) == [(0, 0, 1), (0, 3, 5), (1, 0, 1), (1, 2, 3)]  # O rows left out by default
    assert len(filter_labels(df, include_o=True)) == 5
    assert key(filter_labels(df, types=["O"])) == [(0, 3, 4)]
    assert key(filter_labels(df, changed=True)) == [(0, 3, 5)]
    assert key(filter_labels(df, min_prob=0.56, max_prob=0.85)) == [(0, 3, 5), (1, 0, 1)]
    assert key(filter_labels(df, disagree=True)) == [(0, 3, 5)]
    assert key(filter_labels(df, sentences=[1])) == [(1, 0, 1), (1, 2, 3)]
    assert key(filter_labels(df, wrong=True)) == [(1, 2, 3)]
    with pytest.raises(GlodeError, match="unknown label type"):
        filter_labels(df, types=["MISC"])


def test_highlight_clips_the_context():
    words = [f"w{i}" for i in range(20)]
    assert highlight(words, 10, 12, window=2) == "... w8 w9 [[w10 w11]] w12 w13 ..."
    assert highlight(["A", "b"], 0, 1) == "[[A]] b"


def test_show_prints_spans_in_context(project):
    out = cli("labels", "show", "r1", "--repo", str(project))
    assert "context" in out.splitlines()[0]
    assert "Anna lives in [[New York]] ." in out
    assert "LOC*" in out  # flipped in this round
    assert "4 of 5 label rows of r1 match" in out
    out = cli("labels", "show", "r1", "--repo", str(project), "--disagree")
    assert "[[New York]]" in out and "Siemens" not in out and "1 of 5" in out
    out = cli("labels", "show", "r1", "--repo", str(project), "-t", "LOC", "--limit", "1", "--window", "1")
    assert "... in [[New York]] ." in out and "showing the first 1" in out
    assert "Usage" in CliRunner().invoke(app, ["labels", "show", "--help"]).output


def test_show_names_available_rounds(project):
    with pytest.raises(GlodeError, match=r"round r5 has no label table; rounds with labels: r1, r2"):
        cli("labels", "show", "r5", "--repo", str(project))
    with pytest.raises(GlodeError, match="look like r0"):
        cli("labels", "show", "latest", "--repo", str(project))


def test_show_refuses_labels_of_other_tables(project):
    other = [Sentence(["x"] * 6, ["O"] * 6, 1)] * 3
    write_sentences(other, project / "tables/target_unlabelled.parquet")
    with pytest.raises(GlodeError, match="does not match tables/target_unlabelled.parquet"):
        cli("labels", "show", "r1", "--repo", str(project))


def test_diff_counts_flips_by_kind_and_against_gold(project):
    files = ProjectFiles(project)
    flips = diff_labels(read_round_labels(files, "r1"), read_round_labels(files, "r2"))
    got = {(r.sentence_id, r.start, r.end): (r.label_a, r.label_b, r.kind) for r in flips.itertuples()}
    assert got == {
        (0, 4, 5): ("O", "ORG", "o_to_entity"),  # no row in r1: O there
        (1, 0, 1): ("ORG", "O", "entity_to_o"),  # no row in r2
        (1, 2, 3): ("LOC", "ORG", "type_swap"),
        (2, 0, 1): ("O", "PER", "o_to_entity"),
    }
    summary = diff_summary(flips)
    assert summary["by_kind"] == {"o_to_entity": 2, "entity_to_o": 1, "type_swap": 1}
    assert summary["gold"] == {"fixed": 1, "broken": 3, "still_wrong": 0}
    out = cli("labels", "diff", "r1", "r2", "--repo", str(project))
    assert "4 span(s) change their hard label from r1 to r2" in out
    assert "o to entity: 2, entity to o: 1, type swap: 1" in out
    assert "1 fixed, 3 broken" in out
    assert "[[Siemens]] and Ajax ." in out
    out = cli("labels", "diff", "r1", "r2", "--repo", str(project), "--kind", "type_swap")
    assert "[[Ajax]]" in out and "[[Siemens]]" not in out and "1 flip(s) listed" in out
    out = cli("labels", "diff", "r1", "r2", "--repo", str(project), "--summary")
    assert "context" not in out


def test_export_conll_and_jsonl(project, tmp_path):
    out = tmp_path / "r2.conll"
    cli("labels", "export", "r2", "--repo", str(project), "--out", str(out))
    sents = read_conll(out)
    assert [s.tokens for s in sents] == [s.tokens for s in SENTENCES]
    assert [s.tags for s in sents] == [
        ["B-PER", "O", "O", "B-LOC", "I-LOC", "O"],  # New York beats the overlapping York
        ["O", "O", "B-ORG", "O"],  # Siemens has no row in r2: O
        ["B-PER", "O"],
    ]
    text = cli("labels", "export", "r2", "--repo", str(project), "--gold")
    assert text.splitlines()[:2] == ["Anna B-PER B-PER", "lives O O"]
    lines = cli("labels", "export", "r2", "--repo", str(project), "--format", "jsonl").splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == 3 and [r["sentence_id"] for r in recs] == [0, 1, 2]
    assert list(recs[0]) == ["sentence_id", "line", "tokens", "tags", "spans"]  # the schema of glode/output_formats.py
    assert [r["line"] for r in recs] == [s.line for s in SENTENCES]  # the corpus file's lines, from the table
    assert recs[0]["spans"] == [
        {"start": 0, "end": 1, "label": "PER", "prob": pytest.approx(0.95), "text": "Anna"},
        {"start": 3, "end": 5, "label": "LOC", "prob": pytest.approx(0.7), "text": "New York"},
    ]
    with_gold = [json.loads(x) for x in cli("labels", "export", "r2", "--repo", str(project), "-f", "jsonl", "--gold").splitlines()]
    assert [r["gold"] for r in with_gold] == [s.tags for s in SENTENCES]
    files = ProjectFiles(project)
    assert [r.tags for r in export_records(read_round_labels(files, "r2"), read_target(files))] == [s.tags for s in sents]


def git(root: Path, *args: str) -> str:
    env = dict(os.environ, DVC_NO_ANALYTICS="1", GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    proc = subprocess.run(list(args), cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_rev_reads_a_commit_and_an_experiment(project):
    import sys

    dvc = [sys.executable, "-m", "dvc"]
    git(project, "git", "init", "-q")
    git(project, *dvc, "init", "-q")
    git(project, *dvc, "add", "-q", "tables", "rounds/r1/labels.parquet", "rounds/r2/labels.parquet")
    git(project, "git", "add", "-A")
    git(project, "git", "commit", "-qm", "labels")
    # an experiment where Ajax became PER in r2, then the workspace moves on (Ajax LOC)
    write_round(project, [r if r[:3] != (1, 2, 3) else (1, 2, 3, "PER", 0.6, "LOC", [], []) for r in R2], "r2")
    git(project, *dvc, "add", "-q", "rounds/r2/labels.parquet")
    git(project, *dvc, "exp", "save", "-q", "-n", "ajax-per")
    write_round(project, [r if r[:3] != (1, 2, 3) else (1, 2, 3, "LOC", 0.6, "LOC", [], []) for r in R2], "r2")

    def ajax(*rev):
        out = cli("labels", "show", "r2", "--repo", str(project), "-s", "1", *rev)
        return [ln.split()[2] for ln in out.splitlines() if "[[Ajax]]" in ln]

    assert ajax() == ["LOC"]
    assert ajax("--rev", "HEAD") == ["ORG*"]
    assert ajax("--rev", "ajax-per") == ["PER*"]
    out = cli("labels", "diff", "r2", "r2", "--repo", str(project), "--rev", "HEAD", "--rev-b", "ajax-per")
    assert "1 span(s) change their hard label from r2@HEAD to r2@ajax-per" in out
    conll = cli("labels", "export", "r2", "--repo", str(project), "--rev", "ajax-per")
    assert "Ajax B-PER" in conll
    with pytest.raises(GlodeError, match="rounds with labels: r1, r2"):
        cli("labels", "show", "r3", "--repo", str(project), "--rev", "HEAD")
    with pytest.raises(GlodeError, match="cannot open revision 'no-such-exp'"):
        cli("labels", "show", "r2", "--repo", str(project), "--rev", "no-such-exp")


@pytest.mark.parametrize("command", [["labels"], ["labels", "show"], ["labels", "diff"], ["labels", "export"], ["predict"]])
def test_every_command_has_help(command):
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output
    assert "--rev" in result.output or command in (["labels"], ["predict"])
