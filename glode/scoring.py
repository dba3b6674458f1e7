"""Score every candidate span of encoded sentences with a span model and decode non-overlapping
entities: what evaluation, pseudo labelling and ``glode predict`` all run (glode/corpus.py does it
over a prepared table, glode/predict.py over new text)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from glode.device import autocast, check_precision, model_device
from glode.features import EncodedSentence, collate, length_batches
from glode.progress import progress as progress_bar
from glode.spans import Span, resolve_overlaps


@dataclass
class SpanScores:
    """Class probabilities (S, C) for one sentence's candidate spans, and optionally z."""

    probs: np.ndarray
    features: np.ndarray | None = None


def score_spans(
    model,
    sentences: Sequence[EncodedSentence],
    pad_id: int,
    batch_size: int = 64,
    with_features: bool = False,
    progress: bool = True,
    desc: str = "scoring spans",
    precision: str = "fp32",
) -> list[SpanScores]:
    """Eval-mode softmax over candidate spans, batched by length; results in input order.

    Batches go to the device the model is on; its forward passes run in ``precision``
    (glode/device.py) and the scores come back to the CPU as float32.

    A sentence longer than the model's sequence length is scored window by window
    (``EncodedSentence.units()``); each span's scores come from the window it is assigned to,
    so the result is aligned with the sentence's span arrays either way.

    Inside ``glode.distributed.sharded_scoring`` with N processes, every process makes the same
    length-sorted batches, process r runs batches r, r+N, r+2N, ..., and the batches' scores are
    gathered, so that every process returns what one process returns (each batch is the very
    batch one process runs: the same values, bit for bit, at the same thread count). Every
    process must then make the call, with the same sentences.
    """
    from glode.distributed import all_gather, scoring_world

    model.eval()
    units = [(i, u) for i, s in enumerate(sentences) for u in s.units()]
    probs_out: list[np.ndarray | None] = [None] * len(sentences)
    feats_out: list[np.ndarray | None] = [None] * len(sentences)
    batches = length_batches([len(u.input_ids) for _, u in units], batch_size)
    device = model_device(model)
    check_precision(device, precision)

    def place(idx, probs: np.ndarray, z: np.ndarray | None) -> None:
        """One batch's span rows into their sentences' arrays."""
        bounds = np.cumsum([0] + [len(units[j][1].span_word_start) for j in idx])
        for pos, j in enumerate(idx):
            i, unit = units[j]
            lo, hi = bounds[pos], bounds[pos + 1]
            if unit.rows is None:  # the whole sentence in one input
                probs_out[i] = probs[lo:hi].copy()
                feats_out[i] = None if z is None else z[lo:hi].copy()
                continue
            n_spans = len(sentences[i].span_word_start)
            if probs_out[i] is None:
                probs_out[i] = np.zeros((n_spans, probs.shape[1]), dtype=probs.dtype)
                feats_out[i] = None if z is None else np.zeros((n_spans, z.shape[1]), dtype=z.dtype)
            probs_out[i][unit.rows] = probs[lo:hi]
            if z is not None:
                feats_out[i][unit.rows] = z[lo:hi]

    world = scoring_world()
    mine = range(world.rank, len(batches), world.size)  # all of them in one process
    computed = []  # (batch number, probs, z) of this process's batches, with several processes
    with torch.inference_mode():
        for b in progress_bar(mine, desc=desc, unit="batch", enabled=progress, leave=False):
            idx = batches[b]
            batch = collate([units[j][1] for j in idx], pad_id).to(device)
            with autocast(device, precision):
                z = model.span_features(batch)
                # in float32: CUDA's autocast promotes softmax itself, the CPU's does not (bf16
                # probabilities would move in steps of ~0.004 near 1); a no-op in fp32
                probs = torch.softmax(model.classifier(z).float(), dim=-1)
            probs = probs.cpu().numpy()  # no copy on the CPU
            z = z.float().cpu().numpy() if with_features else None
            if world.size == 1:
                place(idx, probs, z)
            else:
                computed.append((b, probs, z))
    if world.size > 1:
        for b, probs, z in sorted(all_gather(computed, world), key=lambda item: item[0]):
            place(batches[b], probs, z)
    return [SpanScores(p, f) for p, f in zip(probs_out, feats_out)]


def _entity_candidates(sentence: EncodedSentence, probs: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
    """Indices of spans whose argmax is an entity, and (start, end, index, score) for each."""
    best = probs.argmax(axis=1)
    keep = np.nonzero(best != 0)[0]
    cands = [
        (int(sentence.span_word_start[i]), int(sentence.span_word_end[i]), int(i), float(probs[i, best[i]]))
        for i in keep
    ]
    return best, cands


def decode_spans(sentence: EncodedSentence, probs: np.ndarray, classes: Sequence[str]) -> list[Span]:
    """Argmax per span, then greedy non-overlapping selection of entity spans by score."""
    if len(probs) == 0:
        return []
    best, cands = _entity_candidates(sentence, probs)
    return [Span(s.start, s.end, classes[best[int(s.label)]]) for s in resolve_overlaps(cands)]


def kept_entity_mask(sentence: EncodedSentence, probs: np.ndarray) -> np.ndarray:
    """Boolean mask over candidate spans: predicted non-O *and* kept by overlap resolution."""
    mask = np.zeros(len(probs), dtype=bool)
    if len(probs):
        _, cands = _entity_candidates(sentence, probs)
        mask[[int(s.label) for s in resolve_overlaps(cands)]] = True
    return mask
