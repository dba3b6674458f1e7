"""Training step time on an idle machine and beside a competing single-core process.

Run in a project after `dvc repro prepare encoder` (the embedded default data and encoder):

    python bench/contention_bench.py --out bench/results/contention.json

For each OpenMP setting (`--settings`: libgomp's own default, passive waiting, shorter spin
counts, or none set: what `import glode` chooses) a worker process builds the r0 model and times
the `train_source` step (a source NER batch of `--batch-size` plus an MLM batch of
`--mlm-batch-size` target sentences, backward, AdamW): `--block` steps idle, then the same
`--block` steps while a busy loop (`while True: pass`, one Python process, one core) runs
beside it. Workers of the different settings alternate, `--repeats` each, so every setting
sees the same machine; the JSON reports the median step time per setting and load and the
busy/idle ratio. Issue goal: busy/idle <= 2.5 at glode's default.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from benchkit import emit, source_step_parts  # a sibling script

HERE = Path(__file__).resolve()
BUSY_LOOP = "while True: pass"


def worker(args) -> dict:
    import torch

    from glode.features import collate
    from glode.model import mask_tokens

    model, tok, opt, src_batches, mlm_batches, special, src, tgt = source_step_parts(
        args.encoder, args.tables, args.batch_size, args.mlm_batch_size)
    gen = torch.Generator().manual_seed(0)

    def step(k: int) -> float:
        t = time.perf_counter()
        b = collate([src[i] for i in src_batches[k % len(src_batches)]], tok.pad_token_id)
        loss = torch.nn.functional.cross_entropy(model(b), b.labels)
        mb = collate([tgt[i] for i in mlm_batches[k % len(mlm_batches)]], tok.pad_token_id)
        ids, labels = mask_tokens(mb.input_ids, mb.attention_mask, special, tok.mask_token_id, 0.25, gen)
        loss = loss + 0.001 * model.mlm_loss(ids, mb.attention_mask, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    step(0)  # warm-up: first-call allocations
    times = {"idle": [], "busy": []}
    for _ in range(args.repeats):
        for load in ("idle", "busy"):
            busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) if load == "busy" else None
            try:
                time.sleep(0.5 if busy else 0.0)  # let the competitor get going
                for k in range(1, args.block + 1):  # the same batches in every block: only the load differs
                    times[load].append(step(k))
            finally:
                if busy:
                    busy.kill()
                    busy.wait()
    return {"times": times, "threads": torch.get_num_threads(),
            "env": {k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="encoder")
    ap.add_argument("--tables", default="tables")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--mlm-batch-size", type=int, default=8)
    ap.add_argument("--block", type=int, default=3, help="steps per idle or busy block")
    ap.add_argument("--repeats", type=int, default=3,
                    help="worker runs per setting (each: one idle and one busy block), settings interleaved")
    ap.add_argument("--settings", nargs="+", default=["GOMP_SPINCOUNT=300000", "OMP_WAIT_POLICY=PASSIVE", ""],
                    help="OpenMP environments to compare, each 'VAR=VALUE[,VAR=VALUE]'; '' = none set, i.e. "
                         "what `import glode` chooses. GOMP_SPINCOUNT=300000 is libgomp's own default (spin "
                         "about 300k iterations, then sleep), what glode ran with before it set a policy.")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    import statistics

    result = {"command": "python bench/contention_bench.py " + " ".join(sys.argv[1:]),
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
              "block": args.block, "repeats": args.repeats, "batch_size": args.batch_size,
              "mlm_batch_size": args.mlm_batch_size, "policies": {}}
    collected = {s: {"idle": [], "busy": [], "threads": None, "env": None} for s in args.settings}
    for _ in range(args.repeats):  # settings interleaved, so slow drifts of the machine hit all alike
        for setting in args.settings:
            env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
            env.update(kv.split("=", 1) for kv in setting.split(",") if kv)
            cmd = [sys.executable, str(HERE), "--worker", "--encoder", args.encoder, "--tables", args.tables,
                   "--batch-size", str(args.batch_size), "--mlm-batch-size", str(args.mlm_batch_size),
                   "--block", str(args.block), "--repeats", "1"]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            c = collected[setting]
            c["idle"] += out["times"]["idle"]
            c["busy"] += out["times"]["busy"]
            c["threads"], c["env"] = out["threads"], out["env"]
    for setting, c in collected.items():
        idle, busy = statistics.median(c["idle"]), statistics.median(c["busy"])
        result["policies"][setting or "glode default"] = {
            "idle_median_s": round(idle, 3), "busy_median_s": round(busy, 3), "busy_over_idle": round(busy / idle, 2),
            "threads": c["threads"], "env_in_worker": c["env"],
            "steps": {k: [round(t, 3) for t in c[k]] for k in ("idle", "busy")}}
    emit(result, args.out)


if __name__ == "__main__":
    main()
