"""Protocol v3 (bench/results_v3.py) through bench/results.py: the plan, work folders, params, cost
estimate, status and the rendered table (fake cell JSONs in a tmp dir); the retired v1/v2 blocks
of docs/RESULTS.md are left byte-identical."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from glode.metrics import prf
from tests.bench_modules import load
from tests.params_fixture import write_params

ROOT = Path(__file__).resolve().parent.parent
R = load("results")
H = load("results_harness")
V3 = load("results_v3")
T = load("results_tables")
P = V3.PROTOCOL
SC = load("sentence_counts")


@pytest.fixture
def v3(monkeypatch, tmp_path):
    """Protocol v3 with its cells in a tmp dir and a cheap bootstrap."""
    proto = dataclasses.replace(R.PROTOCOLS["v3"], cells=tmp_path / "cells-v3")
    monkeypatch.setitem(R.PROTOCOLS, "v3", proto)
    monkeypatch.setitem(V3.V3_BOOTSTRAP, "n_resamples", 1000)
    undefine_paper(monkeypatch)  # the rendering tests below check how an undefined variant shows
    return proto


def define_paper(monkeypatch, overrides: dict | None) -> None:
    monkeypatch.setitem(V3.V3_VARIANTS, "paper", ("the paper's progressive mode (test definition)", overrides))


def undefine_paper(monkeypatch) -> None:
    define_paper(monkeypatch, None)


# --------------------------------------------------------------------------- plan and params


def test_the_paper_variant_is_the_pinned_paper_preset_at_the_default_rounds_budget():
    assert P.defined("paper") and ("hi", "paper", 2) in V3.plan_v3()
    o = P.overrides("paper", 1)
    assert all(o[k] == v for k, v in V3.PAPER_V3_PRESET.items() if k not in ("retrain.epochs", "denoise.visits"))
    assert P.rounds_of("paper") == ["r0", "r1", "r2", "r3"] and P.workdir("de", "paper", 1) == "de-s1"
    steps_per_epoch = math.ceil(V3.V3_SIZES["source_train"] / V3.TRAIN_BATCH)
    paper_steps = 3 * math.ceil(steps_per_epoch * o["retrain.epochs"] - 1e-9)  # glode.training's rounding
    assert abs(paper_steps - V3.V3_EPOCHS * steps_per_epoch) <= 3  # 378 against the default round's 376
    assert o["denoise.visits"] == pytest.approx(o["retrain.epochs"])  # equal source and target sizes


def test_plan_skips_an_undefined_variant_and_puts_seed_0_first(monkeypatch):
    undefine_paper(monkeypatch)
    plan = V3.plan_v3()
    assert not P.defined("paper")
    assert len(plan) == len(set(plan)) == 6 * 3 * 3 + 2 * 3
    assert all(v != "paper" for _, v, _ in plan)
    assert len(V3.plan_v3(include_undefined=True)) == len(plan) + 6 * 3
    first_seed1 = next(i for i, c in enumerate(plan) if c[2] == 1)
    assert {c[0] for c in plan[:first_seed1]} == set(H.ORDER) and all(c[2] == 0 for c in plan[:first_seed1])
    ablations = [c for c in plan if c[1] in V3.V3_ABLATIONS]
    assert sorted(ablations) == sorted((lang, v, 0) for lang in ("de", "ar") for v in ("global", "local", "nomlm"))
    for lang in H.ORDER:
        for seed in V3.V3_SEEDS:
            assert plan.index((lang, "zeroshot", seed)) < plan.index((lang, "default", seed))


def test_paper_once_defined_is_planned_with_its_rounds(monkeypatch):
    define_paper(monkeypatch, {"retrain.init": "previous", "rounds": 4})
    assert ("de", "paper", 2) in V3.plan_v3()
    assert P.rounds_of("paper") == ["r0", "r1", "r2", "r3", "r4"]
    names = H.stage_names(P.rounds_of("paper"))
    assert [n for n in names if n.startswith("evaluate")] == ["evaluate@r0", "evaluate@r4"]
    assert names.count("train_target@r3") == 1
    assert P.overrides("paper", 1)["rounds"] == 4 and P.overrides("paper", 1)["train.seed"] == 1
    assert P.workdir("de", "paper", 1) == "de-s1"  # shares seed 1's r0
    define_paper(monkeypatch, {"train.epochs": 1, "rounds": 10})
    assert P.workdir("de", "paper", 1) == "de-s1-paper"  # changes r0: its own folder


def test_workdirs_per_seed_and_r0_changing_variants(monkeypatch):
    assert {P.workdir("ar", v, 2) for v in ("zeroshot", "plain", "default", "global", "local")} == {"ar-s2"}
    assert P.workdir("ar", "nomlm", 0) == "ar-s0-nomlm"
    assert P.rounds_of("zeroshot") == ["r0"] and P.rounds_of("default") == ["r0", "r1"]
    undefine_paper(monkeypatch)
    with pytest.raises(KeyError, match="not defined"):
        P.overrides("paper", 0)


def test_write_params_sets_seed_epochs_and_the_round_chain(tmp_path):
    write_params(tmp_path / "params.yaml")  # the schema defaults, not the working tree's params.yaml
    params = H.write_params(tmp_path, "zh", {**P.overrides("plain", 2), "denoise.gate": "none"})
    written = yaml.safe_load((tmp_path / "params.yaml").read_text())
    assert written == params
    assert params["train"]["seed"] == 2 and params["train"]["epochs"] == V3.V3_EPOCHS
    assert params["rounds"] == {"r1": {"prev": "r0"}}
    assert params["models"] == {"r0": {"prev": "source"}, "r1": {"prev": "r0"}}
    assert params["denoise"]["use-global"] is False and params["target"] == "zh"
    assert params["denoise"]["gate"] == "none"
    params = H.write_params(tmp_path, "zh", {"rounds": 3})  # from the kept snapshot defaults again
    assert list(params["rounds"]) == ["r1", "r2", "r3"] and params["rounds"]["r3"] == {"prev": "r2"}
    assert params["denoise"]["gate"] == "agree"
    with pytest.raises(KeyError, match="no such parameter"):
        H.write_params(tmp_path, "zh", {"train.no-such-key": 1})


# --------------------------------------------------------------------------- estimate


def _fake_v2(seconds: dict[str, float]) -> dict:
    """v2 cells whose stages all ran with the given seconds per kind, for every language."""
    cells = {}
    for lang in H.ORDER:
        stages = {k: {"seconds": v, "ran": True} for k, v in seconds.items() if k in ("prepare", "encoder", "train_source",
                                                                                      "initial_labels")}
        stages |= {f"{k}@r{i}": {"seconds": v, "ran": True} for k, v in seconds.items()
                   for i in (1, 2) if k in ("pseudo_label", "denoise", "train_target")}
        stages |= {f"evaluate@r{i}": {"seconds": seconds["evaluate"], "ran": True} for i in (0, 1, 2)}
        cells[(lang, "glode")] = {"stages": stages}
    return cells


def test_estimate_arithmetic_on_round_numbers(monkeypatch):
    s = {"prepare": 1, "encoder": 9, "train_source": 564, "initial_labels": 20, "pseudo_label": 40, "denoise": 10,
         "train_target": 846, "evaluate": 10}
    est = V3.estimate_v3(_fake_v2(s))
    f = est["steps_per_round"] / V3.V2_TRAIN_STEPS
    assert est["steps_per_round"] == V3.V3_EPOCHS * math.ceil(3000 / 16) == 376
    ev = {lang: 10 * min(3000, V3.TEST_AVAILABLE[lang]) / 1000 for lang in H.ORDER}
    r0 = V3.CHECK_S + 1 + 9 + 564 * f + 20 + ev["de"]
    c = est["cells"]
    assert c[("de", "zeroshot", 0)] == pytest.approx(r0 + ev["de"])  # r0's stages, then its counts
    round_cost = 10 + 846 * f + 2 * ev["de"]
    assert c[("de", "plain", 0)] == pytest.approx(40 + round_cost)  # pays the round's shared pseudo labels
    assert c[("de", "default", 0)] == pytest.approx(round_cost)
    paper = P.overrides("paper", 0)["retrain.epochs"] / V3.V3_EPOCHS  # each round's share of a default round
    assert c[("de", "paper", 0)] == pytest.approx(3 * 10 + 2 * 40 + 3 * 846 * f * paper + 2 * ev["de"])
    assert c[("de", "nomlm", 0)] == pytest.approx(r0 + 40 + round_cost)  # its own folder and r0
    assert c[("hi", "default", 1)] == pytest.approx(10 + 846 * f + 2 * 10)  # hi has 1000 test sentences
    assert est["filled"] == []
    undefine_paper(monkeypatch)
    assert V3.estimate_v3(_fake_v2(s))["cells"][("de", "paper", 0)] == pytest.approx(round_cost)  # as a default round


def test_estimate_from_the_committed_v2_cells_fits_the_budget():
    est = V3.estimate_v3(V3.load_v2_cells())
    assert len(est["cells"]) == 78
    assert 10 * 3600 < est["total_s"] < 15 * 3600
    assert "es train_source" in est["filled"]  # es's r0 stages were not recorded in v2
    text = V3.render_estimate(est)
    assert "an estimate" in text and f"**{est['total_s'] / 3600:.1f}**" in text


# --------------------------------------------------------------------------- status and run


def test_status_lists_pending_and_says_paper_is_skipped(v3, capsys):
    assert R.main(["--protocol", "v3", "status"]) == 0
    out = capsys.readouterr().out
    assert "de:zeroshot  s0 pending" in out
    assert "skipped: paper (18 cells): not defined yet" in out
    assert "pending: 60 cells" in out and "estimate" in out


def test_run_refuses_undefined_and_unknown_cells(v3, tmp_path, capsys):
    work = ["--workdir", str(tmp_path / "work")]
    assert R.main(["--protocol", "v3", "run", "--only", "de:paper:0", *work]) == 2
    assert "not defined yet" in capsys.readouterr().err
    assert R.main(["--protocol", "v3", "run", "--only", "de:glode:0", *work]) == 2
    assert R.main(["--protocol", "v3", "run", "--only", "xx:default:0", *work]) == 2
    assert not (tmp_path / "work" / "v3").exists() and not v3.cells.exists()


def test_only_without_a_seed_means_every_planned_seed():
    proto = R.PROTOCOLS["v3"]
    assert R.parse_only(proto, ["de:default"]) == [("de", "default", s) for s in V3.V3_SEEDS]
    assert R.parse_only(proto, ["ar:local"]) == [("ar", "local", 0)]
    assert R.parse_only(proto, ["de:plain:2"]) == [("de", "plain", 2)]
    assert R.parse_only(R.PROTOCOLS["x4"], ["ar:views-ce"]) == [("ar", "views-ce", 0)]  # no plan: seed 0


def test_each_registered_protocol_is_its_own_module_named_after_it():
    for name, proto in R.PROTOCOLS.items():
        assert proto.name == name and (ROOT / proto.source).is_file()
        assert load(f"results_{name}").PROTOCOL is proto
        assert proto.begin.startswith(f"<!-- results-{name}:begin") and proto.end == f"<!-- results-{name}:end -->"


def test_an_exploration_has_no_plan_so_status_lists_its_cells_and_estimate_refuses(monkeypatch, tmp_path, capsys):
    x4 = dataclasses.replace(R.PROTOCOLS["x4"], cells=tmp_path / "explore")
    monkeypatch.setitem(R.PROTOCOLS, "x4", x4)
    x4.cells.mkdir()
    x4.cell_path("ar", "views-ref", 0).write_text(json.dumps({"language": "ar", "variant": "views-ref", "seed": 0}))
    assert R.main(["--protocol", "x4", "status"]) == 0
    assert capsys.readouterr().out == "ar:views-ref s0 measured (not planned)\n"
    assert R.main(["--protocol", "x4", "estimate"]) == 2
    assert "no plan" in capsys.readouterr().err
    assert R.main(["--protocol", "x4", "run", "--workdir", str(tmp_path / "work")]) == 2  # names no cell
    assert x4.overrides("views-ref", 0)["train.epochs"] == 3 and "retrain.target-loss" in x4.overrides("views-ref", 0)


# --------------------------------------------------------------------------- rendering


N_SENT = 40


def _counts(rng, gold, skill):
    tp = rng.binomial(gold, skill)
    return np.stack([tp, tp + rng.integers(0, 2, size=len(gold)), gold], axis=1)


def _cell(lang, variant, seed, counts, r0_f1=None):
    rounds = P.rounds_of(variant)
    f1 = prf(*(int(x) for x in counts.sum(0)))["f1"]
    per_round = {r: {"f1": f1 if r == rounds[-1] else r0_f1, "pseudo_label_f1": 0.5 + 0.01 * i, "optimizer_steps": 376}
                 for i, r in enumerate(rounds)}
    stage = {"seconds": 60.0, "ran": True, "peak_rss_mb": 1000.0 + seed, "load_before": 1.5}
    return {"language": lang, "variant": variant, "seed": seed, "commit": "0123456789abcdef", "protocol": "v3",
            "machine": {"cpu": "test cpu"}, "rounds": per_round, "stages": {"train_target@r1": stage, "evaluate@r1": stage},
            "sentence_counts": {rounds[-1]: SC.encode_counts(counts)}}


def write_fake_cells(proto, skip=()) -> dict:
    """zeroshot < plain < default on every target and seed (default one more tp per sentence
    wherever it can), the de/ar ablations on seed 0; returns the cells written."""
    rng = np.random.default_rng(0)
    proto.cells.mkdir(parents=True, exist_ok=True)
    written = {}
    for t, lang in enumerate(H.ORDER):
        gold = rng.integers(1, 4, size=N_SENT)
        for seed in V3.V3_SEEDS:
            zs = _counts(rng, gold, 0.3)
            plain = _counts(rng, gold, 0.5)
            default = plain.copy()
            default[:, 0] = np.minimum(default[:, 0] + 1, np.minimum(default[:, 1], default[:, 2]))
            r0 = prf(*(int(x) for x in zs.sum(0)))["f1"]
            for variant, counts in (("zeroshot", zs), ("plain", plain), ("default", default)):
                written[(lang, variant, seed)] = _cell(lang, variant, seed, counts, r0)
            if seed == 0 and lang in H.ABLATION_LANGS:
                for variant in V3.V3_ABLATIONS:
                    written[(lang, variant, seed)] = _cell(lang, variant, seed, _counts(rng, gold, 0.4), r0)
    for key, cell in written.items():
        if key not in skip:
            proto.cell_path(*key).write_text(json.dumps(cell))
    return {k: v for k, v in written.items() if k not in skip}


def test_render_all_pending_today(v3):
    text = V3.render_v3(H.load_cells(v3), v3)
    assert "Measured cells: 0 of 60 planned; skipped, definition missing: paper (18 cells" in text
    table = text.split("### Paired bootstrap")[0].split("(n seeds)")[1]
    assert "*pending* (not defined yet)" in table and "±" not in table and "." not in table
    assert "| de (CoNLL) | *pending* | *pending* | *pending* |" in table
    assert text.count("*pending* (0/6 targets)") == 2 + 3 + 4  # the three-seed tables' 2 + 3 columns, seed 0's 4
    assert "Estimated cost" in text


def test_render_fake_cells_mean_sd_and_bootstrap(v3):
    bs = load("bootstrap")
    cells = write_fake_cells(v3)
    text = V3.render_v3(H.load_cells(v3), v3)
    f1s = [cells[("nl", "default", s)]["rounds"]["r1"]["f1"] for s in V3.V3_SEEDS]
    expected = f"{100 * np.mean(f1s):.1f} ± {100 * np.std(f1s, ddof=1):.1f} (n=3)"
    row = next(line for line in text.splitlines() if line.startswith("| nl (CoNLL)"))
    assert row.split(" | ")[3] == expected
    assert row.split(" | ")[4].startswith("*pending* (not defined yet)")  # paper: never filled
    per_seed_avg = [np.mean([cells[(lang, "plain", s)]["rounds"]["r1"]["f1"] for lang in H.ORDER]) for s in V3.V3_SEEDS]
    avg_row = next(line for line in text.splitlines() if line.startswith("| **average** | **"))
    assert avg_row.split(" | ")[2] == f"**{100 * np.mean(per_seed_avg):.1f} ± {100 * np.std(per_seed_avg, ddof=1):.1f} (n=3)**"
    boot = text.split("### Paired bootstrap")[1].split("###")[0]
    for line in [ln for ln in boot.splitlines() if ln.startswith("| ") and not ln.startswith("| target")][1:]:
        for interval in line.split(" | ")[1:]:
            low = float(interval.strip("* |").split("[")[1].split(",")[0])
            assert low > 0, line  # default beats plain and zero-shot on every resample
    assert "| **average** | **+" in boot
    other = text.split("### All seeds, the other pairs: paired bootstrap")[1].split("###")[0]
    assert "| target | plain − zero-shot | paper − plain | paper − default |" in other
    counts = {v: np.stack([SC.decode_counts(cells[("nl", v, s)]["sentence_counts"]["r1" if v != "zeroshot" else "r0"])
                           for s in V3.V3_SEEDS]) for v in ("plain", "zeroshot")}
    nl = next(line for line in other.splitlines() if line.startswith("| nl |")).split(" | ")
    assert nl[1].startswith(f"{100 * (bs.mean_f1(counts['plain']) - bs.mean_f1(counts['zeroshot'])):+.1f} [")
    assert nl[2].strip(" |") == "*pending*"  # paper: not defined in this fake plan
    assert "| de | global (one seed) | 1 of 1 |" in text and "| ar | nomlm (one seed) | 1 of 1 |" in text
    assert "Measured cells: 60 of 60 planned" in text and "test cpu" in text and "| 376 |" in text


def test_render_partial_seeds_are_said_and_block_the_bootstrap(v3):
    write_fake_cells(v3, skip={("de", "plain", 1), ("es", "default", 0), ("es", "default", 1), ("es", "default", 2)})
    text = V3.render_v3(H.load_cells(v3), v3)
    de = next(line for line in text.splitlines() if line.startswith("| de (CoNLL)"))
    assert "(n=2 of 3)" in de.split(" | ")[2]
    es = next(line for line in text.splitlines() if line.startswith("| es (CoNLL)"))
    assert es.split(" | ")[3] == "*pending*"
    boot = text.split("### Paired bootstrap")[1].split("###")[0]
    assert "| de | *pending* | +" in boot  # default − plain needs every seed of plain; zero-shot has them
    assert "| es | *pending* | *pending* |" in boot
    assert "| **average** | *pending* (4/6 targets) | *pending* (5/6 targets) |" in boot


def test_interim_seed_0_bootstrap_fills_before_the_other_seeds(v3):
    """Seed 0 alone fills the interim table (its own computation, checked against bootstrap.py),
    while the three-seed table stays pending; a variant without seed 0 stays pending there too."""
    bs = load("bootstrap")
    cells = write_fake_cells(v3, skip={(lang, v, s) for lang in H.ORDER for v in ("zeroshot", "plain", "default")
                                       for s in V3.V3_SEEDS[1:]} | {("hi", "plain", 0)})
    text = V3.render_v3(H.load_cells(v3), v3)
    boot = text.split("### Paired bootstrap")[1].split("###")[0]
    assert "| de | *pending* | *pending* |" in boot
    interim = text.split("### Interim, seed 0 only: paired bootstrap")[1].split("###")[0]
    assert "| target | default − plain | default − zero-shot | plain − zero-shot | paper − plain |" in interim
    de = next(line for line in interim.splitlines() if line.startswith("| de |")).split(" | ")
    counts = {v: np.stack([SC.decode_counts(cells[("de", v, 0)]["sentence_counts"]["r1" if v != "zeroshot" else "r0"])])
              for v in ("default", "plain")}
    point = 100 * (bs.mean_f1(counts["default"]) - bs.mean_f1(counts["plain"]))
    assert de[1].startswith(f"{point:+.1f} [")
    assert float(de[2].split(" [")[0]) > 0 and de[4].strip(" |") == "*pending*"  # paper: not defined here
    hi = next(line for line in interim.splitlines() if line.startswith("| hi |")).split(" | ")
    assert hi[1] == "*pending*" and hi[2] != "*pending*"
    assert "| **average** | *pending* (5/6 targets) | **+" in interim


RETIRED_BLOCKS = (("<!-- results:begin (bench/results.py render) -->", "<!-- results:end -->"),  # v1
                  ("<!-- results-v2:begin (bench/results.py render) -->", "<!-- results-v2:end -->"))


def test_cmd_render_rewrites_v3_and_keeps_the_retired_v1_v2_blocks(v3, monkeypatch, tmp_path):
    page = tmp_path / "RESULTS.md"
    original = (ROOT / "docs" / "RESULTS.md").read_text()
    page.write_text(original)
    monkeypatch.setattr(R, "RESULTS_MD", page)
    write_fake_cells(v3)
    assert R.main(["--protocol", "v3", "render"]) == 0
    new = page.read_text()
    for begin, end in RETIRED_BLOCKS:
        block = lambda s: s.split(begin, 1)[1].split(end, 1)[0]  # noqa: E731
        assert block(original).count("|") > 100 and block(new) == block(original)
    v3_block = new.split(v3.begin, 1)[1].split(v3.end, 1)[0]
    assert "Measured cells: 60 of 60" in v3_block
    assert new.split(v3.begin)[0] == original.split(v3.begin)[0]


# --------------------------------------------------------------------------- a real cell, tiny


@pytest.mark.slow
def test_tiny_cells_run_share_r0_and_store_checked_counts(v3, monkeypatch, tmp_path):
    """zeroshot, plain and default of one (target, seed) on tiny synthetic data and the tiny
    random encoder, through `run`: the variants share r0, the stored per-sentence counts
    reproduce each cell's F1, and a second run measures nothing again."""
    from tests.synthetic import all_words, write_corpus
    from tests.tiny_encoder import build_tiny_encoder

    shared = tmp_path / "shared"
    for path, n, seed in (("wikiann/en/train.txt", 48, 1), ("wikiann/en/dev.txt", 12, 2),
                          ("wikiann/ar/train.txt", 24, 3), ("wikiann/ar/test.txt", 20, 4)):
        write_corpus(shared / path, n, seed=seed)
    encoder = build_tiny_encoder(tmp_path / "tiny-encoder", words=all_words())
    tiny = {"encoder.name": str(encoder), "train.batch-size": 8, "denoise.dim": 16, "k": 5}
    for name in ("zeroshot", "plain", "default"):
        desc, own = V3.V3_VARIANTS[name]
        monkeypatch.setitem(V3.V3_VARIANTS, name, (desc, {**tiny, **own}))
    tiny_sizes = {"source_train": 40, "source_dev": 12, "target_unlabelled": 24, "target_test": 16}
    monkeypatch.setitem(R.PROTOCOLS, "v3", dataclasses.replace(v3, epochs=1, sizes=tiny_sizes))
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + ":" + os.environ["PATH"])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    only = [a for v in ("zeroshot", "plain", "default") for a in ("--only", f"ar:{v}:0")]
    args = ["--protocol", "v3", "run", *only, "--workdir", str(tmp_path / "work"), "--shared", str(shared)]
    assert R.main(args) == 0
    cells = H.load_cells(v3)
    assert set(cells) == {("ar", v, 0) for v in ("zeroshot", "plain", "default")}
    for (_, variant, _), c in cells.items():
        last = P.rounds_of(variant)[-1]
        counts = SC.decode_counts(c["sentence_counts"][last])
        assert len(counts) == 16 == c["sentences"]["target_test"]
        assert prf(*(int(x) for x in counts.sum(0)))["f1"] == c["rounds"][last]["f1"]
        assert c["workdir"] == "ar-s0" and c["overrides"]["train.seed"] == 0
        assert c["rounds"]["r0"]["f1"] == cells[("ar", "zeroshot", 0)]["rounds"]["r0"]["f1"]
    assert cells[("ar", "zeroshot", 0)]["stages"]["train_source"]["ran"]
    for variant in ("plain", "default"):  # r0 is shared: DVC skipped it
        assert not cells[("ar", variant, 0)]["stages"]["train_source"]["ran"]
        assert cells[("ar", variant, 0)]["stages"]["train_target@r1"]["ran"]
    assert cells[("ar", "plain", 0)]["stages"]["pseudo_label@r1"]["ran"]
    assert not cells[("ar", "default", 0)]["stages"]["pseudo_label@r1"]["ran"]  # the round's pseudo labels too
    assert cells[("ar", "default", 0)]["rounds"]["r1"]["optimizer_steps"] == 5  # ceil(40 / 8) x 1 epoch
    mtimes = {p: p.stat().st_mtime for p in v3.cells.glob("*.json")}
    assert R.main(args) == 0  # resumable: measured cells are not rerun
    assert {p: p.stat().st_mtime for p in v3.cells.glob("*.json")} == mtimes


