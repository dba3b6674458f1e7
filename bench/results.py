"""Issue 5's benchmark table: glode variants and the Hugging Face reference on the real corpora.

    python bench/results.py run                 # every pending cell, in priority order
    python bench/results.py run --only de:glode --only ar:hf
    python bench/results.py status              # which cells are measured, which pending
    python bench/results.py render              # docs/RESULTS.md from bench/results/cells-v2/ (and cells/)
    python bench/results.py --protocol v1 status  # the first protocol's cells (kept as history)
    python bench/results.py --protocol v3 status    # v3: measured / pending / skipped cells, hours left
    python bench/results.py --protocol v3 estimate  # v3's cost estimate and its arithmetic
    python bench/results.py --protocol v3 run --only de:zeroshot:0 --only de:default:0

Protocol (fixed so results stay comparable): English source = the first 3000 sentences of
`conll/en` (CoNLL targets de/es/nl, PER/ORG/LOC/MISC) or `wikiann/en` (WikiAnn targets ar/hi/zh,
PER/ORG/LOC); source dev = the first 1000 English dev sentences; target unlabelled corpus = the
first 3000 sentences of the target's train split; target test = its first 1000 test sentences.
The snapshot's own defaults otherwise, except the span cap: the
smallest cap holding >= 95% of the English source entities (CoNLL 4 words, WikiAnn 6 words;
zh 10 characters through `model.char-languages`).

Two protocols share this code. v1 (kept as history, snapshot 6f25473): 1 epoch, GLoDe updating the
previous round's labels, no gate, plus the 3-epoch budget-check variants. v2 (current): the
defaults since 2a386b8 (3 epochs, denoise.start=model, denoise.gate=agree) for every cell, the
reference trained for the same 3 epochs; all v2 cells must come from one snapshot commit.

Each target language gets a work folder (default `../bench-work/<lang>`, v2 `../bench-work/v2/<lang>`, outside the project:
CoNLL text must not enter the repository) holding a snapshot of the project at one commit
(`git archive`), the corpus slices and a DVC project without git. The snapshot is put first on
PYTHONPATH, so edits to the live checkout never leak into a running benchmark. A cell is one
(language, variant); it writes `params.yaml`, runs the stages one by one with
`dvc repro --single-item` (DVC skips what is unchanged, so variants share r0), times each stage
and records its peak RSS, then stores everything in `bench/results/cells[-v2]/<lang>-<variant>.json`.
Measured cells are never rerun (resumable across sessions); `--force` reruns them.

Protocol v3 (issue 19; cells in `bench/results/cells-v3/<lang>-<variant>-s<seed>.json`): a cell is
(language, variant, seed), the seed being `train.seed` (r0 changes with it). Variants on all six
targets: `zeroshot` (r0), `plain`, `default` (the snapshot's params.yaml defaults, whatever they are
then) and `paper` (PAPER_MODE: a placeholder until the progressive mode exists; the plan skips it and
`status` says so); ablations `global`, `local`, `nomlm` on de and ar with seed 0 only. Settings:
seeds 0, 1, 2; 2 epochs for r0 and every round (376 optimiser steps per round); 1 round; 3000 source,
1000 source dev and 3000 target sentences; up to 3000 test sentences (es has 1517, hi 1000). Only r0
and the last round are scored on the test set. Work folders: `../bench-work/v3/<lang>-s<seed>`, one
per (language, seed), so the variants of a seed share its r0 as in v1/v2 (DVC skips unchanged stages)
and seeds share nothing but the corpus slices; a variant that changes what r0 reads (nomlm) gets
`<lang>-s<seed>-<variant>`. (Per-seed DVC experiments are not an option: the work folders are DVC
projects without git, so that only the pinned `git archive` snapshot runs, and `dvc exp` needs git.)
After the evaluate stages, bench/sentence_counts.py (run with the snapshot first on PYTHONPATH)
reloads the last model and the test table with glode's functions and stores per test sentence
(tp, predicted, gold) in the cell JSON; the sums must reproduce the stage's P/R/F1 exactly or the
cell fails. bench/bootstrap.py turns them into paired bootstrap intervals when rendering.

v3's size is an estimate from the committed v2 cells (`estimate` prints it; nothing was measured
for it): per language the median wall time of each stage kind over the v2 GLoDe/plain/global/local
stages that ran; training scaled by optimiser steps (v3 376 / v2 564 = 2/3: a v2 round's train_target
of 488 (ar) to 1255 s (es), median per language, becomes 325 to 837 s), test scoring by test sentences / 1000,
twice (the evaluate stage, then the per-sentence counts); r0's stages and the first round's pseudo
labels run once per work folder. Summed over the 78 cells of the plan (60 defined + 18 `paper` cells
costed as one default round): de 3.0 h, es 3.0, nl 2.1, ar 1.8, hi 1.4, zh 2.2 = 13.5 h of the 2-core
machine (3.1 h of it the paper cells), within the issue's ~15 h. The alternatives cost 18.9 h (3
epochs, 1 round), 23.4 h (2 epochs, 2 rounds) and 33.3 h (v2's 3 epochs and 2 rounds); 1 epoch is far
from converged (v1). v2's second round added nothing on the average (plain 58.2 -> 58.3, GLoDe 58.1
-> 58.0), so v3 spends the budget on seeds and test sentences instead.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from glode.presets import PRESETS  # noqa: E402

RESULTS_MD = ROOT / "docs" / "RESULTS.md"

SOURCE_SENTENCES = 3000
SOURCE_DEV_SENTENCES = 1000
TARGET_SENTENCES = 3000
TEST_SENTENCES = 1000

LANGUAGES = {  # target -> (corpus family, entity types, span cap in words)
    "de": ("conll", ["PER", "ORG", "LOC", "MISC"], 4),
    "es": ("conll", ["PER", "ORG", "LOC", "MISC"], 4),
    "nl": ("conll", ["PER", "ORG", "LOC", "MISC"], 4),
    "ar": ("wikiann", ["PER", "ORG", "LOC"], 6),
    "hi": ("wikiann", ["PER", "ORG", "LOC"], 6),
    "zh": ("wikiann", ["PER", "ORG", "LOC"], 6),
}
ZH_CHAR_CAP = 10

NO_DENOISING = {"denoise.use-global": False, "denoise.use-local": False, "denoise.start": "model"}
THREE_EPOCHS = {"train.epochs": 3}
VARIANTS = {  # name -> (description, params overrides, rounds evaluated)
    "hf": ("Hugging Face token classification, zero-shot", None, []),
    "hf3": ("Hugging Face token classification, 3 epochs (the Trainer's default): is the reference budget-bound?", None, []),
    "steps": ("training step times: glode NER step vs the HF token-classification step, same batches", None, []),
    "zeroshot": ("glode r0: the source model, zero-shot", {}, ["r0"]),
    "zeroshot3": ("glode r0 trained for 3 epochs (pairs with hf3)", THREE_EPOCHS, ["r0"]),
    "glode": ("GLoDe: global + local denoising + MLM, 2 rounds", {}, ["r0", "r1", "r2"]),
    "plain": ("plain self-training: each round relabelled by the previous model, no denoising",
              NO_DENOISING, ["r0", "r1", "r2"]),
    "global": ("global view only", {"denoise.use-local": False}, ["r0", "r1", "r2"]),
    "local": ("local view only", {"denoise.use-global": False}, ["r0", "r1", "r2"]),
    "nomlm": ("GLoDe without the MLM loss (r0 too)", {"train.mlm-weight": 0.0}, ["r0", "r1", "r2"]),
    "glode3": ("GLoDe with 3 epochs for r0 and every round: does a converged source model change the verdict?",
               THREE_EPOCHS, ["r0", "r1", "r2"]),
    "plain3": ("plain self-training with 3 epochs for r0 and every round (pairs with glode3)",
               {**THREE_EPOCHS, **NO_DENOISING}, ["r0", "r1", "r2"]),
    "fresh3": ("GLoDe denoising the previous model's fresh pseudo labels each round (denoise.start=model), 3 epochs",
               {**THREE_EPOCHS, "denoise.start": "model"}, ["r0", "r1", "r2"]),
}
# 3-epoch variants get their own folder: their r0 must not replace the 1-epoch r0 the others share
WORKDIR_SUFFIX = {name: "-e3" for name, (_, overrides, _) in VARIANTS.items() if (overrides or {}).get("train.epochs") == 3}
# the 3-epoch variants that run rounds (they share zeroshot3's r0)
THREE_EPOCH_ROUNDS = tuple(name for name in WORKDIR_SUFFIX if len(VARIANTS[name][2]) > 1)
# r0-only variants whose row is left out when a full run of the same r0 shows it
R0_SHOWN_BY = {"zeroshot": ("glode",), "zeroshot3": THREE_EPOCH_ROUNDS}
ORDER = ["de", "es", "nl", "ar", "hi", "zh"]
ABLATION_LANGS = ["de", "ar"]


def plan_v1() -> list[tuple[str, str]]:
    """v1 cells in priority order: cheap columns for every language first, ablations last."""
    cells = [(lang, "hf") for lang in ORDER] + [("de", "steps")] + [(lang, "zeroshot") for lang in ORDER]
    cells += [("nl", "hf3")]  # the 1-epoch reference found no entity at all in nl: is it budget-bound?
    cells += [("de", "glode"), ("nl", "zeroshot3")]  # ... and is glode's r0 too?
    cells += [(lang, "glode") for lang in ORDER[1:]] + [(lang, "plain") for lang in ORDER]
    cells += [(lang, v) for lang in ABLATION_LANGS for v in ("global", "local", "nomlm")]
    cells += [("de", "hf3"), ("ar", "hf3")]  # the same check where the reference did find entities
    # GLoDe lost to zero-shot at 1 epoch on de and ar: does it still with a converged r0?
    cells += [("ar", "zeroshot3"), ("ar", "glode3"), ("ar", "plain3"), ("de", "zeroshot3"), ("de", "glode3"), ("de", "plain3")]
    # GLoDe's r2 labels (last round's, refined again) were worse than the r1 model's own predictions
    # on every language (bench/denoise_replay.py): does denoising the fresh predictions fix r2?
    cells += [("ar", "fresh3"), ("de", "fresh3")]
    return cells


def plan_v2() -> list[tuple[str, str]]:
    """v2 cells in priority order: GLoDe (with its r0, the zero-shot column) on every language
    first, starting where v1 GLoDe lost (de, ar); then plain self-training, the reference,
    the step times, the ablations."""
    first = ["de", "ar", "hi", "zh", "es", "nl"]
    cells = [(lang, "glode") for lang in first] + [(lang, "plain") for lang in first]
    cells += [(lang, "hf") for lang in ORDER] + [("de", "steps")]
    cells += [(lang, v) for lang in ABLATION_LANGS for v in ("global", "local", "nomlm")]
    return cells


@dataclass(frozen=True)
class Protocol:
    """One fixed benchmark protocol: its cells, work folders and place in docs/RESULTS.md.

    A cell's key is (language, variant) in v1/v2 and (language, variant, seed) in v3."""

    name: str
    cells: Path  # raw JSON per cell
    work_subdir: str  # under --workdir
    plan: Callable[[], list[tuple]]
    begin: str  # render markers in docs/RESULTS.md
    end: str
    seeded: bool = False  # cells carry a training seed (v3)
    explore: bool = False  # x3: exploration at v3's sizes, the checkout's code, no pinned commit, no planned table
    epochs: int = 2  # train.epochs of r0 and every round (V3_EPOCHS; x4 explores at the README's 3)

    def cell_path(self, lang: str, variant: str, seed: int | None = None) -> Path:
        return self.cells / (f"{lang}-{variant}.json" if seed is None else f"{lang}-{variant}-s{seed}.json")

    def key(self, cell: dict) -> tuple:
        return (cell["language"], cell["variant"], cell["seed"]) if self.seeded else (cell["language"], cell["variant"])

    @property
    def variants(self) -> dict:
        if self.explore:
            return {**V3_VARIANTS, **X3_VARIANTS, **X4_VARIANTS}
        return V3_VARIANTS if self.seeded else VARIANTS


