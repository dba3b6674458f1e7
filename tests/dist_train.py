"""Train the tiny encoder's span model once, as one process or as one of several launched by
torchrun, and (rank 0) write its final losses, wall time and weights: tests/test_distributed.py
compares the two.

usage: python tests/dist_train.py ENCODER_DIR OUT_DIR  (or under torchrun --nproc_per_node N)
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from glode.distributed import current_world  # noqa: E402
from glode.features import SentenceEncoder, attach_gold  # noqa: E402
from glode.model import SpanModelConfig, build_model  # noqa: E402
from glode.settings import DeviceSettings, TrainSettings  # noqa: E402
from glode.training import train  # noqa: E402
from glode.spans import tags_to_spans  # noqa: E402
from tests.synthetic import sentence  # noqa: E402

CLASSES = ["O", "PER", "ORG", "LOC"]


def main(encoder_dir: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    model, tok = build_model(encoder_dir, SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64, dropout=0.0),
                             seed=0)
    rng = random.Random(5)
    pairs = [sentence(rng) for _ in range(28)]  # sentences of different lengths; the last batch holds 4
    index = {c: i for i, c in enumerate(CLASSES)}
    encoded = SentenceEncoder(tok, 3, 64).encode([[w for w, _ in p] for p in pairs])
    data = [attach_gold(e, tags_to_spans([t for _, t in p]), index) for e, p in zip(encoded, pairs)]
    cfg = TrainSettings(epochs=2, batch_size=8, lr=1e-3, mlm_weight=0.001, mlm_batch_size=8)
    start = time.perf_counter()
    history = train(model, tok, data, cfg, mlm_corpus=data, progress=False, device=DeviceSettings(device="cpu"))
    seconds = time.perf_counter() - start
    world = current_world()
    if world.main:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), out / "state.pt")
        (out / "result.json").write_text(json.dumps({"history": history, "seconds": seconds, "processes": world.size}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
