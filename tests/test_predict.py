"""glode/predict.py (`glode predict`): text/CoNLL input, BIO/JSON output, the same spans as the
evaluate stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from glode.cli import app
from glode.conll import read_conll
from glode.errors import GlodeError, ParamError
from glode.features import SentenceEncoder
from glode.predict import tokenize
from glode.model import SpanModelConfig, build_model, load_model, save_model
from glode.corpus import predict_corpus
from glode.spans import spans_to_tags
from tests.synthetic import all_words, write_corpus
from tests.tiny_encoder import build_tiny_encoder

CLASSES = ["O", "PER", "ORG", "LOC"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A random tiny span model saved like a round's model (frozen word embeddings by reference)."""
    root = tmp_path_factory.mktemp("predict")
    encoder = build_tiny_encoder(root / "encoder", words=all_words())
    model, tok = build_model(encoder, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=24), seed=0)
    with torch.no_grad():  # make entities common enough that decoding has work to do
        model.classifier.bias.copy_(torch.tensor([0.0, 0.6, 0.6, 0.6]))
    model.freeze_word_embeddings(True)
    return save_model(model, tok, root / "models/r1", encoder)


def cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def reference_tags(model_dir: Path, sentences: list[list[str]]) -> list[list[str]]:
    """What the evaluate stage's decoding predicts for these sentences."""
    model, tok, _ = load_model(model_dir)
    enc = SentenceEncoder(tok, model.config.max_span_len, model.config.max_seq_len).encode(sentences)
    spans = predict_corpus(model, tok, enc, batch_size=4, progress=False)
    return [spans_to_tags(s, len(w)) for s, w in zip(spans, sentences)]


def test_whitespace_and_simple_tokenizers_split_text_and_an_unknown_one_is_refused():
    assert tokenize("Anna lebt in New-York, seit 3.5 Jahren.") == ["Anna", "lebt", "in", "New-York,", "seit", "3.5", "Jahren."]
    assert tokenize("Anna lebt in New-York, seit 3.5 Jahren.", "simple") == [
        "Anna", "lebt", "in", "New-York", ",", "seit", "3.5", "Jahren", "."]
    with pytest.raises(GlodeError, match="unknown tokenizer"):
        tokenize("x", "spacy")


def test_predict_text_matches_the_evaluate_stage(model_dir, tmp_path):
    lines = ["Anna lives in New York .", "", "Siemens and Ajax visited Rotterdam today .",
             " ".join(["Jan de Vries lives in Berlin and works for Real Madrid ."] * 4)]  # longer than max_seq_len
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sentences = [ln.split() for ln in lines if ln]
    expected = reference_tags(model_dir, sentences)
    assert any(t != "O" for tags in expected for t in tags)
    out = tmp_path / "out.bio"
    cli("predict", str(src), "--model", str(model_dir), "--out", str(out), "--batch-size", "2", "--no-progress")
    got = read_conll(out)
    assert [s.tokens for s in got] == sentences
    assert [s.tags for s in got] == expected
    # JSON: spans with scores, line numbers of the input
    recs = [json.loads(x) for x in cli("predict", str(src), "--model", str(model_dir), "-f", "jsonl", "--no-progress").splitlines()
            if x.startswith("{")]
    assert [r["line"] for r in recs] == [1, 3, 4]
    assert [r["sentence_id"] for r in recs] == [0, 1, 2]
    assert [r["tags"] for r in recs] == expected
    for r in recs:
        assert list(r) == ["sentence_id", "line", "tokens", "tags", "spans"]  # the schema of glode/output_formats.py
        for sp in r["spans"]:
            assert list(sp) == ["start", "end", "label", "prob", "text"]
            assert sp["label"] in CLASSES[1:] and 0 < sp["prob"] <= 1
            assert sp["text"] == " ".join(r["tokens"][sp["start"]:sp["end"]])


def test_predict_conll_keeps_gold_column(model_dir, tmp_path):
    src = write_corpus(tmp_path / "test.txt", 5, seed=7)
    gold = read_conll(src)
    expected = reference_tags(model_dir, [s.tokens for s in gold])
    text = cli("predict", str(src), "--model", str(model_dir), "--gold", "--no-progress", "--threads", "1")
    rows = [ln.split() for ln in text.splitlines() if ln.strip() and " " in ln.strip()]
    rows = [r for r in rows if len(r) == 3]
    assert [r[1] for r in rows] == [t for s in gold for t in s.tags]
    assert [r[2] for r in rows] == [t for tags in expected for t in tags]
    assert text.count("\n\n") == len(gold) - 1 and not text.endswith("\n\n")  # a blank line between sentences
    recs = [json.loads(x) for x in cli("predict", str(src), "--model", str(model_dir), "-f", "jsonl", "--gold",
                                       "--no-progress", "--threads", "1").splitlines() if x.startswith("{")]
    assert [r["gold"] for r in recs] == [s.tags for s in gold] and [r["tags"] for r in recs] == expected
    plain = cli("predict", str(src), "--model", str(model_dir), "-f", "jsonl", "--no-progress", "--threads", "1")
    assert '"gold"' not in plain  # gold only when asked for, as in `glode labels export`


