"""Issue 40: training gives the same bits run to run with several threads.

The backward of ``hidden[sentence, position]`` (``index_put_`` with ``accumulate=True``) adds
rows with atomic float adds on a CPU with several threads once the gradient has 32,768 elements
or more, so a token row that both threads add to (the sentence where the rows are split
between them) summed its gradient in an order that changed from run to run. How often depended
on the load, since the order is decided by when the second thread gets to run: on an idle
2-core machine the old kernel mostly repeated itself, beside other processes rarely. The test
therefore trains with both threads on one CPU, a loaded machine on demand.
``glode.model.gather_tokens`` takes the span endpoints' rows with a deterministic backward.

Run as a module (``python -m tests.test_determinism ENCODER_DIR RUNS``) it is the test's worker:
it trains RUNS times and prints each run's weight digest.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import glode  # noqa: F401  (first: the OpenMP spin count, before torch loads)
import torch

from glode.features import EncodedSentence, SentenceEncoder, attach_gold, collate
from glode.model import SpanModelConfig, build_model, gather_tokens
from glode.settings import TrainSettings
from glode.spans import tags_to_spans
from glode.training import train
from tests.synthetic import all_words, sentence
from tests.tiny_encoder import build_tiny_encoder

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["O", "PER", "ORG", "LOC"]
ATOMIC_MIN = 32768  # gradient elements from which torch's CPU index_put_ adds with atomics (2 threads or more)
BATCH = 47  # odd, so that the two threads' halves of a batch's spans split a sentence
STEPS = 6
RUNS = 4


def corpus(tok) -> list[EncodedSentence]:
    """STEPS batches of synthetic sentences with gold spans."""
    rng = random.Random(0)
    tagged = [sentence(rng) for _ in range(STEPS * BATCH)]
    index = {c: i for i, c in enumerate(CLASSES)}
    encoded = SentenceEncoder(tok, 4, 128).encode([[w for w, _ in s] for s in tagged])
    return [attach_gold(e, [(sp.start, sp.end, sp.label) for sp in tags_to_spans([t for _, t in s])], index)
            for e, s in zip(encoded, tagged)]


def trained_digest(encoder_dir: Path) -> str:
    """SHA-256 of every weight after STEPS steps of source loss and masked LM (seed 0)."""
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    data = corpus(tok)
    train(model, tok, data, TrainSettings(epochs=1, batch_size=BATCH, lr=1e-3, mlm_weight=0.001, seed=0),
          mlm_corpus=data, progress=False)
    digest = hashlib.sha256()
    for name, value in model.state_dict().items():
        digest.update(name.encode() + value.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


# the worker's command: pinned to one CPU before torch loads (Linux; elsewhere unpinned)
WORKER = ("import os, runpy\n"
          "if hasattr(os, 'sched_setaffinity'): os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
          "runpy.run_module('tests.test_determinism', run_name='__main__', alter_sys=True)\n")


def test_training_four_times_with_two_threads_gives_the_same_bits(tmp_path):
    """Six steps of source loss and masked LM, four times in one process with 2 threads sharing
    one CPU: the same weights, bit for bit. Every batch is big enough for torch's multi-threaded
    atomic path, which the old advanced indexing took: with it this test failed 10 times out of
    10 (2-core Xeon, 2026-12-07)."""
    encoder_dir = build_tiny_encoder(tmp_path / "tiny", words=all_words())
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    data = corpus(tok)
    spans = [len(collate(data[i : i + BATCH], tok.pad_token_id).span_sentence) for i in range(0, len(data), BATCH)]
    assert min(spans) * model.encoder.config.hidden_size >= ATOMIC_MIN, spans
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "2", "GLODE_QUIET": "1"}
    proc = subprocess.run([sys.executable, "-c", WORKER, str(encoder_dir), str(RUNS)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digests = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(digests) == RUNS and len(set(digests)) == 1, digests


def test_gather_tokens_is_the_indexing_with_a_deterministic_backward():
    """The same rows as ``hidden[sentence, position]``, and the same gradient to float
    rounding; repeated with 2 threads on rows that both threads add to, the same bits each time."""
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(17, 20, 64, generator=gen, requires_grad=True)
    sentence_ids = torch.arange(17).repeat_interleave(60)
    position = torch.randint(0, 20, (len(sentence_ids),), generator=gen)
    upstream = torch.randn(len(sentence_ids), 64, generator=gen)
    assert torch.equal(gather_tokens(hidden, sentence_ids, position), hidden[sentence_ids, position])
    (expected,) = torch.autograd.grad(hidden[sentence_ids, position], hidden, upstream)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = [torch.autograd.grad(gather_tokens(hidden, sentence_ids, position), hidden, upstream)[0]
                 for _ in range(20)]
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(grads[0], expected, rtol=1e-6, atol=1e-6)
    assert all(torch.equal(g, grads[0]) for g in grads[1:])


if __name__ == "__main__":
    torch.set_num_threads(2)
    print(json.dumps([trained_digest(Path(sys.argv[1])) for _ in range(int(sys.argv[2]))]))
