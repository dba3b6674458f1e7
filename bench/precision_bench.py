"""Training step time in fp32 against bf16 autocast on the CPU (`train.precision`), side by side.

    python bench/precision_bench.py --block 6 --repeats 3 --out bench/results/precision.json

The `train_source` step (a source NER batch of `--batch-size` plus an MLM batch of
`--mlm-batch-size` target sentences, backward, AdamW) on the prepared tables and encoder of
this project (`dvc repro prepare encoder` first). Blocks of `--block` steps alternate between
fp32 and bf16 (`glode.device.autocast`), the same batches in every block, `--repeats` times, so
both see the same machine; the JSON has the median step time of each and their ratio, and the
loss of each precision on the same batch (bf16 changes results: the quality of a bf16 run must
be measured separately before it can be a default). A CPU with native bf16 (avx512_bf16, AMX)
is where it can pay; the JSON records whether this one has it.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchkit import cpu_flags, emit, source_step_parts  # noqa: E402  (a sibling script)



def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", default="encoder")
    ap.add_argument("--tables", default="tables")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--mlm-batch-size", type=int, default=8)
    ap.add_argument("--block", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    from glode.device import autocast
    from glode.features import collate
    from glode.model import mask_tokens
    model, tok, opt, src_batches, mlm_batches, special, src, tgt = source_step_parts(
        args.encoder, args.tables, args.batch_size, args.mlm_batch_size)
    cpu = torch.device("cpu")

    def step(k: int, precision: str) -> tuple[float, float]:
        gen = torch.Generator().manual_seed(k)
        t = time.perf_counter()
        with autocast(cpu, precision):
            b = collate([src[i] for i in src_batches[k % len(src_batches)]], tok.pad_token_id)
            loss = torch.nn.functional.cross_entropy(model(b).float(), b.labels)
            mb = collate([tgt[i] for i in mlm_batches[k % len(mlm_batches)]], tok.pad_token_id)
            ids, labels = mask_tokens(mb.input_ids, mb.attention_mask, special, tok.mask_token_id, 0.25, gen)
            loss = loss + 0.001 * model.mlm_loss(ids, mb.attention_mask, labels).float()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t, float(loss.detach())

    for precision in ("fp32", "bf16"):
        step(0, precision)  # warm-up: first-call allocations and kernel choice
    times = {"fp32": [], "bf16": []}
    for _ in range(args.repeats):
        for precision in ("fp32", "bf16"):
            for k in range(1, args.block + 1):
                times[precision].append(step(k, precision)[0])
    medians = {p: statistics.median(t) for p, t in times.items()}
    emit({"command": "python bench/precision_bench.py " + " ".join(sys.argv[1:]),
          "machine": {"cpu_count": __import__("os").cpu_count(), "platform": platform.platform(), "cpu_flags": cpu_flags(),
                      "threads": torch.get_num_threads(), "torch": torch.__version__},
          "batch_size": args.batch_size, "mlm_batch_size": args.mlm_batch_size, "block": args.block, "repeats": args.repeats,
          "median_step_s": medians, "bf16_over_fp32": medians["bf16"] / medians["fp32"], "step_times_s": times}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