def test_two_whole_seeds_add_a_two_seed_interim_table_and_per_seed_averages(v3):
    """Seeds 0 and 1 whole, seed 2 partial: a seeds-0-and-1 interim table appears (its point is
    the mean of the two seeds' differences), per-seed averages fill for 0 and 1 only, and the
    three-seed table stays pending."""
    bs = load("bootstrap")
    cells = write_fake_cells(v3, skip={(lang, "plain", 2) for lang in H.ORDER[:3]})
    loaded = H.load_cells(v3)
    assert T.complete_seed_prefix(V3.TABLES, loaded) == (0, 1)
    text = V3.render_v3(loaded, v3)
    two = text.split("### Interim, seeds 0 and 1: paired bootstrap")[1].split("###")[0]
    nl = next(line for line in two.splitlines() if line.startswith("| nl |")).split(" | ")
    stack = {v: np.stack([SC.decode_counts(cells[("nl", v, s)]["sentence_counts"]["r1"]) for s in (0, 1)])
             for v in ("default", "plain")}
    assert nl[1].startswith(f"{100 * (bs.mean_f1(stack['default']) - bs.mean_f1(stack['plain'])):+.1f} [")
    assert "| **average** | **+" in two
    per_seed = text.split("### Six-target average test F1 per seed (%)")[1].split("###")[0]
    avg1 = np.mean([cells[(lang, "plain", 1)]["rounds"]["r1"]["f1"] for lang in H.ORDER])
    row1 = next(line for line in per_seed.splitlines() if line.startswith("| 1 |")).split(" | ")
    assert row1[2] == f"{100 * avg1:.1f}"
    row2 = next(line for line in per_seed.splitlines() if line.startswith("| 2 |")).split(" | ")
    assert row2[2] == "*pending* (3 of 6)" and row2[1] != row2[2]
    assert "| de | *pending* |" in text.split("### Paired bootstrap")[1].split("###")[0]


