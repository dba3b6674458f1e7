"""Issue 23: data-parallel training (glode/distributed.py): two CPU processes over gloo, launched
by torchrun, train the tiny encoder's span model to the same losses and weights as one process
with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from glode.features import SentenceEncoder, attach_gold, collate
from glode.model import SpanModelConfig, build_model
from tests.synthetic import all_words
from tests.tiny_encoder import build_tiny_encoder

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["O", "PER", "ORG", "LOC"]


def test_shards_partition_a_batch_with_its_spans(tmp_path):
    enc = build_tiny_encoder(tmp_path / "enc", words=all_words())
    _, tok = build_model(enc, SpanModelConfig(classes=CLASSES, max_span_len=3), seed=0)
    words = [["Anna", "lives", "in", "Berlin", "."], ["Ajax", "."], ["Eva", "Maria", "works", "."]]
    encoded = SentenceEncoder(tok, 3, 64).encode(words)
    batch = collate([attach_gold(e, [], {c: i for i, c in enumerate(CLASSES)}) for e in encoded], tok.pad_token_id)
    parts = [batch.shard(r, 2) for r in range(2)]
    assert [len(p.input_ids) for p in parts] == [2, 1]
    assert sum(len(p.span_sentence) for p in parts) == len(batch.span_sentence)
    torch.testing.assert_close(parts[0].input_ids, batch.input_ids[[0, 2]])
    assert parts[0].span_sentence.tolist() == [0] * len(encoded[0].span_word_start) + [1] * len(encoded[2].span_word_start)
    torch.testing.assert_close(parts[1].span_start, batch.span_start[batch.span_sentence == 1])
    assert batch.shard(3, 4) is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_train_as_one_process(tmp_path):
    """Same global batch of 8 (2 x 4 sentences per process), masked LM on: the final epoch's
    losses agree within 1e-5 and every weight within 1e-4. Not exact: each process sums its own
    spans' losses and gloo adds the two halves' gradients, a different float32 summation order
    than one process's; Adam divides by the gradients' running RMS, so a weight whose gradient is
    near zero carries that rounding into its step (the weights' tolerance is looser for that
    reason). Dropout is off: its masks are drawn per process."""
    enc = build_tiny_encoder(tmp_path / "enc", words=all_words())
    config = json.loads((enc / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (enc / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "GLODE_QUIET": "1"}
    script = str(ROOT / "tests/dist_train.py")
    runs = {"one process": [sys.executable, script],
            "two gloo processes": [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                                   "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), script]}
    results, wall = {}, {}
    for name, cmd in runs.items():
        out = tmp_path / name.replace(" ", "-")
        start = time.perf_counter()
        proc = subprocess.run([*cmd, str(enc), str(out)], env=env, capture_output=True, text=True, timeout=600)
        wall[name] = time.perf_counter() - start
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        results[name] = (json.loads((out / "result.json").read_text()), torch.load(out / "state.pt"))
    (one, w1), (two, w2) = results["one process"], results["two gloo processes"]
    assert (one["processes"], two["processes"]) == (1, 2)
    loss_gap = max(abs(a[k] - b[k]) for a, b in zip(one["history"], two["history"]) for k in ("loss_source", "loss_mlm"))
    weight_gap = max(float((w1[k] - w2[k]).abs().max()) for k in w1)
    print(f"\nlargest loss difference {loss_gap:.2e}, largest weight difference {weight_gap:.2e}\n" + " | ".join(f"{n}: final loss_source {r[0]['history'][-1]['loss_source']:.6f}, "
                            f"training {r[0]['seconds']:.2f} s, whole run {wall[n]:.2f} s" for n, r in results.items()))
    for a, b in zip(one["history"], two["history"]):
        for key in ("loss_source", "loss_mlm"):
            assert abs(a[key] - b[key]) < 1e-5, (key, a[key], b[key])
        assert a["steps"] == b["steps"]
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], atol=1e-4, rtol=0, msg=k)
