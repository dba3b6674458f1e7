"""Train the tiny encoder's span model in one or more scenarios, as one process or as one of several
launched by torchrun, and write what tests/test_distributed.py compares: (rank 0) each scenario's
losses, wall time and weights; (every rank) the first span-dropout mask it drew and how it left.

usage: python tests/dist_train.py ENCODER_DIR OUT_DIR [SCENARIO ...]  (or under torchrun --nproc_per_node N)

Scenarios (default: equivalence), each written to OUT_DIR/SCENARIO/:
  equivalence    28 sentences of different lengths, global batch 8, masked LM on, dropout off
  no-grad        masked LM weight 0 (the masked-LM head, like the pooler, gets no gradient), weight decay on
  scaler         a loss scaler (fp16's, here on the CPU), global batch 1 with grad-accum 2: a second
                 process never has a sentence, so it never scales a loss before the first step
  dropout        8 copies of one sentence (equal shards), dropout 0.1 everywhere
  dropout-rerun  the same again, in the same processes
All scenarios run inside ``glode.distributed.together()``; rank 0 sleeps a second at its end (a
slow save), and every rank then writes exit-rank{R}.json: whether rank 0 had finished by then and
whether the process group is gone.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import glode.training  # noqa: E402
from glode.device import loss_scaler  # noqa: E402
from glode.distributed import current_world, together  # noqa: E402
from glode.features import SentenceEncoder, attach_gold  # noqa: E402
from glode.model import SpanModelConfig, build_model  # noqa: E402
from glode.settings import DeviceSettings, TrainSettings  # noqa: E402
from glode.spans import tags_to_spans  # noqa: E402
from glode.training import train  # noqa: E402
from tests.synthetic import sentence  # noqa: E402

CLASSES = ["O", "PER", "ORG", "LOC"]
SCENARIOS = ("equivalence", "no-grad", "scaler", "dropout", "dropout-rerun")


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Every dropout of the encoder and the span head (BERT's attention reads its module's p)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = p


def _data(tok, n: int, same: bool = False) -> list:
    rng = random.Random(5)
    pairs = [sentence(rng) for _ in range(1 if same else n)] * (n if same else 1)
    index = {c: i for i, c in enumerate(CLASSES)}
    encoded = SentenceEncoder(tok, 3, 64).encode([[w for w, _ in p] for p in pairs], progress=False)
    return [attach_gold(e, tags_to_spans([t for _, t in p]), index) for e, p in zip(encoded, pairs)]


def run_scenario(name: str, encoder_dir: str | Path, out_dir: str | Path, progress: bool = False) -> dict:
    """Train one scenario in this process (its share under torchrun); rank 0 writes
    OUT_DIR/NAME/{result.json,state.pt}, every rank its first span-dropout mask (mask-rank{R}.pt)."""
    model, tok = build_model(str(encoder_dir), SpanModelConfig(classes=CLASSES, max_span_len=3, max_seq_len=64), seed=0)
    dropout = 0.1 if name.startswith("dropout") else 0.0
    set_dropout(model, dropout)
    data = _data(tok, {"equivalence": 28, "no-grad": 12, "scaler": 6}.get(name, 8), same=name.startswith("dropout"))
    cfg = {"equivalence": TrainSettings(epochs=2, batch_size=8, lr=1e-3, mlm_weight=0.001, mlm_batch_size=8),
           "no-grad": TrainSettings(epochs=2, batch_size=4, lr=1e-3, mlm_weight=0.0, weight_decay=0.01),
           "scaler": TrainSettings(epochs=1, batch_size=1, grad_accum=2, lr=1e-3, mlm_weight=0.001, mlm_batch_size=1),
           }.get(name, TrainSettings(epochs=2, batch_size=8, lr=1e-3, mlm_weight=0.001, mlm_batch_size=8))
    masks = []

    def first_mask(module, inputs, output):
        if not masks:
            masks.append((output == 0) & (inputs[0] != 0))

    hook = model.dropout.register_forward_hook(first_mask)
    scaler_factory = glode.training.grad_scaler
    if name == "scaler":  # fp16's loss scaler (glode/device.py), on the CPU: the same state machine as CUDA's
        glode.training.grad_scaler = lambda where, precision: loss_scaler(where)
    try:
        start = time.perf_counter()
        history = train(model, tok, data, cfg, mlm_corpus=data, progress=progress, device=DeviceSettings(device="cpu"))
        seconds = time.perf_counter() - start
    finally:
        glode.training.grad_scaler = scaler_factory
        hook.remove()
    world = current_world()
    out = Path(out_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    if masks:
        torch.save(masks[0], out / f"mask-rank{world.rank}.pt")
    result = {"history": history, "seconds": seconds, "processes": world.size}
    if world.main:
        torch.save(model.state_dict(), out / "state.pt")
        (out / "result.json").write_text(json.dumps(result))
    return result


def main(encoder_dir: str, out_dir: str, scenarios: list[str]) -> None:
    torch.set_num_threads(1)
    out = Path(out_dir)
    with together():
        for name in scenarios:
            run_scenario(name, encoder_dir, out, progress=name == "no-grad")
        if current_world().main:  # a slow save: the other ranks must not leave before it is done
            time.sleep(1.0)
            (out / "rank0-done").write_text("")
    rank = int(os.environ.get("RANK", "0"))
    (out / f"exit-rank{rank}.json").write_text(json.dumps({"rank0_done": (out / "rank0-done").exists(),
                                                           "group_left": not dist.is_initialized()}))


if __name__ == "__main__":
    unknown = sorted(set(sys.argv[3:]) - set(SCENARIOS))
    if len(sys.argv) < 3 or unknown:
        sys.exit(__doc__ + (f"\nunknown scenario(s): {unknown}" if unknown else ""))
    main(sys.argv[1], sys.argv[2], sys.argv[3:] or ["equivalence"])
