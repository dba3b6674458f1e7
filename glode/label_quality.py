"""How good refined pseudo labels are against gold, and what a denoising step did to them.

Next to glode/metrics.py (a model's entity scores on a labelled corpus), these score the span
labels themselves: hard span-level P/R/F1 (:func:`span_prf`), the same with soft counts and the
Brier score (:func:`soft_scores`), the soft mass an update moved (:func:`label_movement`), and a
denoising step's statistics (:func:`summarize`, which ``metrics/denoise/rN.json`` records).
Plain numpy: the ``initial_labels`` step scores Y0 with them without loading faiss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from glode.metrics import prf

if TYPE_CHECKING:
    from glode.denoising.update import DenoiseResult


def span_prf(pred: np.ndarray, gold: np.ndarray) -> dict[str, float | int]:
    """Span-level micro P/R/F1 over entity classes: a predicted entity c is correct iff gold is c."""
    known = gold >= 0
    pred, gold = pred[known], gold[known]
    n_pred = int((pred != 0).sum())
    n_gold = int((gold != 0).sum())
    correct = int(((pred == gold) & (pred != 0)).sum())
    return {**prf(correct, n_pred, n_gold), "predicted": n_pred, "gold": n_gold, "correct": correct}


def soft_scores(Y: np.ndarray, gold: np.ndarray) -> dict[str, float | int]:
    """Label quality of soft labels ``Y`` (N x C) against gold class ids (-1 = unknown, excluded).

    ``precision``/``recall``/``f1`` are :func:`span_prf` with every count made soft: the
    predicted entities are the total entity mass ``sum_s (1 - Y[s, O])``, the correct ones the
    mass on the gold class of gold-entity spans; on one-hot labels they equal the hard scores.
    The means say where the mass sits: entity mass on gold-entity spans (soft recall of
    "is an entity") and on gold-O spans (soft false alarms), mass on the gold class of
    gold-entity spans, and the Brier score ``sum_c (Y[s, c] - 1[c = gold])**2`` averaged over
    all known spans and over gold-entity spans (0 is perfect, 2 the worst).
    """
    gold = np.asarray(gold, dtype=np.int64)
    known = gold >= 0
    Yk = np.asarray(Y, dtype=np.float64)[known]
    g = gold[known]
    entity = g != 0
    entity_mass = 1.0 - Yk[:, 0]
    gold_mass = Yk[np.arange(g.shape[0]), g]
    brier = (Yk * Yk).sum(axis=1) - 2.0 * gold_mass + 1.0
    correct = float(gold_mass[entity].sum())
    predicted = float(entity_mass.sum())
    n_gold = int(entity.sum())

    def mean(x: np.ndarray) -> float | None:
        return float(x.mean()) if x.size else None

    return {
        **prf(correct, max(predicted, 0.0), n_gold),  # (rounding can leave a hair below 0)
        "entity_mass": predicted,
        "correct_mass": correct,
        "gold": n_gold,
        "entity_mass_on_gold_entity": mean(entity_mass[entity]),
        "entity_mass_on_gold_o": mean(entity_mass[~entity]),
        "gold_class_mass_on_gold_entity": mean(gold_mass[entity]),
        "brier": mean(brier),
        "brier_on_gold_entity": mean(brier[entity]),
    }


def label_movement(Y_prev: np.ndarray, Y_new: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """How much soft mass an update moved, not only which top classes flipped.

    Per span the moved mass is half the L1 distance between the old and the new label (1 for
    a full flip, 0.2 for [1 O] becoming [0.8 O, 0.2 PER]); ``mass_moved`` sums it over the
    spans, ``spans_moved`` counts spans that moved more than 1e-6. ``o_to_entity_mass`` is the
    O mass that left spans (sum of the decreases of ``O``), ``entity_to_o_mass`` the O mass
    gained, ``net_per_class`` each class's total change (it sums to 0).
    """
    delta = np.asarray(Y_new, dtype=np.float64) - np.asarray(Y_prev, dtype=np.float64)
    moved = 0.5 * np.abs(delta).sum(axis=1)
    return {
        "mass_moved": float(moved.sum()),
        "spans_moved": int((moved > 1e-6).sum()),
        "max_moved": float(moved.max()) if moved.size else 0.0,
        "o_to_entity_mass": float(np.maximum(-delta[:, 0], 0.0).sum()),
        "entity_to_o_mass": float(np.maximum(delta[:, 0], 0.0).sum()),
        "net_per_class": {name: float(delta[:, c].sum()) for c, name in enumerate(class_names)},
    }


def _finite_or_none(values: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


def summarize(
    result: DenoiseResult,
    prev_labels: np.ndarray | None = None,
    gold: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Label movement (top-class flips and soft mass), admitted-set sizes, view agreement and
    (with gold) hard and soft P/R/F1 (:func:`soft_scores`) before and after.

    View agreement, over spans where both views admitted something: ``equal`` = the two
    sets are identical, ``intersect`` = they share a class; ``top_agree`` (all spans) =
    argmax g equals argmax n.
    """
    C = result.Y_new.shape[1]
    names = list(class_names) if class_names is not None else [str(c) for c in range(C)]
    if len(names) != C:
        raise ValueError(f"class_names has {len(names)} names for {C} classes")
    before = result.y_prev if prev_labels is None else np.asarray(prev_labels, dtype=np.int64)
    after = result.y_new
    changed = before != after
    g_size = result.G.sum(axis=1)
    l_size = result.L.sum(axis=1)
    both = (g_size > 0) & (l_size > 0)
    n_both = int(both.sum())
    equal = int((result.G == result.L).all(axis=1)[both].sum())
    intersect = int((result.G & result.L).any(axis=1)[both].sum())

    def hist(sizes: np.ndarray) -> dict[str, int]:
        return {str(i): int(v) for i, v in enumerate(np.bincount(sizes, minlength=C + 1))}

    out: dict[str, Any] = {
        "spans": int(after.shape[0]),
        "classes": names,
        "bank_size": int(result.bank_size),
        "bank_per_class": dict(zip(names, map(int, result.bank_class_counts))),
        "index": result.index_kind,
        "missing_neighbours": int(result.missing_neighbours),
        "per_class_before": dict(zip(names, map(int, np.bincount(before, minlength=C)))),
        "per_class_after": dict(zip(names, map(int, np.bincount(after, minlength=C)))),
        "changed": {
            "total": int(changed.sum()),
            "o_to_entity": int((changed & (before == 0)).sum()),
            "entity_to_o": int((changed & (after == 0)).sum()),
            "type_swap": int((changed & (before != 0) & (after != 0)).sum()),
            "refused_by_gate": int(result.gated.sum()),
        },
        "soft_change": label_movement(result.Y_prev, result.Y_new, names),
        "select": {
            "share": result.settings.select,
            "rest_weight": result.settings.select_rest,
            "demoted": int((result.demoted_from >= 0).sum()),
            "demoted_per_class": dict(zip(names, map(int, np.bincount(
                result.demoted_from[result.demoted_from >= 0], minlength=C)))),
        },
        "admitted": {
            "global_size_hist": hist(g_size),
            "local_size_hist": hist(l_size),
            "global_mean_size": float(g_size.mean()) if g_size.size else 0.0,
            "local_mean_size": float(l_size.mean()) if l_size.size else 0.0,
            "both_empty": int(((g_size == 0) & (l_size == 0)).sum()),
        },
        "view_agreement": {
            "both_nonempty": n_both,
            "equal_rate": equal / n_both if n_both else None,
            "intersect_rate": intersect / n_both if n_both else None,
            "top_agree_rate": float((result.g.argmax(1) == result.n.argmax(1)).mean()) if after.size else None,
        },
        "tau_global": dict(zip(names, _finite_or_none(result.tau_global))),
        "tau_local": dict(zip(names, _finite_or_none(result.tau_local))),
    }
    if gold is not None:
        gold = np.asarray(gold, dtype=np.int64)
        if gold.shape != after.shape:
            raise ValueError(f"gold {gold.shape} must be ({after.shape[0]},)")
        out["gold"] = {"known": int((gold >= 0).sum()), "before": span_prf(before, gold), "after": span_prf(after, gold),
                       "soft_before": soft_scores(result.Y_prev, gold), "soft_after": soft_scores(result.Y_new, gold)}
    return out
