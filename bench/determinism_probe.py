"""Which op makes a multi-threaded training step differ run to run, and what the fix costs (issue 40).

Run in a project (or a bench work folder) after `dvc repro prepare encoder`, or with `--tiny`
(the tests' random 2-layer, 32-wide encoder, built in a temporary folder):

    python bench/determinism_probe.py --threads 2 bisect --repeats 6
    python bench/determinism_probe.py --threads 2 train --runs 3
    python bench/determinism_probe.py --threads 2 score --runs 3
    python bench/determinism_probe.py --threads 2 time --steps 30

`--gather` picks how the span model takes its span endpoints' rows of the encoder output:
`fixed` is `glode.model.gather_tokens` (an embedding lookup), `index` the advanced indexing
`hidden[sentence, position]` it replaced, `select` `index_select` on the flattened rows.

- `bisect`: one source batch and one masked-LM batch, the same model and seeds `--repeats`
  times; every intermediate tensor (span logits, each loss, the gradient of each loss part
  with respect to the encoder output and to every parameter, the weights after one AdamW step)
  is compared bit for bit with the first repeat, and those that differ are listed with their
  largest difference. `--deterministic` runs it under `torch.use_deterministic_algorithms(True)`.
- `train`: `glode.training.train` on the first `--sentences` source sentences with masked LM
  (seed 0, one epoch of batch 16: ten steps), `--runs` times in this process; prints each run's
  classifier weight sum and whether every weight equals the first run's bit for bit.
- `score`: the span scores and features of the first `--sentences` target sentences
  (`glode.scoring.score_spans`, the model `train` makes from seed 0 in one step), their SVD
  projection (`glode.denoising.projection.reduce_dim`) and one ungated denoising step
  (`glode.denoising.update.denoise`, exact and IVF search) on them, `--runs` times; whether each output equals the first run's bit for bit.
- `time`: one full training step (source loss + masked LM over the whole vocabulary, backward,
  clipping, AdamW), the old and the new gather alternating on the same batches (the order
  swapped every step, so load changes hit both alike); medians, their ratio, and the median of
  the per-step ratios (each pair ran back to back on the same batch); and the median time of the
  span-endpoint gathers alone (forward and backward) on each step's batch shape.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import glode  # noqa: F401  (first: sets the OpenMP spin count before torch's threads start)
import numpy as np
import torch

import glode.model
from glode.features import collate
from glode.model import mask_tokens
from glode.settings import TrainSettings
from glode.training import build_optimizer, length_grouped_batches, train

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import emit, step_setup  # noqa: E402  (a sibling script)

FIXED = glode.model.gather_tokens
GATHERS = {
    "fixed": FIXED,
    "index": lambda hidden, sentence, position: hidden[sentence, position],
    "select": lambda hidden, sentence, position: hidden.flatten(0, 1).index_select(0, sentence * hidden.shape[1]
                                                                                      + position),
}


def use_gather(name: str) -> None:
    glode.model.gather_tokens = GATHERS[name]


def setup(args):
    """(model, tokenizer, source, target) as `train_source` sees them."""
    encoder, tables = args.encoder, args.tables
    if args.tiny:
        sys.path.insert(0, str(ROOT))
        from tests.tiny_encoder import build_tiny_encoder

        encoder = build_tiny_encoder(Path(tempfile.mkdtemp(prefix="glode-probe-")) / "tiny")
    model, tok, _, src, tgt = step_setup(encoder, tables)
    return model, tok, src, tgt


def bisect(args) -> dict:
    base, tok, src, tgt = setup(args)
    rng = np.random.default_rng(0)
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
    batches = length_grouped_batches([len(s.input_ids) for s in src], args.batch_size, rng)[: args.batches]
    differ, spans = {}, []
    for k, idx in enumerate(batches):
        batch = collate([src[i] for i in idx], tok.pad_token_id)
        spans.append(len(batch.span_sentence))
        for key, d in bisect_batch(args, base, tok, batch, tgt[k * args.mlm_batch_size : (k + 1) * args.mlm_batch_size]).items():
            seen = differ.setdefault(key, {"batches_differing": 0, "runs_differing": 0, "max_abs_diff": 0.0})
            seen["batches_differing"] += 1
            seen["runs_differing"] += d["runs_differing"]
            seen["max_abs_diff"] = max(seen["max_abs_diff"], d["max_abs_diff"])
    summary = {}
    for key in differ:  # per stage of the step: how many of its tensors differ
        stage = key.split(":")[0]
        summary[stage] = summary.get(stage, 0) + 1
    return {"batches": len(batches), "repeats": args.repeats, "spans_per_batch": spans,
            "tensors_differing": len(differ), "summary": summary, "differing": differ}


def bisect_batch(args, base, tok, batch, mlm_sentences) -> dict:
    """The tensors of one step that differ between repeats: {name: runs differing, largest difference}."""
    mb = collate(mlm_sentences, tok.pad_token_id)
    ids, labels = mask_tokens(mb.input_ids, mb.attention_mask, set(tok.all_special_ids), tok.mask_token_id, 0.25,
                              torch.Generator().manual_seed(0))
    soft = torch.softmax(torch.randn(len(batch.span_sentence), base.num_classes, generator=torch.Generator().manual_seed(1)),
                         -1)
    runs = []
    for _ in range(args.repeats):
        model = copy.deepcopy(base)
        model.freeze_word_embeddings(True)
        model.train()
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        out: dict[str, torch.Tensor] = {}
        hidden_out: list[torch.Tensor] = []
        hook = model.encoder.register_forward_hook(lambda m, a, o: hidden_out.append(o.last_hidden_state))
        torch.manual_seed(0)  # the dropout masks
        logits = model(batch)
        out["forward: span logits"] = logits
        parts = {"source CE": torch.nn.functional.cross_entropy(logits, batch.labels),
                 "target soft CE": -(soft * torch.log_softmax(model(batch), -1)).sum(-1).mean(),
                 "MLM": model.mlm_loss(ids, mb.attention_mask, labels)}
        hook.remove()
        for (name, loss), hidden in zip(parts.items(), hidden_out):
            out[f"loss {name}"] = loss
            grads = torch.autograd.grad(loss, [hidden, *params.values()], retain_graph=True, allow_unused=True)
            out[f"grad of {name} w.r.t. the encoder output"] = grads[0]
            out.update({f"grad of {name}: {n}": g for n, g in zip(params, grads[1:]) if g is not None})
        loss = sum(parts.values())
        opt = build_optimizer(model, TrainSettings())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        out.update({f"after one AdamW step: {n}": p for n, p in params.items()})
        runs.append({k: v.detach().clone() for k, v in out.items()})
    differ = {}
    for key, first in runs[0].items():
        diffs = [float((r[key] - first).abs().max()) for r in runs[1:] if not torch.equal(r[key], first)]
        if diffs:
            differ[key] = {"runs_differing": len(diffs), "max_abs_diff": max(diffs)}
    return differ


def train_runs(args) -> dict:
    base, tok, src, tgt = setup(args)
    cfg = TrainSettings(epochs=1, batch_size=16, mlm_weight=0.001, seed=0)
    weights, sums = [], []
    for _ in range(args.runs):
        model = copy.deepcopy(base)
        train(model, tok, src[: args.sentences], cfg, mlm_corpus=tgt[: args.sentences], progress=False)
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
        sums.append(float(model.classifier.weight.detach().double().sum()))
    differing = sorted({k for w in weights[1:] for k in w if not torch.equal(w[k], weights[0][k])})
    return {"classifier_weight_sums": [f"{s:.11f}" for s in sums], "identical": not differing,
            "tensors_differing": len(differing), "first_differing": differing[:5]}


def scoring(args) -> dict:
    from glode.denoising.projection import reduce_dim
    from glode.denoising.update import DenoiseInput, denoise
    from glode.scoring import score_spans
    from glode.settings import DenoiseSettings, IndexOptions

    model, tok, src, tgt = setup(args)
    train(model, tok, src[:16], TrainSettings(epochs=1, batch_size=16, seed=0), mlm_corpus=tgt[:16], progress=False)
    outputs = []
    for _ in range(args.runs):
        scores = score_spans(model, tgt[: args.sentences], tok.pad_token_id, with_features=True, progress=False)
        probs = np.concatenate([s.probs for s in scores])
        (vectors,) = reduce_dim([np.concatenate([s.features for s in scores])], 128, seed=0)
        out = {"probs": probs, "features": np.concatenate([s.features for s in scores]), "projected": vectors}
        half = len(vectors) // 2  # the first half stands in for the source bank, labelled by its argmax
        for index in ("exact", "ivf"):
            settings = DenoiseSettings(k=30, o_keep_rate=0.1, seed=0, index=index, nprobe=4, gate="none")
            r = denoise(DenoiseInput(vectors[half:], probs[half:], vectors[:half], probs[:half].argmax(1)), settings,
                        0.8, IndexOptions(nlist=16))
            out[f"denoised labels ({index})"] = r.Y_new
        outputs.append(out)
    differing = sorted(k for o in outputs[1:] for k in o if not np.array_equal(o[k], outputs[0][k]))
    return {"spans": len(outputs[0]["probs"]), "identical": not differing, "differing": sorted(set(differing))}


def timing(args) -> dict:
    model, tok, src, tgt = setup(args)
    model.freeze_word_embeddings(True)
    model.train()
    opt = build_optimizer(model, TrainSettings())
    rng = np.random.default_rng(0)
    src_batches = length_grouped_batches([len(s.input_ids) for s in src], args.batch_size, rng)
    mlm_batches = length_grouped_batches([len(s.input_ids) for s in tgt], args.mlm_batch_size, rng)
    special, gen = set(tok.all_special_ids), torch.Generator().manual_seed(0)
    names = [args.gather, args.against]
    times = {n: [] for n in names}
    op_times = {n: [] for n in names}
    hidden_size = model.encoder.config.hidden_size

    def gather_op(name: str, k: int) -> float:
        """Forward and backward of the two span-endpoint gathers alone, on a random encoder
        output of batch k's shape (the step's own share of the gather)."""
        b = collate([src[i] for i in src_batches[k % len(src_batches)]], tok.pad_token_id)
        hidden = torch.randn(*b.input_ids.shape, hidden_size, requires_grad=True)
        upstream = torch.randn(len(b.span_sentence), 2 * hidden_size)
        t = time.perf_counter()
        out = torch.cat([GATHERS[name](hidden, b.span_sentence, b.span_start),
                         GATHERS[name](hidden, b.span_sentence, b.span_end)], -1)
        out.backward(upstream)
        return time.perf_counter() - t

    def step(k: int) -> None:
        b = collate([src[i] for i in src_batches[k % len(src_batches)]], tok.pad_token_id)
        mb = collate([tgt[i] for i in mlm_batches[k % len(mlm_batches)]], tok.pad_token_id)
        ids, labels = mask_tokens(mb.input_ids, mb.attention_mask, special, tok.mask_token_id, 0.25, gen)
        loss = torch.nn.functional.cross_entropy(model(b), b.labels) + 0.001 * model.mlm_loss(ids, mb.attention_mask, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(0)  # warm-up
    for k in range(args.steps):
        for name in (names if k % 2 == 0 else names[::-1]):
            use_gather(name)
            t = time.perf_counter()
            step(k)
            times[name].append(time.perf_counter() - t)
            op_times[name].append(gather_op(name, k))
    med = {n: statistics.median(v) for n, v in times.items()}
    paired = statistics.median(a / b for a, b in zip(times[args.gather], times[args.against]))
    return {"median_step_s": {n: round(v, 4) for n, v in med.items()},
            f"{args.gather}_over_{args.against}": round(med[args.gather] / med[args.against], 3),
            "median_of_paired_ratios": round(paired, 3), "steps_each": args.steps,
            "median_gather_ms": {n: round(1000 * statistics.median(v), 2) for n, v in op_times.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoder", default="encoder")
    ap.add_argument("--tables", default="tables")
    ap.add_argument("--tiny", action="store_true", help="use the tests' tiny random encoder instead of --encoder")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one-cpu", action="store_true",
                    help="run every thread on one CPU (Linux): a loaded machine on demand; the old gather's "
                         "order of atomic adds depended on when the second thread ran, and rarely changed when idle")
    ap.add_argument("--gather", choices=sorted(GATHERS), default="fixed")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--mlm-batch-size", type=int, default=8)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    sub = ap.add_subparsers(dest="mode", required=True)
    b = sub.add_parser("bisect")
    b.add_argument("--repeats", type=int, default=4, help="runs of each step")
    b.add_argument("--batches", type=int, default=10, help="steps: the first length-grouped batches")
    b.add_argument("--deterministic", action="store_true", help="torch.use_deterministic_algorithms(True)")
    t = sub.add_parser("train")
    t.add_argument("--runs", type=int, default=3)
    t.add_argument("--sentences", type=int, default=160)
    c = sub.add_parser("score")
    c.add_argument("--runs", type=int, default=3)
    c.add_argument("--sentences", type=int, default=400)
    m = sub.add_parser("time")
    m.add_argument("--steps", type=int, default=30)
    m.add_argument("--against", choices=sorted(GATHERS), default="index")
    args = ap.parse_args()
    if args.one_cpu:  # before the first parallel region: torch's threads start with this mask
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    torch.set_num_threads(args.threads)
    use_gather(args.gather)
    result = {"bisect": bisect, "train": train_runs, "score": scoring, "time": timing}[args.mode](args)
    result.update(mode=args.mode, gather=args.gather, threads=torch.get_num_threads(), tiny=args.tiny,
                  one_cpu=args.one_cpu, torch=torch.__version__, load_average=[round(x, 2) for x in os.getloadavg()])
    emit(result, args.out)


if __name__ == "__main__":
    main()
