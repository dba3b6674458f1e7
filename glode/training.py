"""Training loops: source gold spans, optional target soft labels, auxiliary masked LM.

Per micro-batch (docs/METHOD.md §2-3): ``L = L_src + L_tgt + λ·L_mlm``: cross-entropy over every
candidate span of a source batch, soft cross-entropy ``-Σ_c Y_c log p_c`` over the
candidate spans of a target batch (when target labels are given; or the reference's loss,
``retrain.target-loss``), and masked-LM loss on a
batch of target-language text. The optimiser steps once every ``train.grad-accum`` micro-batches
on the mean of their losses (the last group of an epoch may be smaller, and its mean is over
the micro-batches it has); the learning-rate schedule counts optimiser steps. AdamW with
transformers' linear warm-up and decay; deterministic for a
fixed seed on the CPU. The model runs where ``train.device`` says, in ``train.precision``
(glode/device.py); batches are built on the CPU (masking included, so its random draws do not
depend on the device) and moved there. In several processes (``train.processes``,
glode/distributed.py) each computes its share of every global batch's loss in one forward pass
that ``DistributedDataParallel`` wraps, which averages the gradients.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from transformers import set_seed

from glode.atomic import atomic_dir
from glode.device import autocast, grad_scaler, place_model
from glode.distributed import World, data_parallel, init_from_env, sum_floats
from glode.features import EncodedSentence, SpanBatch, collate, expand_units
from glode.model import SpanNERModel, mask_tokens
from glode.progress import progress as progress_bar
from glode.settings import DeviceSettings, TrainSettings


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean (or sum) over spans of ``-Σ_c Y_c log softmax(logits)_c``: learns every bit of a
    label's mass, a small entity mass on an O span included."""
    per_span = -(targets * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1)
    return per_span.mean() if reduction == "mean" else per_span.sum()


def reference_target_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """The authors' target loss (docs/METHOD.md §3): ``-Σ_c Y_c log softmax(softmax(logits))_c``.

    Their classifier ends in a softmax and their partial-label loss applies ``log_softmax`` to
    those probabilities again, so the loss is bounded, its gradient vanishes on confident spans,
    and a label whose top class is O with an entity mass up to about 0.35 is minimised by a pure-O
    prediction. Pseudo entities that lose overlap resolution arrive here as one-hot O rows, whose
    term is ``log softmax(p)_O``, as in the reference."""
    probs = torch.softmax(logits.float(), dim=-1)
    per_span = -(targets * torch.log_softmax(probs, dim=-1)).sum(dim=-1)
    return per_span.mean() if reduction == "mean" else per_span.sum()


#: ``retrain.target-loss`` -> the loss on a target batch's soft labels
TARGET_LOSSES: dict[str, Callable[..., torch.Tensor]] = {"soft-ce": soft_cross_entropy, "reference": reference_target_loss}


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator, group: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar-length sentences.

    Sentences are shuffled, cut into groups of ``group`` batches, sorted by length inside
    each group, batched, and the batches shuffled again: random enough for SGD, with far
    less padding (a random batch of short WikiAnn sentences is padded to its longest one,
    which doubled the step time: bench/train_step_bench.py).
    """
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    span = batch_size * group
    batches = []
    for lo in range(0, len(order), span):
        chunk = order[lo : lo + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _cycle(lengths: Sequence[int], batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    while True:
        yield from length_grouped_batches(lengths, batch_size, rng)


def _lengths(sentences: Sequence[EncodedSentence]) -> list[int]:
    return [len(s.input_ids) for s in sentences]


def build_optimizer(model: SpanNERModel, cfg: TrainSettings) -> torch.optim.Optimizer:
    """AdamW; the randomly initialised head learns faster than the pretrained encoder. Public:
    the bench scripts time and probe the same optimiser."""
    enc, head, no_decay = [], [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("encoder."):
            (no_decay if p.ndim == 1 else enc).append(p)
        else:
            head.append(p)
    return torch.optim.AdamW(
        [
            {"params": enc, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "lr": cfg.lr, "weight_decay": 0.0},
            {"params": head, "lr": cfg.head_lr, "weight_decay": cfg.weight_decay},
        ],
        betas=(0.9, cfg.adam_beta2),
    )


@dataclass
class ChainedRun:
    """One AdamW state and one learning-rate schedule over ``rounds`` chained self-training rounds
    (``retrain.schedule-rounds``), as the reference trains its target model in one run: this
    training is round ``index`` (1-based) of them, its schedule the ``index``-th slice of the whole
    run's warm-up and decay; ``state`` is the previous round's optimiser state (None in round 1)
    and holds this round's once training ends, for the model folder."""

    index: int
    rounds: int
    state: dict | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.rounds:
            from glode.errors import ParamError

            raise ParamError("retrain.schedule-rounds", f"round {self.index} lies outside a schedule of "
                             f"{self.rounds} rounds; set it to the number of chained rounds")