def test_one_whole_seed_adds_no_second_interim_table(v3):
    write_fake_cells(v3, skip={(lang, v, s) for lang in H.ORDER for v in ("zeroshot", "plain", "default")
                               for s in V3.V3_SEEDS[1:]})
    text = V3.render_v3(H.load_cells(v3), v3)
    assert T.complete_seed_prefix(V3.TABLES, H.load_cells(v3)) == (0,)
    assert "### Interim, seed 0 only" in text and "### Interim, seeds" not in text


def _labelled_round(hard, soft, brier):
    """A cell's r1 pseudo-label record: (before, after) for hard F1, soft F1 and Brier."""
    return {"rounds": {"r1": {"pseudo_label": {
        "before": {"f1": hard[0]}, "after": {"f1": hard[1]},
        "soft_before": {"f1": soft[0], "brier": brier[0]}, "soft_after": {"f1": soft[1], "brier": brier[1]}}}}}


def test_denoise_effect_table_counts_targets_raised_on_every_seed():
    up = _labelled_round((0.50, 0.52), (0.40, 0.41), (0.020, 0.019))
    down_soft = _labelled_round((0.50, 0.52), (0.40, 0.39), (0.020, 0.021))
    cells = {(lang, "default", s): up for lang in H.ORDER for s in V3.V3_SEEDS}
    cells[("es", "default", 1)] = down_soft  # one seed's soft F1 falls: es does not count
    del cells[("zh", "default", 2)]  # not measured: pending, and zh does not count
    text = "\n".join(T.render_denoise_effect(V3.TABLES, cells, "default", goal=V3.V3_DENOISE_GOAL))
    de = next(line for line in text.splitlines() if line.startswith("| de |"))
    assert de == "| de | r1 | +2.0 / +2.0 / +2.0 | +1.0 / +1.0 / +1.0 | -1.00 / -1.00 / -1.00 |"
    es = next(line for line in text.splitlines() if line.startswith("| es |"))
    assert "+1.0 / -1.0 / +1.0" in es and "+1.00" in es
    assert "*pending*" in next(line for line in text.splitlines() if line.startswith("| zh |"))
    assert f"r1: {len(H.ORDER) - 2} of {len(H.ORDER)}" in text
