"""Protocol v4 (bench/results_v4.py) through bench/results.py: the plan's order and size, each
variant's overrides at 3 epochs and its work folder, the estimate from v3's measured stage times,
status, and the rendered block (fake cell JSONs in a tmp dir): numbers where a cell is measured,
*pending* elsewhere; rendering v4 leaves the rest of docs/RESULTS.md byte-identical."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from glode.metrics import prf
from glode.presets import PRESETS
from tests.bench_modules import load
from tests.params_fixture import write_params

ROOT = Path(__file__).resolve().parent.parent
R, H, V3, V4, SC = map(load, ("results", "results_harness", "results_v3", "results_v4", "sentence_counts"))
P = V4.PROTOCOL

SHARE_R0 = ("zeroshot", "plain-ce", "plain-ref", "views-ref")


@pytest.fixture
def v4(monkeypatch, tmp_path):
    """Protocol v4 with its cells in a tmp dir and a cheap bootstrap."""
    proto = dataclasses.replace(R.PROTOCOLS["v4"], cells=tmp_path / "cells-v4")
    monkeypatch.setitem(R.PROTOCOLS, "v4", proto)
    monkeypatch.setitem(V3.V3_BOOTSTRAP, "n_resamples", 200)
    return proto


def undefine_beyond(monkeypatch) -> None:
    """The column as it was before exploration x4 chose it: not defined, so skipped."""
    monkeypatch.setitem(V4.V4_VARIANTS, "beyond", ("chosen by exploration x4", None))


# --------------------------------------------------------------------------- plan, overrides, work folders


def test_plan_is_seed_0_on_every_target_first_in_the_priority_order_and_paper_last():
    order = ["de", "ar", "hi", "zh", "es", "nl"]
    per_target = ["zeroshot", "plain-ce", "views-ref", "beyond", "plain-ref"]
    expected = [(lang, v, seed) for seed in (0, 1, 2) for lang in order for v in per_target]
    expected += [(lang, "paper", seed) for seed in (0, 1, 2) for lang in order]
    assert P.plan() == expected and len(expected) == 3 * 6 * 6
    assert P.planned() == expected  # every column defined
    assert P.overrides("beyond", 0)["retrain.target-loss"] == "soft-ce" and P.overrides("beyond", 0)["denoise.use-local"]
    assert set(P.variants) == {"zeroshot", "plain-ce", "plain-ref", "views-ref", "paper", "beyond"}
    assert P.sizes == V3.V3_SIZES == {"source_train": 3000, "source_dev": 1000, "target_unlabelled": 3000, "target_test": 3000}


def test_an_undefined_beyond_is_skipped_and_the_others_keep_their_place(monkeypatch):
    undefine_beyond(monkeypatch)
    planned = P.planned()
    assert len(planned) == 90 and all(v != "beyond" for _, v, _ in planned)
    assert planned[:5] == [("de", v, 0) for v in ("zeroshot", "plain-ce", "views-ref", "plain-ref")] + [("ar", "zeroshot", 0)]
    monkeypatch.undo()
    assert len(P.planned()) == 108
    assert P.overrides("beyond", 2)["train.epochs"] == 3 and P.workdir("zh", "beyond", 2) == "zh-s2"


def test_every_variant_trains_3_epochs_and_names_its_views_and_loss():
    for v in SHARE_R0:
        o = P.overrides(v, 1)
        assert o["train.epochs"] == 3 and o["train.seed"] == 1 and o["rounds"] == 1
        assert P.round_epochs(v) == 3.0 and P.rounds_of(v) == (["r0"] if v == "zeroshot" else ["r0", "r1"])
    for v in ("plain-ce", "plain-ref", "views-ref"):
        o = P.overrides(v, 0)
        assert {"denoise.use-global", "denoise.use-local", "denoise.start", "retrain.target-loss"} <= set(o)
    assert P.overrides("plain-ce", 0)["retrain.target-loss"] == "soft-ce"
    assert P.overrides("plain-ref", 0)["retrain.target-loss"] == "reference"
    assert not P.overrides("plain-ref", 0)["denoise.use-global"] and not P.overrides("plain-ref", 0)["denoise.use-local"]
    views = P.overrides("views-ref", 0)
    assert all(views[k] == val for k, val in PRESETS["glode"].values.items()) and views["retrain.target-loss"] == "reference"
    assert views["denoise.use-global"] and views["denoise.use-local"]


def test_paper_is_every_value_of_the_paper_preset_with_its_rounds_and_own_r0():
    o = P.overrides("paper", 2)
    assert all(o[k] == val for k, val in PRESETS["paper"].values.items())
    assert o["rounds"] == PRESETS["paper"].rounds == 5 and o["train.epochs"] == 8 and o["train.seed"] == 2
    assert P.rounds_of("paper") == ["r0", "r1", "r2", "r3", "r4", "r5"] and P.round_epochs("paper") == 1.0


def test_work_folders_one_per_target_and_seed_paper_its_own():
    for lang in H.ORDER:
        for seed in (0, 1, 2):
            assert {P.workdir(lang, v, seed) for v in SHARE_R0} == {f"{lang}-s{seed}"}
            assert P.workdir(lang, "paper", seed) == f"{lang}-s{seed}-paper"
    assert P.work_subdir == "v4" and P.cells == ROOT / "bench" / "results" / "cells-v4"


def test_written_params_of_a_cell(tmp_path):
    write_params(tmp_path / "params.yaml")  # the schema defaults, not the working tree's params.yaml
    params = H.write_params(tmp_path, "ar", P.overrides("views-ref", 1))
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == params
    assert params["train"]["epochs"] == 3 and params["train"]["seed"] == 1 and list(params["rounds"]) == ["r1"]
    assert params["retrain"]["target-loss"] == "reference" and params["denoise"]["use-local"] is True
    params = H.write_params(tmp_path, "ar", P.overrides("paper", 1))
    assert params["train"]["epochs"] == 8 and params["train"]["batch-size"] == 8 and params["train"]["grad-accum"] == 4
    assert list(params["rounds"]) == ["r1", "r2", "r3", "r4", "r5"] and params["retrain"]["schedule-rounds"] == 5


# --------------------------------------------------------------------------- estimate


KINDS = {"check": 1, "prepare": 2, "encoder": 10, "train_source": 400, "initial_labels": 20, "pseudo_label": 50,
         "denoise": 6, "train_target": 600, "evaluate": 30, "sentence_counts": 28}


def _v3_cell(lang, variant, seed, stages, epochs=2, round_epochs=0, mlm=0.1):
    return {"language": lang, "variant": variant, "seed": seed, "stages": stages,
            "params": {"train": {"epochs": epochs, "mlm-weight": mlm}, "retrain": {"epochs": round_epochs}}}


def fake_v3_cells() -> dict:
    """Every stage kind with the seconds of KINDS on every target, and the cells the medians must
    leave out of training: a no-MLM cell, and a paper cell whose rounds are 2/3 of an epoch."""
    ran = lambda s: {"seconds": s, "ran": True}  # noqa: E731
    cells = {}
    for lang in H.ORDER:
        r0 = {k: ran(KINDS[k]) for k in ("check", "prepare", "encoder", "train_source", "initial_labels")}
        r0 |= {"evaluate@r0": ran(KINDS["evaluate"]), "sentence_counts@r0": ran(KINDS["sentence_counts"])}
        cells[(lang, "zeroshot", 0)] = _v3_cell(lang, "zeroshot", 0, r0)
        rnd = {f"{k}@r1": ran(KINDS[k]) for k in ("pseudo_label", "denoise", "train_target", "evaluate", "sentence_counts")}
        cells[(lang, "plain", 0)] = _v3_cell(lang, "plain", 0, rnd | {"train_source": {"seconds": 1, "ran": False}})
        cells[(lang, "nomlm", 0)] = _v3_cell(lang, "nomlm", 0, {"train_source": ran(9999), "train_target@r1": ran(9999)},
                                             mlm=0.0)
        cells[(lang, "paper", 0)] = _v3_cell(lang, "paper", 0, {f"train_target@r{i}": ran(9999) for i in (1, 2, 3)},
                                             round_epochs=2 / 3)
    return cells


def test_estimate_scales_v3_medians_by_epochs_and_shares_r0():
    est = V4.estimate_v4(fake_v3_cells())
    assert est["costs"]["de"] == pytest.approx(KINDS)  # the no-MLM and 2/3-epoch trainings left out
    c, k = est["cells"], KINDS
    r0 = k["check"] + k["prepare"] + k["encoder"] + k["initial_labels"] + k["evaluate"]
    assert c[("de", "zeroshot", 0)] == pytest.approx(r0 + 400 * 1.5 + k["sentence_counts"])
    one_round = k["denoise"] + 600 * 1.5 + k["evaluate"] + k["sentence_counts"]
    assert c[("de", "plain-ce", 0)] == pytest.approx(k["pseudo_label"] + one_round)  # r1's pseudo labels, once a folder
    for v in ("views-ref", "beyond", "plain-ref"):
        assert c[("de", v, 0)] == pytest.approx(one_round), v  # beyond (undefined) as a views-ref round
    rounds = 5 * (k["denoise"] + 600 * 0.5) + 4 * k["pseudo_label"] + k["evaluate"] + k["sentence_counts"]
    assert c[("de", "paper", 0)] == pytest.approx(r0 + 400 * 4 + k["pseudo_label"] + rounds)  # its own r0, 8 epochs
    assert c[("de", "zeroshot", 1)] == c[("de", "zeroshot", 0)]  # each seed its own r0
    assert len(c) == 108 and est["total_s"] == pytest.approx(sum(c.values()))


def test_estimate_needs_every_stage_kind():
    cells = fake_v3_cells()
    del cells[("hi", "plain", 0)]
    with pytest.raises(ValueError, match="hi pseudo_label, hi denoise, hi train_target"):
        V4.estimate_v4(cells)


def test_estimate_from_the_measured_v3_cells_says_what_it_is(capsys):
    est = V4.estimate_v4(V4.load_v3_cells())
    assert est["v3_cells"] == 78 and 20 * 3600 < est["total_s"] < 40 * 3600
    assert R.main(["--protocol", "v4", "estimate"]) == 0
    text = capsys.readouterr().out
    assert "an estimate from v3's measured stage times on the 2-core machine" in text
    assert "| **all** | | | | | 108 |" in text and f"**{est['total_s'] / 3600:.1f}**" in text
    assert "per-step overhead of the smaller batches is not modelled" in text


# --------------------------------------------------------------------------- status and run


def test_status_lists_pending_skipped_and_hours(v4, monkeypatch, capsys):
    undefine_beyond(monkeypatch)
    assert R.main(["--protocol", "v4", "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("de:zeroshot  s0 pending\nde:plain-ce  s0 pending\nde:views-ref s0 pending\n")
    assert "skipped: beyond (18 cells): not defined yet" in out and "pending: 90 cells" in out
    assert "changed:" not in out


def test_status_says_when_a_definition_no_longer_matches_its_measured_cells(v4, monkeypatch, capsys):
    v4.cells.mkdir()
    cell = {"language": "de", "variant": "views-ref", "seed": 0, "overrides": P.overrides("views-ref", 0)}
    v4.cell_path("de", "views-ref", 0).write_text(json.dumps(cell))
    assert R.main(["--protocol", "v4", "status"]) == 0
    assert "de:views-ref s0 measured" in (out := capsys.readouterr().out) and "changed:" not in out
    monkeypatch.setitem(V4.V4_VARIANTS, "views-ref", ("edited", {**V4.VIEWS, **V4.SOFT_CE}))
    assert R.main(["--protocol", "v4", "status"]) == 0
    assert "changed: views-ref's definition in bench/results_v4.py differs" in capsys.readouterr().out


def test_run_refuses_the_undefined_beyond(v4, monkeypatch, tmp_path, capsys):
    undefine_beyond(monkeypatch)
    assert R.main(["--protocol", "v4", "run", "--only", "de:beyond:0", "--workdir", str(tmp_path / "work")]) == 2
    assert "not defined yet" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


# --------------------------------------------------------------------------- rendering


N_SENT = 30


def _cell(lang, variant, seed, counts, r0_f1, label_change=None):
    rounds = P.rounds_of(variant)
    f1 = prf(*(int(x) for x in counts.sum(0)))["f1"]
    per_round = {r: {"f1": f1 if r == rounds[-1] else r0_f1, "pseudo_label_f1": 0.5, "optimizer_steps": 564} for r in rounds}
    if label_change:
        (hb, ha), (bb, ba) = label_change
        per_round["r1"]["pseudo_label"] = {"before": {"f1": hb}, "after": {"f1": ha}, "soft_before": {"f1": 0.4, "brier": bb},
                                           "soft_after": {"f1": 0.41, "brier": ba}}
    stage = {"seconds": 90.0, "ran": True, "peak_rss_mb": 2000.0, "load_before": 1.0}
    return {"language": lang, "variant": variant, "seed": seed, "commit": "abcdef0123456789", "protocol": "v4",
            "machine": {"cpu": "test cpu"}, "rounds": per_round, "stages": {"train_target@r1": stage},
            "sentence_counts": {rounds[-1]: SC.encode_counts(counts)}, "overrides": P.overrides(variant, seed)}


def write_de_seed_0(proto) -> dict:
    """de, seed 0: zero-shot, plain-ce and views-ref (views-ref one more true positive per sentence)."""
    rng = np.random.default_rng(1)
    gold = rng.integers(1, 4, size=N_SENT)
    tp = rng.binomial(gold, 0.5)
    plain = np.stack([tp, tp + 1, gold], axis=1)
    views = plain.copy()
    views[:, 0] = np.minimum(views[:, 0] + 1, np.minimum(views[:, 1], views[:, 2]))
    zs_tp = rng.binomial(gold, 0.3)
    zs = np.stack([zs_tp, zs_tp + 1, gold], axis=1)
    r0 = prf(*(int(x) for x in zs.sum(0)))["f1"]
    cells = {("de", "zeroshot", 0): _cell("de", "zeroshot", 0, zs, r0),
             ("de", "plain-ce", 0): _cell("de", "plain-ce", 0, plain, r0),
             ("de", "views-ref", 0): _cell("de", "views-ref", 0, views, r0, label_change=((0.50, 0.52), (0.020, 0.018)))}
    proto.cells.mkdir(parents=True, exist_ok=True)
    for key, cell in cells.items():
        proto.cell_path(*key).write_text(json.dumps(cell))
    return cells


def _section(text: str, title: str) -> str:
    return text.split(title, 1)[1].split("\n### ", 1)[0]


def test_render_with_no_cells_is_all_pending(v4, monkeypatch):
    undefine_beyond(monkeypatch)
    text = V4.render_v4(H.load_cells(v4), v4)
    table = _section(text, "### Target test F1")
    assert "| target | zero-shot (r0) | plain-ce (r1) | plain-ref (r1) | views-ref (r1) | paper (r5) | beyond (r1) |" in table
    assert "| de (CoNLL) | *pending* | *pending* | *pending* | *pending* | *pending* | *pending* (not defined yet) |" in table
    assert "±" not in table.split("\n", 1)[1] and "Measured cells: 0 of 90 planned; skipped, definition missing: beyond (18 cells" in text
    assert "3 epochs for r0 and the round (564 optimiser steps per round at batch 16)" in text
    assert "its own r0 (8 epochs at batch 8 × 4) and 5 rounds of 1 epoch" in text
    goal = _section(text, "### Paired bootstrap, all seeds")
    assert "| views-ref − plain-ce | beyond − plain-ce | views-ref − zero-shot | beyond − zero-shot |" in goal
    assert "| paper − plain-ce | plain-ref − plain-ce |" in _section(text, "### All seeds, the other pairs")
    assert "Estimated cost of the whole v4 plan" in text


def test_render_fills_measured_cells_and_leaves_the_rest_pending(v4):
    bs = load("bootstrap")
    cells = write_de_seed_0(v4)
    text = V4.render_v4(H.load_cells(v4), v4)
    de = next(line for line in _section(text, "### Target test F1").splitlines() if line.startswith("| de ")).split(" | ")
    f1 = {v: 100 * cells[("de", v, 0)]["rounds"][P.rounds_of(v)[-1]]["f1"] for v in ("zeroshot", "plain-ce", "views-ref")}
    assert de[1:5] == [f"{f1['zeroshot']:.1f} (n=1 of 3)", f"{f1['plain-ce']:.1f} (n=1 of 3)", "*pending*",
                       f"{f1['views-ref']:.1f} (n=1 of 3)"]
    assert next(line for line in text.splitlines() if line.startswith("| es (CoNLL)")).count("*pending*") == 6
    assert "| de | *pending* | *pending* | *pending* | *pending* |" in _section(text, "### Paired bootstrap, all seeds")
    interim = _section(text, "### Interim, seed 0 only")
    row = next(line for line in interim.splitlines() if line.startswith("| de |")).split(" | ")
    stack = {v: SC.decode_counts(cells[("de", v, 0)]["sentence_counts"][P.rounds_of(v)[-1]])[None]
             for v in ("zeroshot", "plain-ce", "views-ref")}
    assert row[1].startswith(f"{100 * (bs.mean_f1(stack['views-ref']) - bs.mean_f1(stack['plain-ce'])):+.1f} [")
    assert row[3].startswith(f"{100 * (bs.mean_f1(stack['views-ref']) - bs.mean_f1(stack['zeroshot'])):+.1f} [")
    assert [x.strip(" |") for x in (row[2], row[4], row[5], row[6])] == ["*pending*"] * 4
    assert "| ar | *pending* |" in interim and "| **average** | *pending* (1/6 targets) |" in interim
    quality = _section(text, "### What the views-ref variant's denoising does")
    assert "| de | r1 | +2.0 / *pending* / *pending* | +1.0 / *pending* / *pending* | -2.00 / *pending* / *pending* |" in quality
    assert "r1: 0 of 6 (issue 36 asks for at least five of six)" in quality
    assert "| de | views-ref | 1 of 3 | s0: " in text and "Measured cells: 3 of 108 planned" in text
    walls = _section(text, "every variant but paper")
    assert "| de | - | - | - | - | 90 | - | - | 2000 |" in walls and "| es | *pending* |" in walls
    assert "| de | *pending* |" in _section(text, "paper (r0 at 8 epochs")


def test_pseudo_label_goal_counts_hard_f1_up_and_brier_down_on_every_seed():
    t = V4.TABLES
    up = lambda h, b: {"rounds": {"r1": {"pseudo_label": {  # noqa: E731
        "before": {"f1": h[0]}, "after": {"f1": h[1]}, "soft_before": {"f1": 0.4, "brier": b[0]},
        "soft_after": {"f1": 0.3, "brier": b[1]}}}}}
    cells = {(lang, "views-ref", s): up((0.5, 0.51), (0.02, 0.019)) for lang in H.ORDER for s in (0, 1, 2)}
    cells[("es", "views-ref", 2)] = up((0.5, 0.51), (0.02, 0.021))  # Brier up on one seed: es does not count
    text = "\n".join(load("results_tables").render_denoise_effect(
        t, cells, "views-ref", goal=V4.V4_DENOISE_GOAL, raised=V4.hard_f1_up_brier_down,
        raised_text="raised the hard F1 and lowered the Brier score"))
    assert "raised the hard F1 and lowered the Brier score on every seed: r1: 5 of 6" in text  # soft F1 fell: not asked


def test_cmd_render_writes_the_v4_block_and_leaves_the_rest_of_the_page(v4, monkeypatch, tmp_path):
    page = tmp_path / "RESULTS.md"
    original = (ROOT / "docs" / "RESULTS.md").read_text()
    page.write_text(original)
    monkeypatch.setattr(R, "RESULTS_MD", page)
    monkeypatch.setattr(R, "PROTOCOLS", {"v4": v4})  # v4's block only (the others: tests/test_results_v3.py)
    assert R.main(["--protocol", "v4", "render"]) == 0  # no cells: the markers' block, all pending
    head, rest = original.split(v4.begin, 1)
    tail = rest.split(v4.end, 1)[1]
    assert page.read_text() == head + v4.begin + "\n" + V4.render_v4({}, v4) + v4.end + tail
    assert original.index(v4.begin) < original.index("## Exploration for issue 36")
    write_de_seed_0(v4)
    assert R.main(["--protocol", "v4", "render"]) == 0
    new = page.read_text()
    assert new.startswith(head + v4.begin) and new.endswith(v4.end + tail)
    assert "Measured cells: 3 of 108 planned" in new


@pytest.mark.slow
def test_v3_block_of_results_md_is_what_the_shared_tables_render():
    """v3's tables moved to bench/results_tables.py: rendered from the committed v3 cells at the
    full bootstrap, its block of docs/RESULTS.md is unchanged to the byte (about a minute)."""
    proto = R.PROTOCOLS["v3"]
    page = (ROOT / "docs" / "RESULTS.md").read_text()
    assert page.split(proto.begin + "\n", 1)[1].split(proto.end, 1)[0] == V3.render_v3(H.load_cells(proto), proto)