# --------------------------------------------------------------------------- work folders


def _head_commit() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def _slice_conll(src: Path, dst: Path, n: int) -> int:
    """The first n sentences of a CoNLL file (blank-line separated), byte for byte."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    kept, in_sentence = 0, False
    with open(src, encoding="utf-8") as fin, open(dst, "w", encoding="utf-8") as fout:
        for line in fin:
            if line.strip():
                if not in_sentence and kept == n:
                    break
                in_sentence = True
                fout.write(line)
            elif in_sentence:
                fout.write("\n")
                kept += 1
                in_sentence = False
        else:
            if in_sentence:
                fout.write("\n")
                kept += 1
    return kept


V2_SIZES = {"source_train": SOURCE_SENTENCES, "source_dev": SOURCE_DEV_SENTENCES,
            "target_unlabelled": TARGET_SENTENCES, "target_test": TEST_SENTENCES}


def setup_workdir(lang: str, workroot: Path, shared: Path, commit: str, suffix: str = "", sizes: dict | None = None,
                  name: str | None = None) -> Path:
    """Create (once) the language's work folder: project snapshot, corpus slices, DVC without git.
    ``sizes``: sentences per slice (default: protocols v1/v2's); ``name``: the folder's name
    (default: the language plus ``suffix``)."""
    sizes = sizes or V2_SIZES
    work = workroot / (name or f"{lang}{suffix}")
    marker = work / "SNAPSHOT.json"
    if marker.exists():
        return work
    family, _, _ = LANGUAGES[lang]
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(work, filter="data")
    for name in ("data", "metrics", "logs", "reports", "rounds", "models", "dvc.lock"):
        p = work / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    files = {"source_train": ("en", "train"), "source_dev": ("en", "dev"), "target_unlabelled": (lang, "train"),
             "target_test": (lang, "test")}
    counts = {table: _slice_conll(shared / family / src / f"{split}.txt", work / "data" / src / f"{split}.txt", sizes[table])
              for table, (src, split) in files.items()}
    subprocess.run(["dvc", "config", "core.no_scm", "true"], cwd=work, check=True, capture_output=True)
    marker.write_text(json.dumps({"commit": commit, "family": family, "sentences": counts}, indent=2) + "\n")
    return work


def write_params(work: Path, lang: str, overrides: dict) -> dict:
    """The snapshot's params.yaml with the protocol's data section and the variant's overrides."""
    family, labels, cap = LANGUAGES[lang]
    default = work / "params.default.yaml"  # the snapshot's own params, kept aside once
    if not default.exists():
        shutil.copy(work / "params.yaml", default)
    params = yaml.safe_load(default.read_text())
    params["target"] = lang
    params["data"].update({"source-train": "data/en/train.txt", "source-dev": "data/en/dev.txt", "labels": labels,
                           "max-source-sentences": 0, "max-target-sentences": 0})
    params["model"]["max-span-len"] = cap
    params["model"]["max-span-len-char"] = ZH_CHAR_CAP
    params["model"]["char-languages"] = ["zh"]
    for dotted, value in overrides.items():
        if dotted == "rounds":  # a number of rounds: the linear chain r1 <- r0, r2 <- r1, ...
            params["rounds"] = {f"r{i}": {"prev": f"r{i - 1}"} for i in range(1, int(value) + 1)}
            params["models"] = {"r0": {"prev": "source"}, **params["rounds"]}
            continue
        if "." not in dotted:  # a top-level scalar such as k
            if dotted not in params or isinstance(params[dotted], dict):
                raise KeyError(f"override {dotted}: no such top-level parameter in the snapshot's params.yaml")
            params[dotted] = value
            continue
        section, key = dotted.split(".", 1)
        if key not in params[section]:
            raise KeyError(f"override {dotted}: no such parameter in the snapshot's params.yaml")
        params[section][key] = value
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


# --------------------------------------------------------------------------- measuring


def measured(cmd: list[str], cwd: Path, env: dict, log) -> dict:
    """Run a command; wall seconds, its peak RSS (largest process it waited for) and load."""
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    for line in proc.stdout:  # stream, so a long stage shows progress in the harness log
        out.append(line)
        log.write(line)
        log.flush()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2), "output": "".join(out)}