def test_predict_errors_and_help(model_dir, tmp_path):
    with pytest.raises(GlodeError, match="file not found"):
        cli("predict", str(tmp_path / "missing.txt"), "--model", str(model_dir))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(GlodeError, match="no sentences"):
        cli("predict", str(empty), "--model", str(model_dir))
    (tmp_path / "s.txt").write_text("Anna\n", encoding="utf-8")
    with pytest.raises(GlodeError, match="not a glode model folder"):
        cli("predict", str(tmp_path / "s.txt"), "--model", str(tmp_path))
    with pytest.raises(GlodeError, match="unknown output format"):
        cli("predict", str(tmp_path / "s.txt"), "--model", str(model_dir), "-f", "xml")
    assert "--model" in CliRunner().invoke(app, ["predict", "--help"]).output


def test_predict_device_and_precision(model_dir, tmp_path):
    """--device/--precision are train.device/evaluate.precision: checked before the input is read;
    bf16 on the CPU tags like fp32 here (the tiny model's margins are wide)."""
    (tmp_path / "s.txt").write_text("Anna lives in Berlin .\n", encoding="utf-8")
    with pytest.raises(ParamError, match="train.device"):
        cli("predict", str(tmp_path / "missing.txt"), "--model", str(model_dir), "--device", "gpu")
    with pytest.raises(ParamError, match=r"evaluate.precision.*fp16 needs a CUDA device"):
        cli("predict", str(tmp_path / "s.txt"), "--model", str(model_dir), "--device", "cpu", "--precision", "fp16")
    plain = cli("predict", str(tmp_path / "s.txt"), "--model", str(model_dir), "--device", "cpu", "--no-progress")
    half = cli("predict", str(tmp_path / "s.txt"), "--model", str(model_dir), "--device", "cpu", "--precision", "bf16",
               "--no-progress")
    tags = lambda out: [line for line in out.splitlines() if line.startswith(("Anna ", "lives ", "Berlin "))]  # noqa: E731
    assert len(tags(plain)) == 3 and tags(half) == tags(plain)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "fp32")])
def test_predict_scores_in_bf16_by_default_only_where_the_cpu_runs_it_natively(model_dir, tmp_path, monkeypatch,
                                                                                 native, expected):
    """glode predict's --precision defaults to auto (evaluate.precision's default stays fp32): bf16
    on a CPU with AVX-512 BF16 or AMX, fp32 elsewhere; the run's summary line says which ran, and
    the spans are those of --precision <that> asked for by name."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    (tmp_path / "s.txt").write_text("Anna lives in Berlin .\nSiemens and Ajax visited Rotterdam today .\n",
                                    encoding="utf-8")
    args = ("predict", str(tmp_path / "s.txt"), "--model", str(model_dir), "--device", "cpu", "-f", "jsonl",
            "--no-progress", "--threads", "1")
    default, named = cli(*args), cli(*args, "--precision", expected)
    assert f"sentences/s ({expected})" in default.splitlines()[-1]
    assert [x for x in default.splitlines() if x.startswith("{")] == [x for x in named.splitlines() if x.startswith("{")]
    other = cli(*args, "--precision", "fp32" if expected == "bf16" else "bf16")
    assert [x for x in other.splitlines() if x.startswith("{")] != [x for x in default.splitlines() if x.startswith("{")]


def test_predict_int8_scores_like_fp32_and_is_checked_before_the_input_is_read(model_dir, tmp_path, monkeypatch):
    """--precision int8 (evaluate.precision) quantises the encoder's linear layers: the same tags and
    span probabilities within 0.02 of fp32 here; on a GPU it is refused, naming the key, before the
    input is read."""
    import glode.device

    (tmp_path / "s.txt").write_text("Anna lives in Berlin .\nSiemens and Ajax visited Rotterdam today .\n",
                                    encoding="utf-8")
    args = ("predict", str(tmp_path / "s.txt"), "--model", str(model_dir), "--device", "cpu", "-f", "jsonl",
            "--no-progress", "--threads", "1")
    records = lambda out: [json.loads(x) for x in out.splitlines() if x.startswith("{")]  # noqa: E731
    plain, small = records(cli(*args, "--precision", "fp32")), records(cli(*args, "--precision", "int8"))
    assert [r["tags"] for r in small] == [r["tags"] for r in plain] and any(r["spans"] for r in plain)
    for a, b in zip(plain, small):
        assert [s["prob"] for s in b["spans"]] == pytest.approx([s["prob"] for s in a["spans"]], abs=0.02)
        assert [s["prob"] for s in b["spans"]] != [s["prob"] for s in a["spans"]]  # int8 did run
    monkeypatch.setattr(glode.device.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(glode.device.torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ParamError, match=r"evaluate.precision.*int8 \(dynamic quantisation\) runs on the CPU"):
        cli("predict", str(tmp_path / "missing.txt"), "--model", str(model_dir), "--device", "cuda", "--precision", "int8")