def corpus_vocabulary(sentences: Sequence[EncodedSentence], special_ids: set[int]) -> torch.Tensor:
    """The sorted sub-token ids of ``sentences`` that masking can pick (specials left out): the
    masked-LM softmax's vocabulary with ``train.mlm-vocab: corpus``."""
    ids = np.unique(np.concatenate([np.asarray(s.input_ids, dtype=np.int64) for s in sentences]))
    return torch.from_numpy(ids[~np.isin(ids, sorted(special_ids))])


class _Batches:
    """The corpora of a run as batches: the source's, shuffled afresh each epoch; the target's and
    the masked-LM text's drawn one after the other, cycling, as the steps need them."""

    def __init__(self, tokenizer, cfg: TrainSettings, source, target, mlm_corpus, rng: np.random.Generator,
                 device: torch.device = torch.device("cpu"), target_loss: str = "soft-ce"):
        self.device = device
        self.target_loss = TARGET_LOSSES[target_loss]
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = tokenizer.mask_token_id
        self.special_ids = set(int(i) for i in tokenizer.all_special_ids)
        self.cfg = cfg
        self.rng = rng
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.source, self.target, self.mlm_corpus = source, target, mlm_corpus
        self.source_lengths = _lengths(source)
        self.target_iter = _cycle(_lengths(target), cfg.batch_size, rng) if target else None
        use_mlm = cfg.mlm_weight > 0 and bool(mlm_corpus)
        self.mlm_iter = _cycle(_lengths(mlm_corpus), cfg.mlm_batch_size, rng) if use_mlm else None
        self.mlm_vocab = (corpus_vocabulary(mlm_corpus, self.special_ids).to(device)
                          if use_mlm and cfg.mlm_vocab == "corpus" else None)

    def epoch(self, steps: int) -> Iterator[SpanBatch]:
        """The first ``steps`` source batches of a fresh shuffle (the last pass may be partial)."""
        for idx in length_grouped_batches(self.source_lengths, self.cfg.batch_size, self.rng)[:steps]:
            yield collate([self.source[i] for i in idx], self.pad_id).to(self.device)

    def next_target(self) -> SpanBatch | None:
        if self.target_iter is None:
            return None
        return collate([self.target[i] for i in next(self.target_iter)], self.pad_id).to(self.device)

    def next_masked(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(input ids with masks, attention mask, MLM labels) of the next target-text batch."""
        if self.mlm_iter is None:
            return None
        mb = collate([self.mlm_corpus[i] for i in next(self.mlm_iter)], self.pad_id)
        ids, labels = mask_tokens(mb.input_ids, mb.attention_mask, self.special_ids, self.mask_id, self.cfg.mlm_rate,
                                  self.gen)
        if self.device.type == "cpu":
            return ids, mb.attention_mask, labels
        return ids.to(self.device), mb.attention_mask.to(self.device), labels.to(self.device)


def linear_schedule(opt: torch.optim.Optimizer, total: int, warmup: int, offset: int = 0) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' linear schedule (``get_linear_schedule_with_warmup``: warm-up from lr 0 over
    ``warmup`` steps, then linear decay to 0 at ``total``), started at step ``offset`` of that run
    (a later round of a :class:`ChainedRun`) by torch's ``last_epoch``."""
    from transformers import get_linear_schedule_with_warmup

    for group in opt.param_groups:  # what a scheduler resumed at a later step reads its base rate from
        group.setdefault("initial_lr", group["lr"])
    return get_linear_schedule_with_warmup(opt, warmup, total, last_epoch=offset - 1)


def _step_loss(model: SpanNERModel, batch: SpanBatch, batches: _Batches, sums: dict[str, float]) -> torch.Tensor:
    """``L_src + L_tgt + λ·L_mlm`` of one step (the parts that apply); adds each part to ``sums``."""
    loss = nn.functional.cross_entropy(model(batch), batch.labels)
    sums["loss_source"] += loss.item()
    target = batches.next_target()
    if target is not None:
        lt = batches.target_loss(model(target), target.soft)
        sums["loss_target"] += lt.item()
        loss = loss + lt
    masked = batches.next_masked()
    if masked is not None:
        lm = model.mlm_loss(*masked, vocab=batches.mlm_vocab)
        sums["loss_mlm"] += lm.item()
        loss = loss + batches.cfg.mlm_weight * lm
    return loss


class _ShardStep(nn.Module):
    """One process's part of a step's loss on the global batch, as one forward pass: the unit that
    ``DistributedDataParallel`` wraps (it prepares the gradient reduction of what one forward call
    used, so the source, target and masked-LM passes must be one call). Each part is a sum over
    this process's spans (masked tokens) divided by the global batch's count, so that the parts
    add up, over the processes, to the one-process loss; the sum is multiplied by the number of
    processes because DDP averages the gradients over them."""

    def __init__(self, model: SpanNERModel, batches: _Batches, world: World):
        super().__init__()
        self.model = model
        self.target_loss = batches.target_loss
        self.mlm_weight = batches.cfg.mlm_weight
        self.mlm_vocab = batches.mlm_vocab
        self.processes = world.size

    def forward(self, source: SpanBatch | None, source_spans: int, target: SpanBatch | None, target_spans: int,
                masked: tuple[torch.Tensor, ...] | None, masked_tokens: int) -> tuple[torch.Tensor, dict[str, float]]:
        """(the loss to back-propagate, each part's value for the logs). Without any shard here, a
        zero that touches the span classifier (which the global batch always uses), so that this
        process's backward pass joins the reduction with zero gradients."""
        parts, values = [], {}

        def add(name: str, loss: torch.Tensor, weight: float = 1.0) -> None:
            values[name] = loss.item()
            parts.append(weight * loss)

        if source is not None:
            add("loss_source", nn.functional.cross_entropy(self.model(source), source.labels, reduction="sum")
                / source_spans)
        if target is not None:
            add("loss_target", self.target_loss(self.model(target), target.soft, reduction="sum") / target_spans)
        if masked is not None:
            ids, mask, labels = masked
            add("loss_mlm", self.model.mlm_loss(ids, mask, labels, vocab=self.mlm_vocab)
                * (int((labels != -100).sum()) / masked_tokens), self.mlm_weight)
        if not parts:
            return self.model.classifier.weight.sum() * 0.0, values
        return sum(parts[1:], parts[0]) * self.processes, values


def _shard_loss(ddp: nn.Module, batch: SpanBatch, batches: _Batches, sums: dict[str, float], world: World,
                sync: bool) -> torch.Tensor | None:
    """This process's part of ``L_src + L_tgt + λ·L_mlm`` on the global batch through ``ddp`` (a
    :class:`_ShardStep` under DDP), its parts added to ``sums``; None when its shards are all
    empty and the micro-batch does not sync the gradients (one that syncs needs every process's
    backward pass)."""
    source = batch.shard(world.rank, world.size)
    target = batches.next_target()
    mine = target.shard(world.rank, world.size) if target is not None else None
    masked = batches.next_masked()
    masked_mine = None
    if masked is not None:
        ids, mask, labels = (t[world.rank :: world.size] for t in masked)
        if int((labels != -100).sum()):
            masked_mine = (ids, mask, labels)
    if source is None and mine is None and masked_mine is None and not sync:
        return None
    loss, values = ddp(source, len(batch.span_sentence), mine, len(target.span_sentence) if target is not None else 0,
                        masked_mine, int((masked[2] != -100).sum()) if masked is not None else 0)
    for name, value in values.items():
        sums[name] += value
    return loss


def _backward(loss: torch.Tensor, group: int, scaler=None) -> None:
    """Add a micro-batch's share of its group's mean loss to the gradients (the loss itself
    when the group is one micro-batch: no division, so grad-accum 1 computes what it always did)."""
    if group > 1:
        loss = loss / group
    (loss if scaler is None else scaler.scale(loss)).backward()


def _optimise(model: SpanNERModel, opt: torch.optim.Optimizer, sched, grad_clip: float, scaler=None) -> None:
    """One optimiser step on the accumulated gradients (averaged over the processes by DDP in the
    last backward pass), which it then clears; with an fp16 loss scaler, the gradients are
    unscaled before clipping and a step whose gradients overflowed is skipped (the scaler then
    lowers its scale)."""
    if scaler is not None and grad_clip > 0:
        scaler.unscale_(opt)
    if grad_clip > 0:
        nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()
    sched.step()
    opt.zero_grad(set_to_none=True)


def optimiser_steps(micro_steps: Sequence[int], grad_accum: int) -> int:
    """Optimiser steps of a run whose epochs have ``micro_steps`` micro-batches each: every epoch
    ends with a step, so a partial group does not carry over into the next epoch."""
    return sum(math.ceil(n / grad_accum) for n in micro_steps)


def train(
    model: SpanNERModel,
    tokenizer,
    source: Sequence[EncodedSentence],
    cfg: TrainSettings,
    mlm_corpus: Sequence[EncodedSentence] | None = None,
    target: Sequence[EncodedSentence] | None = None,
    log_dir: str | Path | None = None,
    evaluate: Callable[[SpanNERModel], dict] | None = None,
    progress: bool = True,
    device: DeviceSettings | None = None,
    target_loss: str = "soft-ce",
    chained: ChainedRun | None = None,
) -> list[dict]:
    """Train in place; returns one record per epoch (also logged with dvclive to ``log_dir``).

    The model moves to ``device.device`` (default settings: ``auto``) and stays there; its
    forward passes run in ``device.precision``. Launched as several processes
    (``train.processes``, glode/distributed.py), each takes its share of every global batch and
    ``DistributedDataParallel`` averages the gradients; only rank 0 scores dev and writes
    ``log_dir``. ``cfg.processes`` is the stages' business: this function trains in the
    processes it runs in.

    Sentences longer than the sequence length train as their windows (``expand_units``).
    ``target_loss`` names the loss on the target labels (:data:`TARGET_LOSSES`); ``chained``
    continues a previous round's optimiser and learning-rate schedule (:class:`ChainedRun`).
    Records hold losses and dev scores only, no timings, so that the same seed gives the same
    logs. ``log_dir`` appears, complete, only when training has finished.
    """
    if not source:
        raise ValueError("no source sentences to train on")
    if cfg.mlm_weight > 0 and mlm_corpus and tokenizer.mask_token_id is None:
        from glode.errors import GlodeError

        raise GlodeError("the tokenizer has no mask token; set mlm-weight to 0 to train without masked LM")
    device = device or DeviceSettings()
    where = place_model(model, device.device, device.precision)
    world = init_from_env(where)
    scaler = grad_scaler(where, device.precision)
    # torch's generator (only dropout draws from it: batch order and masking have their own, shared
    # by every process) with seed + rank, so that data-parallel processes draw their own dropout masks
    set_seed(cfg.seed + world.rank)
    model.freeze_word_embeddings(cfg.freeze_word_embeddings)
    batches = _Batches(tokenizer, cfg, expand_units(source), expand_units(target) if target else target,
                       expand_units(mlm_corpus) if mlm_corpus else mlm_corpus, np.random.default_rng(cfg.seed), where,
                       target_loss)
    ddp = data_parallel(_ShardStep(model, batches, world), where) if world.size > 1 else None
    steps_per_epoch = math.ceil(len(batches.source) / cfg.batch_size)
    total = math.ceil(steps_per_epoch * cfg.epochs - 1e-9)  # micro-batches; whole epochs: exactly epochs x steps
    epoch_steps = [min(steps_per_epoch, total - e * steps_per_epoch) for e in range(math.ceil(total / steps_per_epoch))]
    accum = cfg.grad_accum
    opt = build_optimizer(model, cfg)
    opt_total = optimiser_steps(epoch_steps, accum)
    if chained is None:
        sched = linear_schedule(opt, opt_total, int(opt_total * cfg.warmup_ratio))
    else:  # this round's slice of one schedule over the whole chain, every round as long as this one
        if chained.state is not None:
            opt.load_state_dict(chained.state)
        whole = opt_total * chained.rounds
        sched = linear_schedule(opt, whole, int(whole * cfg.warmup_ratio), offset=opt_total * (chained.index - 1))
    history = []
    bar = progress_bar(total=total, desc="training", unit="step", enabled=progress)
    opt.zero_grad(set_to_none=True)
    for epoch, steps in enumerate(epoch_steps):
        model.train()
        sums = {"loss_source": 0.0, "loss_target": 0.0, "loss_mlm": 0.0}
        for i, batch in enumerate(batches.epoch(steps)):
            group = min(accum, steps - (i - i % accum))  # micro-batches in the group of this one
            sync = (i + 1) % accum == 0 or i + 1 == steps  # the group's last: the optimiser steps after it
            # data-parallel: DDP reduces the gradients in the backward pass of the group's last micro-batch only
            with ddp.no_sync() if ddp is not None and not sync else contextlib.nullcontext():
                with autocast(where, device.precision):
                    if ddp is None:
                        loss = _step_loss(model, batch, batches, sums)
                    else:
                        loss = _shard_loss(ddp, batch, batches, sums, world, sync)
                if loss is not None:
                    _backward(loss, group, scaler)
            if sync:
                _optimise(model, opt, sched, cfg.grad_clip, scaler)
            bar.update(1)
            if loss is not None:
                bar.set_postfix(loss=f"{loss.item():.3f}")
        if world.size > 1:  # the processes' parts of each loss add up to the one-process loss
            sums = dict(zip(sums, sum_floats(list(sums.values()), world, where)))
        record = {k: v / steps for k, v in sums.items()}
        record.update(epoch=epoch + 1, steps=steps)
        if accum > 1:  # (absent at 1, so the logs of a run without accumulation read as before)
            record["optimiser_steps"] = math.ceil(steps / accum)
        if evaluate is not None and world.main:
            record.update({f"dev_{k}": v for k, v in evaluate(model).items()})
        history.append(record)
    bar.close()
    if chained is not None:
        chained.state = opt.state_dict()
    if log_dir is not None and world.main:
        write_logs(log_dir, history)
    model.eval()
    return history


def write_logs(log_dir: str | Path, history: Sequence[dict]) -> Path:
    """The per-epoch records as a dvclive log folder (``metrics.json``, ``plots/metrics/*.tsv``),
    written whole and renamed into place. dvclive writes no timestamps unless asked, so the
    same history gives the same bytes.

    The dvclive ``step`` is the epoch number (1, 2, ...), so the curves' x axis counts epochs.
    Only series worth a curve are logged: ``steps`` (micro-batches per epoch, the same every
    epoch) and ``optimiser_steps`` (with gradient accumulation) go to ``metrics.json`` alone,
    and a loss that is zero in every epoch was never computed (``loss_target`` without a target
    corpus, as in r0; ``loss_mlm`` with λ = 0)."""
    from dvclive import Live

    def plotted(key: str) -> bool:
        values = [r[key] for r in history if isinstance(r.get(key), (int, float))]
        return key not in ("epoch", "steps", "optimiser_steps") and bool(values) and not (key.startswith("loss_") and not any(values))

    series = {k for record in history for k in record if plotted(k)}
    with atomic_dir(log_dir) as tmp:
        live = Live(dir=str(tmp), save_dvc_exp=False, dvcyaml=None, report=None)
        for record in history:
            live.step = int(record["epoch"])
            for k, v in record.items():
                if k in series and isinstance(v, (int, float)):
                    live.log_metric(k, v)
            for key in ("steps", "optimiser_steps"):
                if key in record:
                    live.summary[key] = record[key]
            live.next_step()
        live.end()
    return Path(log_dir)