def machine() -> dict:
    """What the cell ran on: cells measured on different machines (sessions) are not timed alike."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": mem_gib}


def stage_names(rounds: list[str]) -> list[str]:
    names = ["check", "prepare", "encoder", "train_source", "evaluate@r0", "initial_labels"]
    for r in rounds:
        if r != "r0":
            names += [f"pseudo_label@{r}", f"denoise@{r}", f"train_target@{r}", f"evaluate@{r}"]
    return names


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def collect(work: Path, rounds: list[str]) -> dict:
    out = {}
    for r in rounds:
        m = _read_json(work / "metrics" / f"{r}.json") or {}
        d = _read_json(work / "metrics" / "denoise" / f"{r}.json") or {}
        log = _read_json(work / "logs" / r / "metrics.json") or {}
        out[r] = {
            "f1": m.get("f1"), "precision": m.get("precision"), "recall": m.get("recall"),
            "span_f1": (m.get("span") or {}).get("f1"), "per_type": m.get("per_type"),
            "gold_entities_over_cap": m.get("gold_entities_over_cap"), "truncated_words": m.get("truncated_words"),
            "pseudo_label_f1": d.get("pseudo_label_f1"), "pseudo_label": d.get("pseudo_label"),
            "changed": d.get("changed"), "train_steps": log.get("steps"), "dev_f1": log.get("dev_f1"),
            "soft_change": d.get("soft_change"), "m": d.get("m"),
            "history_steps": _history_steps(work / "models" / r),
        }
    return out


def _history_steps(model_dir: Path) -> int | None:
    """Optimiser steps the model's training took (the sum over its epoch records; a fractional
    epoch has fewer steps than a whole one)."""
    meta = _read_json(model_dir / "glode_model.json") or {}
    steps = [h.get("steps") for h in meta.get("history") or []]
    return sum(steps) if steps and None not in steps else None


def stepper(label: str, work: Path, log, stages: dict[str, dict]) -> Callable[[str, list[str]], None]:
    """A function that runs, times and records one step of a cell in ``stages`` (with the
    snapshot first on PYTHONPATH); a failure ends the cell."""
    env = dict(os.environ, PYTHONPATH=str(Path(work).resolve()), DVC_NO_ANALYTICS="1")

    def step(name: str, cmd: list[str]) -> None:
        log.write(f"== {label}: {' '.join(cmd)}\n")
        res = measured(cmd, work, env, log)
        ran = cmd[:2] != ["dvc", "repro"] or "Running stage" in res["output"]  # DVC skips unchanged stages
        stages[name] = {k: v for k, v in res.items() if k != "output"} | {"ran": ran}
        if res["rc"] != 0:
            raise RuntimeError(f"{label}: {name} failed (exit {res['rc']}); see the harness log")

    return step


def run_cell(lang: str, variant: str, workroot: Path, shared: Path, commit: str, log) -> dict:
    desc, overrides, rounds = VARIANTS[variant]
    work = setup_workdir(lang, workroot, shared, commit, WORKDIR_SUFFIX.get(variant, ""))
    snapshot = json.loads((work / "SNAPSHOT.json").read_text())
    params = write_params(work, lang, overrides or {})
    stages: dict[str, dict] = {}
    step = stepper(f"{lang}:{variant}", work, log, stages)

    for name in ["prepare", "encoder"] if variant in ("hf", "hf3", "steps") else stage_names(rounds):
        step(name, ["dvc", "repro", "--single-item", name])
    cell = {"language": lang, "variant": variant, "description": desc, "commit": snapshot["commit"],
            "sentences": snapshot["sentences"], "overrides": overrides, "span_cap": params["model"]["max-span-len"],
            "stages": stages, "machine": machine()}
    if variant in ("hf", "hf3"):
        _, labels, cap = LANGUAGES[lang]
        epochs = params["train"]["epochs"] * (3 if variant == "hf3" else 1)
        out_json = work / variant / "metrics.json"
        cmd = [sys.executable, "bench/hf_reference.py", "--encoder", "encoder", "--train", "data/en/train.txt",
               "--test", f"data/{lang}/test.txt", *[a for t in labels for a in ("--labels", t)],
               "--epochs", str(epochs), "--lr", str(params["train"]["lr"]),
               "--batch-size", str(params["train"]["batch-size"]), "--seed", str(params["train"]["seed"]),
               "--max-seq-len", str(params["model"]["max-seq-len"]),
               "--span-cap", str(ZH_CHAR_CAP if lang == "zh" else cap), "--out-json", str(out_json)]
        step("hf_reference", cmd)
        ref = json.loads(out_json.read_text())
        cell["rounds"] = {"hf": {"f1": ref["f1"], "precision": ref["precision"], "recall": ref["recall"],
                                 "span_f1": ref["span"]["f1"], "per_type": ref["per_type"], "train_steps": ref["steps"],
                                 "median_step_seconds": ref["median_step_seconds"]}}
    elif variant == "steps":
        out_json = work / "steps.json"
        cmd = [sys.executable, str(ROOT / "bench" / "train_step_bench.py"), "--steps", "20", "--reference",
               "--max-span-len", str(params["model"]["max-span-len"]), "--out", str(out_json)]
        step("step_bench", cmd)
        cell["steps"] = json.loads(out_json.read_text())
        cell["rounds"] = {}
    else:
        cell["rounds"] = collect(work, rounds)
    cell["epochs"] = params["train"]["epochs"]
    cell["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return cell


# --------------------------------------------------------------------------- protocol v3 (issue 19)

V3_SEEDS = (0, 1, 2)  # train.seed: r0 and every round
V3_EPOCHS = 2  # train.epochs for r0 and every round
V3_ROUNDS = 1  # self-training rounds of the plain and default variants
V3_SIZES = {"source_train": 3000, "source_dev": 1000, "target_unlabelled": 3000, "target_test": 3000}
V3_ORDER = ["de", "ar", "hi", "zh", "es", "nl"]  # explore where v1/v2 GLoDe lost first
V3_ABLATION_SEED = 0
V3_BOOTSTRAP = {"n_resamples": 10_000, "seed": 0}
TRAIN_BATCH = 16  # the snapshot's train.batch-size (steps per epoch = ceil(source sentences / 16))
# test sentences of each split (shared/data/README.md); v3 takes up to 3000: es has 1517, hi 1000
TEST_AVAILABLE = {"de": 3005, "es": 1517, "nl": 5195, "ar": 10000, "hi": 1000, "zh": 10000}

# The paper's progressive mode (`glode preset paper`, docs/METHOD.md §7) at the protocol's sizes: its
# three rounds continue one target model and share the default round's training budget (3 x 2/3 of
# an epoch = 378 optimiser steps against the default's 376); a target sentence is drawn 2/3 times
# per round (equal source and target sizes), so each round's update takes m^(2/3).
PAPER_ROUND_EPOCHS = V3_EPOCHS / 3
# `glode preset paper` as it was at v3's pinned commit f66012fd (the preset has since moved to the
# reference's timing, issue 36): v3's paper cells were measured with these values.
PAPER_V3_PRESET = {
    "retrain.init": "chain", "retrain.epochs": 1,
    "denoise.start": "labels", "denoise.gate": "none",
    "denoise.m-start": 0.95, "denoise.m-step": 0.075, "denoise.m-min": 0.8, "denoise.visits": 1,
    "denoise.features": "model", "denoise.projection": "random", "denoise.dim": 128,
    "denoise.prototype": "ema", "denoise.momentum": 0.99, "denoise.prototype-from": "all",
    "denoise.use-global": True, "denoise.use-local": True, "denoise.o-keep-rate": 0.03,
    "denoise.local-scale": 0.9, "denoise.local-cap": 1.0, "denoise.select": 1.0, "denoise.select-rest": 0.0,
    "k": 300,
}
PAPER_MODE: dict | None = {**PAPER_V3_PRESET, "rounds": 3,
                           "retrain.epochs": PAPER_ROUND_EPOCHS,
                           "denoise.visits": PAPER_ROUND_EPOCHS * V3_SIZES["source_train"] / V3_SIZES["target_unlabelled"]}

V3_VARIANTS = {  # name -> (description, params overrides; None: not defined yet, skipped)
    "zeroshot": ("r0, the source model, zero-shot", {}),
    "plain": ("plain self-training: each round trains on the previous model's own soft labels, no denoising",
              NO_DENOISING),
    "default": ("the snapshot's params.yaml defaults, whatever they are at the pinned commit", {}),
    "paper": ("the paper's progressive mode", PAPER_MODE),
    "global": ("the default with the global view only (one seed)", {"denoise.use-local": False}),
    "local": ("the default with the local view only (one seed)", {"denoise.use-global": False}),
    "nomlm": ("the default without the MLM loss, r0 included (one seed)", {"train.mlm-weight": 0.0}),
}
# Exploration (protocol x3: v3's sizes and settings, one seed, the checkout's code; never part of
# the v3 table): candidate denoising settings picked from `bench/denoise_explore.py`'s replays.
X3_VARIANTS = {
    "select-0.9": ("per-class confidence selection alone: keep the top 90% of each entity class",
                   {**NO_DENOISING, "denoise.select": 0.9}),
    "local-only": ("the default's gate with the local view only", {"denoise.use-global": False}),
    "proto-source": ("the default with prototypes from source gold only", {"denoise.prototype-from": "source"}),
    "plain-mlm-corpus": ("plain self-training with the MLM softmax over the target text's own sub-tokens "
                         "(`train.mlm-vocab: corpus`, r0 included): issue 21's quality check",
                         {**NO_DENOISING, "train.mlm-vocab": "corpus"}),
}
# Exploration for issue 36 (protocol x4: v3's sizes at the README's 3 epochs, one seed, the
# checkout's code): glode's soft cross-entropy against the reference's target loss (docs/METHOD.md
# §3), with and without the views; each variant names its views explicitly, whatever the default.
VIEWS = dict(PRESETS["glode"].values)
REFERENCE_LOSS = {"retrain.target-loss": "reference"}
X4_VARIANTS = {
    "plain-ce": ("plain self-training, soft cross-entropy on the target labels", {**NO_DENOISING}),
    "plain-ref": ("plain self-training, the reference's target loss", {**NO_DENOISING, **REFERENCE_LOSS}),
    "views-ce": ("the global and local views (glode preset glode), soft cross-entropy", {**VIEWS}),
    "views-ref": ("the global and local views (glode preset glode), the reference's target loss",
                  {**VIEWS, **REFERENCE_LOSS}),
    "views-harden": ("the views, soft cross-entropy with O-topped labels of entity mass <= 0.35 hardened to O "
                     "(retrain.harden-o: beyond the paper, the leak stopped without the reference's loss)",
                     {**VIEWS, "retrain.harden-o": 0.35}),
}
V3_MAIN = ("zeroshot", "plain", "default", "paper")
V3_ABLATIONS = ("global", "local", "nomlm")
R0_SECTIONS = ("train", "model", "data", "encoder", "target")  # params r0's stages read


def _variant(variant: str) -> tuple:
    return V3_VARIANTS.get(variant) or X3_VARIANTS.get(variant) or X4_VARIANTS[variant]


def v3_defined(variant: str) -> bool:
    return _variant(variant)[1] is not None


def v3_overrides(variant: str, seed: int, epochs: int = V3_EPOCHS) -> dict:
    """The protocol's settings, then the variant's own overrides."""
    own = _variant(variant)[1]
    if own is None:
        raise KeyError(f"variant {variant} is not defined yet (bench/results.py: PAPER_MODE is a placeholder)")
    return {"train.epochs": epochs, "train.seed": seed, "rounds": V3_ROUNDS, **own}


def round_epochs(variant: str) -> float:
    """Passes over the source sentences per self-training round of a v3 variant."""
    return float((_variant(variant)[1] or {}).get("retrain.epochs") or V3_EPOCHS)


def v3_rounds(variant: str) -> list[str]:
    """The models a v3 cell trains: r0, then its rounds (a zero-shot cell: r0 only)."""
    if variant == "zeroshot":
        return ["r0"]
    n = int((_variant(variant)[1] or {}).get("rounds", V3_ROUNDS))
    return ["r0", *(f"r{i}" for i in range(1, n + 1))]


def v3_workdir(lang: str, variant: str, seed: int) -> str:
    """Work folder name: one per (language, seed), so each seed trains its own r0 and shares it
    with every variant of that seed; a variant that changes what r0 reads, compared with the
    default (nomlm), gets its own."""
    own, base = _variant(variant)[1] or {}, V3_VARIANTS["default"][1] or {}
    changes_r0 = any(key.split(".", 1)[0] in R0_SECTIONS and own.get(key) != base.get(key) for key in {*own, *base})
    return f"{lang}-s{seed}" + (f"-{variant}" if changes_r0 else "")


def v3_stage_names(rounds: list[str]) -> list[str]:
    """r0's stages, then each round's; only r0 and the last round are scored on the test set
    (an intermediate round's test F1 is not part of the table, and a 3000-sentence test costs)."""
    names = ["check", "prepare", "encoder", "train_source", "evaluate@r0", "initial_labels"]
    for r in rounds[1:]:
        names += [f"pseudo_label@{r}", f"denoise@{r}", f"train_target@{r}"]
    if len(rounds) > 1:
        names.append(f"evaluate@{rounds[-1]}")
    return names


def plan_v3(include_undefined: bool = False) -> list[tuple[str, str, int]]:
    """v3 cells (language, variant, seed) in priority order: seed 0 on every target (zero-shot,
    plain, default, paper), then seeds 1 and 2, then the one-seed ablations on de and ar.
    Variants whose definition is missing are left out unless ``include_undefined``."""
    cells = [(lang, v, seed) for seed in V3_SEEDS for lang in V3_ORDER for v in V3_MAIN]
    cells += [(lang, v, V3_ABLATION_SEED) for lang in ABLATION_LANGS for v in V3_ABLATIONS]
    return [c for c in cells if include_undefined or v3_defined(c[1])]


def bench_module(name: str):
    """A script of bench/ as a module (bench/ is not a package), loaded once."""
    import importlib.util

    key = f"glode_bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "bench" / f"{name}.py")
        sys.modules[key] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[key]


def refresh_code(work: Path, commit: str) -> None:
    """Exploration: bring a work folder's code (not its data, params or outputs) to ``commit``,
    and keep the snapshot's defaults in step; SNAPSHOT.json keeps the commit r0 came from."""
    marker = work / "SNAPSHOT.json"
    snap = json.loads(marker.read_text())
    if snap["commit"] == commit:
        return
    archive = subprocess.run(["git", "archive", "--format=tar", commit, "glode", "stages", "bench", "dvc.yaml", "params.yaml",
                              "pyproject.toml"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in ("glode", "stages", "bench"):
        shutil.rmtree(work / name, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(work, filter="data")
    shutil.copy(work / "params.yaml", work / "params.default.yaml")
    snap = {**snap, "r0_commit": snap.get("r0_commit", snap["commit"]), "commit": commit}
    marker.write_text(json.dumps(snap, indent=2) + "\n")


def run_cell_v3(lang: str, variant: str, seed: int, workroot: Path, shared: Path, commit: str, log,
                explore: bool = False, epochs: int = V3_EPOCHS) -> dict:
    """One v3 cell: the stages, then per test sentence entity counts of its last model, which
    must reproduce the evaluate stage's metrics exactly (bench/sentence_counts.py)."""
    desc = _variant(variant)[0]
    overrides = v3_overrides(variant, seed, epochs)
    rounds = v3_rounds(variant)
    work = setup_workdir(lang, workroot, shared, commit, sizes=V3_SIZES, name=v3_workdir(lang, variant, seed))
    if explore:
        refresh_code(work, commit)
    snapshot = json.loads((work / "SNAPSHOT.json").read_text())
    params = write_params(work, lang, overrides)
    stages: dict[str, dict] = {}
    step = stepper(f"{lang}:{variant}:s{seed}", work, log, stages)
    r0_done = all((work / p).exists() for p in ("models/r0", "metrics/r0.json", "rounds/r0/labels.parquet"))
    for name in v3_stage_names(rounds):
        if explore and r0_done and name in R0_STAGES and name not in ("check", "pseudo_label@r1"):
            continue  # exploration keeps the folder's r0 (trained by the code in SNAPSHOT.json's r0_commit)
        step(name, ["dvc", "repro", "--single-item", name])
    last = rounds[-1]
    counts_json = work / "counts" / f"{variant}-{last}.json"
    if counts_json.exists():
        counts_json.unlink()
    # the snapshot's own script: it imports the snapshot's glode, which the checkout's may not match
    step(f"sentence_counts@{last}", [sys.executable, str(work / "bench" / "sentence_counts.py"), "--model", f"models/{last}",
                                     "--test", "tables/target_test.parquet", "--encoder", "encoder",
                                     "--metrics", f"metrics/{last}.json", "--batch-size", str(params["evaluate"]["batch-size"]),
                                     "--out", str(counts_json.relative_to(work))])
    counts = json.loads(counts_json.read_text())
    per_round = collect(work, rounds)
    for r, x in per_round.items():
        if r not in ("r0", last):  # not scored by this cell: the folder's metrics/rN.json may be another variant's
            for k in ("f1", "precision", "recall", "span_f1", "per_type", "gold_entities_over_cap", "truncated_words"):
                x[k] = None
        x["optimizer_steps"] = x.get("history_steps") or (x["train_steps"] * params["train"]["epochs"] if x.get("train_steps") else None)
    if counts["f1"] != per_round[last]["f1"]:
        raise RuntimeError(f"{lang}:{variant}:s{seed}: per-sentence counts give F1 {counts['f1']!r}, "
                           f"metrics/{last}.json {per_round[last]['f1']!r}")
    extra = {"r0_commit": snapshot.get("r0_commit", snapshot["commit"])} if explore else {}
    return {**extra, "language": lang, "variant": variant, "seed": seed, "description": desc, "commit": snapshot["commit"],
            "workdir": work.name, "sentences": snapshot["sentences"], "overrides": overrides, "params": params,
            "span_cap": params["model"]["max-span-len"], "epochs": params["train"]["epochs"], "rounds": per_round,
            "sentence_counts": {last: {k: counts[k] for k in ("sentences", "tp", "pred", "gold")}},
            "stages": stages, "machine": machine(),
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


# ----- the v3 cost estimate (from the committed v2 cells: nothing measured for it)

V2_TRAIN_STEPS = 3 * 188  # optimiser steps of every v2 training: 3 epochs x ceil(3000 / 16)
COST_KINDS = ("prepare", "encoder", "train_source", "initial_labels", "pseudo_label", "denoise", "train_target", "evaluate")
R0_STAGES = ("check", "prepare", "encoder", "train_source", "initial_labels", "evaluate@r0", "pseudo_label@r1")  # shared in a folder


def v2_stage_costs(cells: dict) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Median wall seconds per stage kind and language over the stages that ran in the v2
    GLoDe, plain, global and local cells (nomlm skips the MLM and is faster; hf/steps run
    other code). A kind a language never ran in v2 (es's r0 stages ran before the v2 cells
    were recorded) is filled as its train_target time x the median over the other languages
    of (kind / train_target); those fills are listed."""
    from statistics import median

    seen: dict[str, dict[str, list[float]]] = {lang: {k: [] for k in COST_KINDS} for lang in ORDER}
    for (lang, variant), c in cells.items():
        if variant in ("glode", "plain", "global", "local"):
            for name, st in c["stages"].items():
                kind = name.split("@")[0]
                if st.get("ran") and kind in COST_KINDS:
                    seen[lang][kind].append(st["seconds"])
    costs = {lang: {k: median(v) for k, v in d.items() if v} for lang, d in seen.items()}
    filled = []
    for lang in ORDER:
        for kind in COST_KINDS:
            if kind not in costs[lang]:
                ratios = [costs[o][kind] / costs[o]["train_target"] for o in ORDER if kind in costs[o]]
                costs[lang][kind] = median(ratios) * costs[lang]["train_target"]
                filled.append(f"{lang} {kind}")
    return costs, filled


CHECK_S = 1.5  # the params check stage (issue 20; measured 1.2-1.7 s on a fresh clone), absent from v2's cells


def v3_stage_costs(v2: dict[str, dict[str, float]], lang: str) -> dict[str, float]:
    """v2's seconds scaled to v3: training by optimiser steps, scoring by corpus sizes."""
    steps = V3_EPOCHS * math.ceil(V3_SIZES["source_train"] / TRAIN_BATCH)
    src, tgt = V3_SIZES["source_train"] / SOURCE_SENTENCES, V3_SIZES["target_unlabelled"] / TARGET_SENTENCES
    test = min(V3_SIZES["target_test"], TEST_AVAILABLE[lang]) / TEST_SENTENCES
    c = v2[lang]
    return {"check": CHECK_S, "prepare": c["prepare"], "encoder": c["encoder"],
            "train_source": c["train_source"] * steps / V2_TRAIN_STEPS, "train_target": c["train_target"] * steps / V2_TRAIN_STEPS,
            "initial_labels": c["initial_labels"] * tgt, "pseudo_label": c["pseudo_label"] * (src + tgt) / 2,
            "denoise": c["denoise"] * (src + tgt) / 2, "evaluate": c["evaluate"] * test,
            "sentence_counts": c["evaluate"] * test}  # the same prediction pass again


def estimate_v3(v2_cells: dict, cells: list[tuple[str, str, int]] | None = None) -> dict:
    """Estimated wall seconds of each v3 cell on the 2-core machine, in plan order, with DVC's
    sharing inside a work folder (r0's stages and the first round's pseudo labels run once per
    folder). Undefined variants (paper) are costed as a round of the default, an assumption."""
    v2, filled = v2_stage_costs(v2_cells)
    done: set = set()
    per_cell = {}
    for lang, variant, seed in cells or plan_v3(include_undefined=True):
        folder = v3_workdir(lang, variant, seed)
        cost = v3_stage_costs(v2, lang)
        secs = 0.0
        for name in v3_stage_names(v3_rounds(variant)):
            key = (folder, name) if name in R0_STAGES else (folder, variant, name)
            if key not in done:
                done.add(key)
                kind = name.split("@")[0]
                scale = round_epochs(variant) / V3_EPOCHS if kind == "train_target" else 1.0
                secs += cost[kind] * scale
        per_cell[(lang, variant, seed)] = secs + cost["sentence_counts"]
    return {"cells": per_cell, "total_s": sum(per_cell.values()), "v2_costs": v2, "filled": filled,
            "steps_per_round": V3_EPOCHS * math.ceil(V3_SIZES["source_train"] / TRAIN_BATCH)}


def render_estimate(est: dict) -> str:
    cells = est["cells"]
    lines = ["### Estimated cost of the whole v3 plan (an estimate from the v2 cells' stage times, not a measurement)", "",
             f"Scaled from the median v2 stage times (3 epochs = {V2_TRAIN_STEPS} steps per training, 1000 test sentences): "
             f"training x {est['steps_per_round']}/{V2_TRAIN_STEPS} steps, test scoring x test sentences/1000 (twice: the "
             "evaluate stage, then the per-sentence counts); r0's stages and the first round's pseudo labels once per work "
             "folder. Filled from the other languages' ratios to train_target: "
             f"{', '.join(est['filled']) or 'none'}.", "",
             "| target | test sentences | train_source (s) | train_target (s) | evaluate (s) | cells | hours |",
             "|---|---|---|---|---|---|---|"]
    for lang in ORDER:
        c = v3_stage_costs(est["v2_costs"], lang)
        mine = [k for k in cells if k[0] == lang]
        lines.append(f"| {lang} | {min(V3_SIZES['target_test'], TEST_AVAILABLE[lang])} | {c['train_source']:.0f} | "
                     f"{c['train_target']:.0f} | {c['evaluate']:.0f} | {len(mine)} | {sum(cells[k] for k in mine) / 3600:.1f} |")
    undefined = sum(s for k, s in cells.items() if not v3_defined(k[1]))
    lines.append(f"| **all** | | | | | {len(cells)} | **{est['total_s'] / 3600:.1f}** |")
    lines += ["", f"Of the {est['total_s'] / 3600:.1f} hours, {undefined / 3600:.1f} are the cells of variants not defined yet "
              "(costed as one round of the default)."]
    return "\n".join(lines) + "\n"


# ----- v3 rendering


def _mean_sd(values: list[float]) -> tuple[float, float | None]:
    from statistics import mean, stdev

    return mean(values), (stdev(values) if len(values) > 1 else None)


def _fmt_seeds(values: list[float], planned: int) -> str:
    """mean ± sd (n) in F1 points; fewer seeds than planned are said; none: *pending*."""
    if not values:
        return "*pending*"
    m, sd = _mean_sd(values)
    text = f"{100 * m:.1f}" + (f" ± {100 * sd:.1f}" if sd is not None else "")
    return text + (f" (n={len(values)})" if len(values) == planned else f" (n={len(values)} of {planned})")


def _final_f1(cell: dict) -> float | None:
    return (cell["rounds"].get(v3_rounds(cell["variant"])[-1]) or {}).get("f1")


def _counts_stack(cells: dict, lang: str, variant: str, seeds) -> "list | None":
    """(seeds, sentences, 3) counts of a variant's last model, or None unless every seed is measured."""
    import numpy as np

    sc = bench_module("sentence_counts")
    stacks = []
    for seed in seeds:
        c = cells.get((lang, variant, seed))
        if c is None:
            return None
        last = v3_rounds(variant)[-1]
        stacks.append(sc.decode_counts(c["sentence_counts"][last]))
    return np.stack(stacks)


V3_BOOTSTRAP_PAIRS = (("default", "plain"), ("default", "zeroshot"))
V3_INTERIM_PAIRS = (("default", "plain"), ("default", "zeroshot"), ("plain", "zeroshot"), ("paper", "plain"))
# beside the issue's two pairs, over all seeds: does self-training alone pay, and where the paper's mode stands
V3_OTHER_PAIRS = (("plain", "zeroshot"), ("paper", "plain"), ("paper", "default"))
VARIANT_NAMES = {"zeroshot": "zero-shot", "plain": "plain", "default": "default", "paper": "paper"}


def render_bootstrap(cells: dict, seeds=V3_SEEDS, pairs=V3_BOOTSTRAP_PAIRS, title: str | None = None,
                     note: str = "Needs all seeds of both variants.") -> list[str]:
    """A paired-bootstrap table over ``seeds``: per target and on the six-target average, F1(a) − F1(b)
    with its 95% percentile interval for each (a, b) of ``pairs``; *pending* until every seed of both
    variants is measured."""
    bs = bench_module("bootstrap")
    n, seed0 = V3_BOOTSTRAP["n_resamples"], V3_BOOTSTRAP["seed"]
    heads = [f"{VARIANT_NAMES[a]} − {VARIANT_NAMES[b]}" for a, b in pairs]
    lines = [f"### {title or 'Paired bootstrap: ' + ' and '.join(heads)} (test F1 points, 95% percentile interval)", "",
             f"Test sentences resampled with replacement ({n} resamples, seed {seed0} + the target's index in the table); "
             "the same resample for both variants and every seed; per resample each seed's counts are summed, its F1 "
             "computed and averaged over the seeds. The average resamples each target independently and averages the "
             f"six differences. {note}", "",
             "| target | " + " | ".join(heads) + " |", "|---" * (len(pairs) + 1) + "|"]
    diffs: dict[tuple, list] = {pair: [] for pair in pairs}
    points: dict[tuple, list] = {pair: [] for pair in pairs}

    def fmt(point, low, high):
        return f"{100 * point:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"

    for t, lang in enumerate(ORDER):
        row = []
        for pair in pairs:
            a, b = (_counts_stack(cells, lang, v, seeds) for v in pair)
            if a is None or b is None:
                row.append("*pending*")
                continue
            d = bs.bootstrap_differences(a, b, n, seed0 + t)
            point = bs.mean_f1(a) - bs.mean_f1(b)
            diffs[pair].append(d)
            points[pair].append(point)
            iv = bs.interval_from(point, d, (len(a), len(b)))
            row.append(fmt(iv.diff, iv.low, iv.high))
        lines.append(f"| {lang} | " + " | ".join(row) + " |")
    avg = []
    for pair in pairs:
        if len(diffs[pair]) == len(ORDER):
            iv = bs.interval_from(sum(points[pair]) / len(ORDER), sum(diffs[pair]) / len(ORDER), (len(seeds),) * 2)
            avg.append(f"**{fmt(iv.diff, iv.low, iv.high)}**")
        else:
            avg.append(f"*pending* ({len(diffs[pair])}/{len(ORDER)} targets)")
    lines.append("| **average** | " + " | ".join(avg) + " |")
    return lines


def complete_seed_prefix(cells: dict) -> tuple:
    """The leading seeds whose every defined main cell (all targets) is measured: those an interim
    table can use without mixing seeds across targets."""
    done = []
    for seed in V3_SEEDS:
        if not all((lang, v, seed) in cells for lang in ORDER for v in V3_MAIN if v3_defined(v)):
            break
        done.append(seed)
    return tuple(done)


def _six_target_average(f1s: list[float]) -> float | None:
    """A seed's average over the targets, or None until every target of that seed is measured."""
    return sum(f1s) / len(f1s) if len(f1s) == len(ORDER) else None


def render_seed_averages(per_seed_avg: dict) -> list[str]:
    """Each seed's six-target average per variant: the seed-to-seed spread the bootstrap does not see."""
    lines = ["### Six-target average test F1 per seed (%)", "",
             "| seed | " + " | ".join(VARIANT_NAMES[v] for v in V3_MAIN) + " |", "|---" * (len(V3_MAIN) + 1) + "|"]
    for seed in V3_SEEDS:
        row = []
        for v in V3_MAIN:
            got, average = per_seed_avg[v][seed], _six_target_average(per_seed_avg[v][seed])
            row.append(f"{100 * average:.1f}" if average is not None else f"*pending* ({len(got)} of {len(ORDER)})")
        lines.append(f"| {seed} | " + " | ".join(row) + " |")
    return lines


def _label_change(cell: dict, rnd: str) -> tuple[float, float, float] | None:
    """(hard F1, soft F1, Brier) of a round's pseudo labels after its denoising minus before
    (F1 in points, Brier x 1000); None where the cell did not record both sides."""
    pl = ((cell.get("rounds") or {}).get(rnd) or {}).get("pseudo_label") or {}
    parts = [pl.get(k) for k in ("before", "after", "soft_before", "soft_after")]
    if any(p is None for p in parts):
        return None
    before, after, soft_before, soft_after = parts
    return (100 * (after["f1"] - before["f1"]), 100 * (soft_after["f1"] - soft_before["f1"]),
            1000 * (soft_after["brier"] - soft_before["brier"]))


LABEL_CHANGE_DIGITS = (1, 1, 2)  # decimals of _label_change's hard F1, soft F1 (points) and Brier (x 1000)


def render_denoise_effect(cells: dict, variant: str = "default") -> list[str]:
    """Issue 19's second goal, per target and seed: what the variant's denoising did to the
    round's pseudo labels on the target corpus (hard F1, soft F1, Brier against gold)."""
    rounds = v3_rounds(variant)[1:]
    lines = [f"### What the {variant} variant's denoising does to the pseudo labels (after − before, per seed)", "",
             "Hard and soft pseudo-label F1 in points, Brier score ×1000 (lower is better), on the target corpus "
             "against its gold labels; seeds " + ", ".join(map(str, V3_SEEDS)) + ".", "",
             "| target | round | hard F1 | soft F1 | Brier ×1000 |", "|---|---|---|---|---|"]
    raised = {rnd: 0 for rnd in rounds}
    for lang in ORDER:
        for rnd in rounds:
            per_seed = [_label_change(cells[(lang, variant, s)], rnd) if (lang, variant, s) in cells else None
                        for s in V3_SEEDS]
            cols = [" / ".join("*pending*" if ch is None else f"{ch[i]:+.{digits}f}" for ch in per_seed)
                    for i, digits in enumerate(LABEL_CHANGE_DIGITS)]
            if all(ch is not None and ch[0] > 0 and ch[1] > 0 for ch in per_seed):
                raised[rnd] += 1
            lines.append(f"| {lang} | {rnd} | " + " | ".join(cols) + " |")
    lines += ["", "Targets where the denoising raised both the hard and the soft F1 on every seed: "
              + "; ".join(f"{rnd}: {n} of {len(ORDER)}" for rnd, n in raised.items())
              + " (issue 19 asks for at least five, in every round)."]
    return lines


def render_v3(cells: dict, proto: Protocol) -> str:
    """The v3 block of docs/RESULTS.md; every number from a measured cell, the rest *pending*."""
    planned = plan_v3(include_undefined=True)
    skipped = sorted({v for _, v, _ in planned if not v3_defined(v)})
    steps = V3_EPOCHS * math.ceil(V3_SIZES["source_train"] / TRAIN_BATCH)
    names = {"zeroshot": "zero-shot (r0)", "plain": f"plain (r{V3_ROUNDS})", "default": f"default (r{V3_ROUNDS})",
             "paper": "paper's progressive mode"}
    test_sizes = ", ".join(f"{lang} {min(V3_SIZES['target_test'], TEST_AVAILABLE[lang])}" for lang in ORDER)
    lines = [f"Settings: {len(V3_SEEDS)} training seeds ({', '.join(map(str, V3_SEEDS))}; `train.seed`, r0 included), "
             f"{V3_EPOCHS} epochs for r0 and every round ({steps} optimiser steps per round at batch {TRAIN_BATCH}), "
             f"{V3_ROUNDS} self-training round(s); {V3_SIZES['source_train']} source / {V3_SIZES['target_unlabelled']} "
             f"target sentences; up to {V3_SIZES['target_test']} test sentences "
             f"({test_sizes}).", "",
             "### Target test F1 (seqeval strict IOB2, %), mean ± sd over seeds (n seeds)", "",
             "| target | " + " | ".join(names[v] for v in V3_MAIN) + " |", "|---" * (len(V3_MAIN) + 1) + "|"]
    per_seed_avg: dict[str, dict[int, list]] = {v: {s: [] for s in V3_SEEDS} for v in V3_MAIN}
    for lang in ORDER:
        row = []
        for v in V3_MAIN:
            vals = []
            for seed in V3_SEEDS:
                c = cells.get((lang, v, seed))
                if c is not None and _final_f1(c) is not None:
                    vals.append(_final_f1(c))
                    per_seed_avg[v][seed].append(_final_f1(c))
            text = _fmt_seeds(vals, len(V3_SEEDS))
            row.append(text + (" (not defined yet)" if not vals and not v3_defined(v) else ""))
        lines.append(f"| {lang} ({'CoNLL' if LANGUAGES[lang][0] == 'conll' else 'WikiAnn'}) | " + " | ".join(row) + " |")
    avg = []
    for v in V3_MAIN:  # each seed's six-target average, then mean ± sd over seeds
        complete = [a for a in map(_six_target_average, per_seed_avg[v].values()) if a is not None]
        done = sum(len(x) for x in per_seed_avg[v].values())
        avg.append(f"**{_fmt_seeds(complete, len(V3_SEEDS))}**" if len(complete) == len(V3_SEEDS)
                   else f"*pending* ({done}/{len(ORDER) * len(V3_SEEDS)} cells)")
    lines.append("| **average** | " + " | ".join(avg) + " |")
    lines += ["", *render_seed_averages(per_seed_avg)]
    lines += ["", *render_bootstrap(cells)]
    lines += ["", *render_bootstrap(cells, pairs=V3_OTHER_PAIRS, title="All seeds, the other pairs: paired bootstrap")]
    lines += ["", *render_bootstrap(
        cells, seeds=V3_SEEDS[:1], pairs=V3_INTERIM_PAIRS,
        title=f"Interim, seed {V3_SEEDS[0]} only: paired bootstrap",
        note="One seed: the interval covers test-sentence sampling only, not the spread between training seeds, "
             "so it is narrower than the three-seed one will be.")]
    prefix = complete_seed_prefix(cells)
    if 1 < len(prefix) < len(V3_SEEDS):  # a wider interim table once more seeds are whole, until all are
        lines += ["", *render_bootstrap(
            cells, seeds=prefix, pairs=V3_INTERIM_PAIRS,
            title=f"Interim, seeds {' and '.join(map(str, prefix))}: paired bootstrap",
            note=f"{len(prefix)} of {len(V3_SEEDS)} seeds: the interval resamples test sentences only; the seeds "
                 "enter as the draws measured, so it still understates the spread between training seeds.")]

    lines += ["", "### Per variant: test F1 per seed, pseudo-label F1 per round (mean over seeds), steps per round", "",
              "| target | variant | seeds | test F1 per seed (%) | pseudo-label F1 r0 → last (%) | steps per round | cell wall time (min, mean) |",
              "|---|---|---|---|---|---|---|"]
    for lang in ORDER:
        for v in (*V3_MAIN, *V3_ABLATIONS):
            seeds = sorted({s for (lg, vv, s) in planned if lg == lang and vv == v})
            if not seeds:
                continue
            mine = [cells[(lang, v, s)] for s in seeds if (lang, v, s) in cells]
            label = v + (" (one seed)" if v in V3_ABLATIONS else "") + ("" if v3_defined(v) else " (not defined yet)")
            if not mine:
                lines.append(f"| {lang} | {label} | 0 of {len(seeds)} | *pending* | *pending* | | |")
                continue
            f1s = " / ".join(f"s{s}: " + (_fmt(_final_f1(cells[(lang, v, s)])) if (lang, v, s) in cells else "*pending*")
                             for s in seeds)
            rounds = v3_rounds(v) if v != "zeroshot" else ["r0"]
            pl = []
            for r in rounds:
                xs = [c["rounds"][r]["pseudo_label_f1"] for c in mine if (c["rounds"].get(r) or {}).get("pseudo_label_f1") is not None]
                pl.append(_fmt(sum(xs) / len(xs)) if xs else "-")
            st = sorted({c["rounds"][r].get("optimizer_steps") for c in mine for r in rounds if c["rounds"].get(r)} - {None})
            wall = sum(s["seconds"] for c in mine for s in c["stages"].values()) / len(mine) / 60
            lines.append(f"| {lang} | {label} | {len(mine)} of {len(seeds)} | {f1s} | {' → '.join(pl)} | "
                         f"{', '.join(map(str, st))} | {wall:.0f} |")

    lines += ["", *render_denoise_effect(cells)]

    lines += ["", f"### Ablations on de and ar (test F1 of the last round, %; seed {V3_ABLATION_SEED} only, one seed)", "",
              "| target | default | global view only | local view only | no MLM | plain |", "|---|---|---|---|---|---|"]
    for lang in ABLATION_LANGS:
        vals = [_fmt(_final_f1(cells[(lang, v, V3_ABLATION_SEED)])) if (lang, v, V3_ABLATION_SEED) in cells else "*pending*"
                for v in ("default", "global", "local", "nomlm", "plain")]
        lines.append(f"| {lang} | " + " | ".join(vals) + " |")

    lines += ["", "### Wall time per stage (s, median over the cells where it ran) and peak RSS (MB)", "",
              "| target | " + " | ".join(COST_KINDS[2:]) + " | sentence_counts | peak RSS |", "|---" * (len(COST_KINDS) - 2 + 3) + "|"]
    for lang in ORDER:
        ran: dict[str, list] = {}
        for (lg, _, _), c in cells.items():
            if lg == lang:
                for name, s in c["stages"].items():
                    if s.get("ran"):
                        ran.setdefault(name.split("@")[0], []).append(s)
        if not ran:
            lines.append(f"| {lang} | " + " | ".join(["*pending*"] * (len(COST_KINDS) - 2 + 1)) + " | |")
            continue
        med = [(f"{sorted(x['seconds'] for x in ran[k])[len(ran[k]) // 2]:.0f}" if k in ran else "-")
               for k in (*COST_KINDS[2:], "sentence_counts")]
        peak = max(s["peak_rss_mb"] for x in ran.values() for s in x)
        lines.append(f"| {lang} | " + " | ".join(med) + f" | {peak:.0f} |")

    commits = sorted({c["commit"][:8] for c in cells.values()})
    machines = sorted({c["machine"]["cpu"] or "?" for c in cells.values()})
    loads = sorted(s["load_before"] for c in cells.values() for s in c["stages"].values() if s.get("ran"))
    lines += ["", f"Measured cells: {len(cells)} of {len(plan_v3())} planned"
              + (f"; skipped, definition missing: {', '.join(skipped)} "
                 f"({sum(1 for _, v, _ in planned if v in skipped)} cells; see `--protocol v3 status`)" if skipped else "")
              + f"; project commit(s) {', '.join(commits) or '-'}; machine(s) {', '.join(machines) or '-'}; 1-minute load "
              f"average before a stage: median {loads[len(loads) // 2] if loads else '-'} (2 cores; above 2: the times are inflated).",
              "", render_estimate(estimate_v3(load_cells(PROTOCOLS["v2"]))).rstrip("\n")]
    return "\n".join(lines) + "\n"


PROTOCOLS = {
    "v1": Protocol("v1", ROOT / "bench" / "results" / "cells", "", plan_v1,
                   "<!-- results:begin (bench/results.py render) -->", "<!-- results:end -->"),
    "v2": Protocol("v2", ROOT / "bench" / "results" / "cells-v2", "v2", plan_v2,
                   "<!-- results-v2:begin (bench/results.py render) -->", "<!-- results-v2:end -->"),
    "v3": Protocol("v3", ROOT / "bench" / "results" / "cells-v3", "v3", plan_v3,
                   "<!-- results-v3:begin (bench/results.py --protocol v3 render) -->", "<!-- results-v3:end -->", seeded=True),
    "x3": Protocol("x3", ROOT / "bench" / "results" / "explore-v3", "v3", lambda: [],
                   "<!-- results-x3:begin (bench/results.py --protocol x3 render) -->", "<!-- results-x3:end -->",
                   seeded=True, explore=True),
    "x4": Protocol("x4", ROOT / "bench" / "results" / "explore-v4", "x4", lambda: [],
                   "<!-- results-x4:begin (bench/results.py --protocol x4 render) -->", "<!-- results-x4:end -->",
                   seeded=True, explore=True, epochs=3),
}


def pinned_commit(proto: Protocol, requested: str | None) -> str:
    """The snapshot commit for new work folders: the one the protocol's measured cells came
    from (a protocol's table must come from one commit), else the requested one, else HEAD."""
    measured_at = {c["commit"] for c in load_cells(proto).values()}
    if len(measured_at) > 1:
        raise SystemExit(f"{proto.cells}: cells from several commits ({', '.join(sorted(measured_at))}); "
                         "a protocol's table must come from one")
    if requested:
        full = subprocess.run(["git", "rev-parse", requested], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
        if measured_at and full not in measured_at:
            raise SystemExit(f"--commit {requested}: protocol {proto.name}'s measured cells come from {measured_at.pop()[:8]}")
        return full
    return measured_at.pop() if measured_at else _head_commit()


def parse_only(proto: Protocol, only: list[str]) -> list[tuple]:
    """--only values: LANG:VARIANT (v1/v2); v3 also LANG:VARIANT:SEED, and LANG:VARIANT means
    every seed the plan gives that variant on that language."""
    cells: list[tuple] = []
    for text in only:
        parts = text.split(":")
        if not proto.seeded:
            cells.append(tuple(parts))
        elif len(parts) == 3 and parts[2].isdigit():
            cells.append((parts[0], parts[1], int(parts[2])))
        elif len(parts) == 2:
            planned = [c for c in plan_v3(include_undefined=True) if c[:2] == tuple(parts)]
            cells += planned or [(parts[0], parts[1], V3_SEEDS[0])]
        else:
            cells.append(tuple(parts))
    return cells


def cmd_run(args) -> int:
    proto = PROTOCOLS[args.protocol]
    if proto.explore:  # the checkout's code, or the named commit's (to finish cells of an earlier commit)
        commit = subprocess.run(["git", "rev-parse", args.commit or "HEAD"], cwd=ROOT, check=True, capture_output=True,
                                text=True).stdout.strip()
    else:
        commit = pinned_commit(proto, args.commit)
    if proto.explore and not args.only:
        print(f"protocol {proto.name} has no plan: name the cells with --only LANG:VARIANT:SEED", file=sys.stderr)
        return 2
    cells = parse_only(proto, args.only) if args.only else proto.plan()
    for key in cells:  # check them all before anything runs
        if len(key) != (3 if proto.seeded else 2) or key[0] not in LANGUAGES or key[1] not in proto.variants:
            print(f"unknown cell {':'.join(map(str, key))}", file=sys.stderr)
            return 2
        if proto.seeded and not v3_defined(key[1]):
            print(f"{':'.join(map(str, key))}: variant {key[1]} is not defined yet (PAPER_MODE in bench/results.py is a "
                  "placeholder); nothing measured", file=sys.stderr)
            return 2
    proto.cells.mkdir(parents=True, exist_ok=True)
    workroot = (Path(args.workdir) / proto.work_subdir).resolve()  # absolute: it is the stages' PYTHONPATH
    log_path = Path(args.workdir) / "harness.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    with open(log_path, "a") as log:
        for key in cells:
            path = proto.cell_path(*key)
            if path.exists() and not args.force:
                continue
            label = ":".join(map(str, key))
            print(f"{dt.datetime.now():%H:%M:%S} {proto.name} {label} at {commit[:8]} ...", flush=True)
            try:
                if proto.seeded:
                    cell = run_cell_v3(*key, workroot, Path(args.shared), commit, log, explore=proto.explore,
                                       epochs=proto.epochs)
                else:
                    cell = run_cell(*key, workroot, Path(args.shared), commit, log)
            except Exception as exc:  # one failed cell must not stop an unattended run
                failures += 1
                print(f"  failed: {exc}", flush=True)
                continue
            cell["protocol"] = proto.name
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(cell, indent=2, sort_keys=True) + "\n")
            tmp.replace(path)
            last = cell["rounds"][list(cell["rounds"])[-1]] if cell["rounds"] else {}
            print(f"  done: F1 {last.get('f1', float('nan')):.4f}", flush=True)
    return 1 if failures else 0


def cmd_status(args) -> int:
    proto = PROTOCOLS[args.protocol]
    for key in proto.plan():
        state = "measured" if proto.cell_path(*key).exists() else "pending"
        lang, variant = key[:2]
        print(f"{lang}:{variant:9s} s{key[2]} {state}" if proto.seeded else f"{lang}:{variant:9s} {state}")
    if proto.seeded:
        skipped = [c for c in plan_v3(include_undefined=True) if not v3_defined(c[1])]
        for variant in sorted({v for _, v, _ in skipped}):
            n = sum(1 for c in skipped if c[1] == variant)
            print(f"skipped: {variant} ({n} cells): not defined yet; PAPER_MODE in bench/results.py is a placeholder "
                  "until the paper's progressive mode exists")
        est = estimate_v3(load_cells(PROTOCOLS["v2"]))
        pending = [k for k in plan_v3() if not proto.cell_path(*k).exists()]
        print(f"pending: {len(pending)} cells, about {sum(est['cells'][k] for k in pending) / 3600:.1f} h on a 2-core "
              f"machine (an estimate from the v2 stage times; the whole plan with the skipped cells: "
              f"{est['total_s'] / 3600:.1f} h; `estimate` for the arithmetic)")
    return 0


def cmd_estimate(args) -> int:
    print(render_estimate(estimate_v3(load_cells(PROTOCOLS["v2"]))), end="")
    return 0


# --------------------------------------------------------------------------- rendering


def load_cells(proto: Protocol) -> dict[tuple, dict]:
    return {proto.key(c): c for c in (json.loads(p.read_text()) for p in sorted(proto.cells.glob("*.json")))}


def render_steps(cells: dict) -> str:
    c = cells.get(("de", "steps"))
    if c is None:
        return "### Training step time, glode vs the HF reference\n\npending\n"
    s = c["steps"]
    return (
        "### Training step time, glode vs the HF reference (median of "
        f"{s['steps']} interleaved steps, batch {s['batch_size']}, CoNLL en source, {s['threads']} threads)\n\n"
        "| step | seconds | glode / HF |\n|---|---|---|\n"
        f"| glode NER step, word embeddings frozen (glode's default) | {s['ner_grouped']:.3f} | |\n"
        f"| HF token-classification step, word embeddings frozen | {s['hf_frozen']:.3f} | **{s['glode_over_hf_frozen']:.2f}x** |\n"
        f"| glode NER step, all weights trainable | {s['ner_full']:.3f} | |\n"
        f"| HF token-classification step, all weights trainable (run_ner.py) | {s['hf_full']:.3f} | **{s['glode_over_hf_full']:.2f}x** |\n"
        f"| glode default vs HF default | | {s['glode_default_over_hf_default']:.2f}x |\n"
        f"| glode MLM step (a target batch of 16; training uses `mlm-batch-size` 8) | {s['mlm_grouped']:.3f} | |\n"
    )


def _f1(cells, lang, variant, rnd):
    c = cells.get((lang, variant))
    if variant == "zeroshot" and c is None:  # r0 of any full run is the same stage output
        c = cells.get((lang, "glode")) or cells.get((lang, "plain"))
    if c is None:
        return None
    return (c["rounds"].get(rnd) or {}).get("f1")


def _fmt(x, digits=1):
    return "pending" if x is None else f"{100 * x:.{digits}f}"


def render_tables(cells: dict, proto: Protocol) -> str:
    cols = [("hf", "hf", "HF token-cls (zero-shot)"), ("zeroshot", "r0", "glode r0 (zero-shot)"),
            ("plain", "r2", "plain self-training (r2)"), ("glode", "r2", "GLoDe (r2)")]
    lines = ["### Target test F1 (seqeval strict IOB2, %)", "",
             "| target | " + " | ".join(c[2] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    sums = {c[0]: [] for c in cols}
    for lang in ORDER:
        row = []
        for variant, rnd, _ in cols:
            v = _f1(cells, lang, variant, rnd)
            row.append(_fmt(v))
            if v is not None:
                sums[variant].append(v)
        family = LANGUAGES[lang][0]
        lines.append(f"| {lang} ({'CoNLL' if family == 'conll' else 'WikiAnn'}) | " + " | ".join(row) + " |")
    avg = [(_fmt(sum(v) / len(v)) if len(v) == len(ORDER) else f"pending ({len(v)}/{len(ORDER)})") for v in sums.values()]
    lines.append("| **average** | " + " | ".join(avg) + " |")

    lines += ["", "### Per round: test F1 / span F1 / pseudo-label F1 (%) and optimiser steps", "",
              "| target | variant | r0 | r1 | r2 | steps per round |", "|---|---|---|---|---|---|"]
    for lang in ORDER:
        for variant in ("zeroshot", "zeroshot3", "glode", "plain", "global", "local", "nomlm", *THREE_EPOCH_ROUNDS):
            c = cells.get((lang, variant))
            if c is None or any((lang, full) in cells for full in R0_SHOWN_BY.get(variant, ())):
                continue
            parts = []
            for r in ("r0", "r1", "r2"):
                if r not in VARIANTS[variant][2]:  # a round this variant does not run (zeroshot3: r0 only)
                    parts.append("-")
                    continue
                x = c["rounds"].get(r) or {}
                parts.append(f"{_fmt(x.get('f1'))} / {_fmt(x.get('span_f1'))} / {_fmt(x.get('pseudo_label_f1'))}")
            per_epoch = {(c['rounds'].get(r) or {}).get('train_steps') for r in ('r0', 'r1', 'r2')} - {None}
            epochs = c.get("epochs") or (3 if variant == "zeroshot3" else 1)  # cells before "epochs" was stored
            steps = sorted(n * epochs for n in per_epoch)  # logs/rN/metrics.json holds steps per epoch
            lines.append(f"| {lang} | {variant} | " + " | ".join(parts) + f" | {', '.join(map(str, steps))} |")
        for variant in ("hf", "hf3"):
            c = cells.get((lang, variant))
            if c:
                h = c["rounds"]["hf"]
                lines.append(f"| {lang} | {variant} | {_fmt(h['f1'])} / {_fmt(h['span_f1'])} / - | | | {h['train_steps']} |")

    lines += ["", "### Ablations (r2 test F1, %)", "", "| target | GLoDe | global only | local only | no MLM | plain |",
              "|---|---|---|---|---|---|"]
    for lang in ABLATION_LANGS:
        lines.append(f"| {lang} | " + " | ".join(_fmt(_f1(cells, lang, v, "r2")) for v in ("glode", "global", "local", "nomlm", "plain")) + " |")

    lines += ["", "### Wall time per stage (s) and peak RSS (MB), GLoDe cells (hf: the reference's training + test)", "",
              "| target | prepare | train_source | initial_labels | pseudo_label (r1, r2) | denoise (r1, r2) | train_target (r1, r2) | evaluate (each) | hf reference | peak RSS |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for lang in ORDER:
        c, h = cells.get((lang, "glode")), cells.get((lang, "hf"))
        if c is None and h is None:
            continue
        st = dict((cells.get((lang, "zeroshot")) or {}).get("stages", {}))
        for name, s in (c or {}).get("stages", {}).items():
            if s.get("ran") or name not in st:
                st[name] = s

        def t(*names):
            vals = [st[n]["seconds"] for n in names if n in st and st[n].get("ran")]
            return ", ".join(f"{v:.0f}" for v in vals) if vals else "-"

        peak = max([s["peak_rss_mb"] for s in st.values() if s.get("ran")] + [0])
        hf = (h or {}).get("stages", {}).get("hf_reference")
        lines.append(f"| {lang} | {t('prepare')} | {t('train_source')} | {t('initial_labels')} | {t('pseudo_label@r1', 'pseudo_label@r2')} | "
                     f"{t('denoise@r1', 'denoise@r2')} | {t('train_target@r1', 'train_target@r2')} | "
                     f"{t('evaluate@r0', 'evaluate@r1', 'evaluate@r2')} | "
                     f"{'-' if not hf else str(round(hf['seconds'])) + ' (' + str(round(hf['peak_rss_mb'])) + ' MB)'} | {peak:.0f} |")
    commits = sorted({c["commit"][:8] for c in cells.values()})
    loads = [s["load_before"] for c in cells.values() for s in c["stages"].values() if s.get("ran")]
    if proto.name == "v1":  # the budget check that led to v2
        lines += ["", "### Training budget check: 1 epoch (the protocol) vs 3 epochs for every model (test F1, %)", "",
                  "| target | HF 1 epoch | glode r0 1 epoch | HF 3 epochs | glode r0 3 epochs | plain r2 3 epochs | GLoDe r2 3 epochs | GLoDe on fresh labels r2 3 epochs |",
                  "|---|---|---|---|---|---|---|---|"]
        known = set(proto.plan()) | set(cells)
        for lang in ORDER:
            if not any((lang, v) in known for v in ("hf3", "zeroshot3", *THREE_EPOCH_ROUNDS)):
                continue
            h3 = (cells.get((lang, "hf3")) or {}).get("rounds", {}).get("hf", {}).get("f1")

            def r2_3(variant, lang=lang):  # "-": not planned for this language, "pending": planned, not measured
                return _fmt(_f1(cells, lang, variant, "r2")) if (lang, variant) in known else "-"

            r0_3 = next((v for v in (_f1(cells, lang, x, "r0") for x in ("zeroshot3", *THREE_EPOCH_ROUNDS)) if v is not None), None)
            lines.append(f"| {lang} | {_fmt(_f1(cells, lang, 'hf', 'hf'))} | {_fmt(_f1(cells, lang, 'zeroshot', 'r0'))} | "
                         f"{_fmt(h3)} | {_fmt(r0_3)} | {r2_3('plain3')} | {r2_3('glode3')} | {r2_3('fresh3')} |")
    lines += ["", render_steps(cells).rstrip("\n")]
    lines += ["", f"Measured cells: {len(cells)} of {len(proto.plan())}; project commit(s) {', '.join(commits) or '-'}; "
              f"1-minute load average before a stage: median {sorted(loads)[len(loads) // 2] if loads else '-'} "
              f"(2 cores; above 2 means another job shared the CPU and the times are inflated)."]
    return "\n".join(lines) + "\n"


def render_x3(cells: dict) -> str:
    """Exploration cells, one row each: what was run, at which commit, and what it scored."""
    lines = ["| target | variant | seed | r0 test F1 | last round test F1 | pseudo-label F1 before -> after denoising, per round "
             "| optimiser steps per round | commit (r0's) |", "|---|---|---|---|---|---|---|---|"]
    for (lang, variant, seed), c in sorted(cells.items()):
        rounds = c["rounds"]
        last = v3_rounds(variant)[-1] if variant in {**V3_VARIANTS, **X3_VARIANTS, **X4_VARIANTS} else list(rounds)[-1]
        pl = []
        for r, x in rounds.items():
            p = x.get("pseudo_label") or {}
            if p.get("before") and p.get("after"):
                pl.append(f"{r}: {100 * p['before']['f1']:.1f} -> {100 * p['after']['f1']:.1f}")
        steps = sorted({x.get("optimizer_steps") for r, x in rounds.items() if r != "r0"} - {None})
        lines.append(f"| {lang} | {variant} | {seed} | {_fmt(rounds['r0'].get('f1'))} | {_fmt((rounds.get(last) or {}).get('f1'))} "
                     f"| {'; '.join(pl) or '-'} | {', '.join(map(str, steps)) or '-'} | {c['commit'][:8]} ({c.get('r0_commit', c['commit'])[:8]}) |")
    return "\n".join(lines) + "\n"


def cmd_render(args) -> int:
    """Rewrite the generated block of each protocol that has cells (or markers) in docs/RESULTS.md."""
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Results\n"
    for proto in PROTOCOLS.values():
        cells = load_cells(proto)
        if proto.begin not in text or proto.end not in text:
            if not cells:
                continue
            print(f"{RESULTS_MD}: markers {proto.begin} ... {proto.end} missing; place them where protocol "
                  f"{proto.name}'s tables go", file=sys.stderr)
            return 1
        head, rest = text.split(proto.begin, 1)
        _, tail = rest.split(proto.end, 1)
        body = render_x3(cells) if proto.explore else render_v3(cells, proto) if proto.seeded else render_tables(cells, proto)
        text = head + proto.begin + "\n" + body + proto.end + tail
    RESULTS_MD.write_text(text)
    print(f"wrote {RESULTS_MD}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), default="v2", help="which protocol's cells (default: v2)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure pending cells")
    r.add_argument("--only", action="append", help="LANG:VARIANT (repeat; v3: LANG:VARIANT:SEED, or every planned "
                   "seed); default: every cell of the plan")
    r.add_argument("--force", action="store_true", help="rerun cells that are already measured")
    r.add_argument("--workdir", default=str(ROOT.parent / "bench-work"), help="where the per-language work folders live")
    r.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"), help="the benchmark corpora")
    r.add_argument("--commit", help="project commit to snapshot for new work folders (default: the commit of "
                   "the protocol's measured cells, else HEAD)")
    sub.add_parser("status", help="list measured and pending cells (v3: also skipped variants and the estimated cost)")
    sub.add_parser("render", help="write the tables of every protocol into docs/RESULTS.md")
    sub.add_parser("estimate", help="protocol v3's estimated cost, from the v2 cells' stage times")
    args = ap.parse_args(argv)
    return {"run": cmd_run, "status": cmd_status, "render": cmd_render, "estimate": cmd_estimate}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
