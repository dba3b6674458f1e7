"""Issue 40: training gives the same bits run to run with several threads.

The backward of ``hidden[sentence, position]`` (``index_put_`` with ``accumulate=True``) adds
rows with atomic float adds on a CPU with several threads once the gradient has 32,768 elements
or more, so a token row that both threads add to (the sentence where the rows are split
between them) summed its gradient in an order that changed from run to run.
``glode.model.gather_tokens`` takes the span endpoints' rows with a deterministic backward.
"""

from __future__ import annotations

import random
from contextlib import contextmanager

import pytest
import torch

from glode.features import SentenceEncoder, attach_gold, collate
from glode.model import SpanModelConfig, build_model, gather_tokens
from glode.settings import TrainSettings
from glode.spans import tags_to_spans
from glode.training import train
from tests.synthetic import all_words, sentence
from tests.tiny_encoder import build_tiny_encoder

CLASSES = ["O", "PER", "ORG", "LOC"]
ATOMIC_MIN = 32768  # gradient elements from which torch's CPU index_put_ adds with atomics (2 threads or more)
BATCH = 47  # odd, so that the two threads' halves of a batch's spans split a sentence


@contextmanager
def threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The tiny encoder and 8 batches of synthetic sentences with gold spans."""
    encoder_dir = build_tiny_encoder(tmp_path_factory.mktemp("enc") / "tiny", words=all_words())
    _, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    rng = random.Random(0)
    tagged = [sentence(rng) for _ in range(8 * BATCH)]
    index = {c: i for i, c in enumerate(CLASSES)}
    encoded = SentenceEncoder(tok, 4, 128).encode([[w for w, _ in s] for s in tagged])
    data = [attach_gold(e, [(sp.start, sp.end, sp.label) for sp in tags_to_spans([t for _, t in s])], index)
            for e, s in zip(encoded, tagged)]
    return encoder_dir, data


def _trained_weights(encoder_dir, data) -> dict[str, torch.Tensor]:
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    cfg = TrainSettings(epochs=1, batch_size=BATCH, lr=1e-3, mlm_weight=0.001, seed=0)
    train(model, tok, data, cfg, mlm_corpus=data, progress=False)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_training_twice_with_two_threads_gives_the_same_bits(setup):
    """Eight steps of source loss and masked LM, three times with 2 threads: the same weights,
    bit for bit. Every batch is big enough for torch's multi-threaded atomic path, which the old
    advanced indexing took: it failed this test (a different encoder gradient in some step)."""
    encoder_dir, data = setup
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES), seed=0)
    spans = [len(collate(data[i : i + BATCH], tok.pad_token_id).span_sentence) for i in range(0, len(data), BATCH)]
    assert min(spans) * model.encoder.config.hidden_size >= ATOMIC_MIN, spans
    with threads(2):
        first = _trained_weights(encoder_dir, data)
        for _ in range(2):
            again = _trained_weights(encoder_dir, data)
            assert [k for k in first if not torch.equal(first[k], again[k])] == []


def test_gather_tokens_is_the_indexing_with_a_deterministic_backward():
    """The same rows as ``hidden[sentence, position]``, and the same gradient to float
    rounding; repeated with 2 threads on rows that both threads add to, the same bits each time."""
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(17, 20, 64, generator=gen, requires_grad=True)
    sentence = torch.arange(17).repeat_interleave(60)
    position = torch.randint(0, 20, (len(sentence),), generator=gen)
    upstream = torch.randn(len(sentence), 64, generator=gen)
    assert torch.equal(gather_tokens(hidden, sentence, position), hidden[sentence, position])
    (expected,) = torch.autograd.grad(hidden[sentence, position], hidden, upstream)
    with threads(2):
        grads = [torch.autograd.grad(gather_tokens(hidden, sentence, position), hidden, upstream)[0] for _ in range(20)]
    torch.testing.assert_close(grads[0], expected, rtol=1e-6, atol=1e-6)
    assert all(torch.equal(g, grads[0]) for g in grads[1:])
