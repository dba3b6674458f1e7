"""Score sentences with the tiny encoder's span model inside ``glode.distributed.sharded_scoring``,
as one process or as one of several launched by torchrun, and write what
tests/test_distributed.py compares: every rank's ``score_spans`` results, bit for bit.

usage: python tests/dist_score.py ENCODER_DIR OUT_DIR  (or under torchrun --nproc_per_node N)

Three calls in a row (each one gathers on its own): 30 sentences of different lengths, some
longer than the model's 24 sub-tokens (scored window by window), batch 4, with span features;
3 of them in one batch (a second process has no batch); no sentence at all. Each rank writes
OUT_DIR/rank{R}.npz: per call, the probabilities and features of every sentence concatenated in
input order, each sentence's span count, and how many batches this process ran through the model.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from glode.distributed import scoring_world, sharded_scoring  # noqa: E402
from glode.features import SentenceEncoder  # noqa: E402
from glode.model import SpanModelConfig, build_model  # noqa: E402
from glode.scoring import score_spans  # noqa: E402
from tests.synthetic import sentence  # noqa: E402

CLASSES = ["O", "PER", "ORG", "LOC"]


def sentences(n: int) -> list[list[str]]:
    """``n`` sentences of 2 to 30 words: every third one is four random sentences run together."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        parts = [sentence(rng) for _ in range(4 if i % 3 == 0 else 1)]
        out.append([w for part in parts for w, _ in part])
    return out


def main(encoder_dir: str, out_dir: str) -> None:
    model, tok = build_model(Path(encoder_dir), SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=24), seed=0)
    encoded = SentenceEncoder(tok, 3, 24).encode(sentences(30), progress=False)
    assert any(e.windows for e in encoded)  # some sentences are scored in windows
    calls = [(encoded, 4, True), (encoded[:3], 8, True), ([], 4, False)]
    arrays = {}
    forward = model.span_features
    ran = []

    def counted(batch):
        ran[-1] += 1
        return forward(batch)

    model.span_features = counted
    with sharded_scoring("cpu") as world:
        assert scoring_world() == world
        for n, (part, batch_size, features) in enumerate(calls):
            ran.append(0)
            scores = score_spans(model, part, tok.pad_token_id, batch_size=batch_size, with_features=features,
                                 progress=False)
            assert len(scores) == len(part)
            arrays[f"probs{n}"] = np.concatenate([s.probs for s in scores]) if scores else np.zeros((0, 4), np.float32)
            arrays[f"spans{n}"] = np.array([len(s.probs) for s in scores], dtype=np.int64)
            if features:
                arrays[f"features{n}"] = np.concatenate([s.features for s in scores])
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    np.savez(Path(out_dir) / f"rank{world.rank}.npz", size=np.array(world.size), batches=np.array(ran), **arrays)


if __name__ == "__main__":
    main(*sys.argv[1:3])
