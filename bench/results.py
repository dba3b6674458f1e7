"""Issue 5's benchmark table: glode variants and the Hugging Face reference on the real corpora.

    python bench/results.py run                 # every pending cell, in priority order
    python bench/results.py run --only de:glode --only ar:hf
    python bench/results.py status              # which cells are measured, which pending
    python bench/results.py render              # docs/RESULTS.md from bench/results/cells-v2/ (and cells/)
    python bench/results.py --protocol v1 status  # the first protocol's cells (kept as history)

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
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import io
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
    """One fixed benchmark protocol: its cells, work folders and place in docs/RESULTS.md."""

    name: str
    cells: Path  # raw JSON per cell
    work_subdir: str  # under --workdir
    plan: Callable[[], list[tuple[str, str]]]
    begin: str  # render markers in docs/RESULTS.md
    end: str

    def cell_path(self, lang: str, variant: str) -> Path:
        return self.cells / f"{lang}-{variant}.json"


PROTOCOLS = {
    "v1": Protocol("v1", ROOT / "bench" / "results" / "cells", "", plan_v1,
                   "<!-- results:begin (bench/results.py render) -->", "<!-- results:end -->"),
    "v2": Protocol("v2", ROOT / "bench" / "results" / "cells-v2", "v2", plan_v2,
                   "<!-- results-v2:begin (bench/results.py render) -->", "<!-- results-v2:end -->"),
}


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


def setup_workdir(lang: str, workroot: Path, shared: Path, commit: str, suffix: str = "") -> Path:
    """Create (once) the language's work folder: project snapshot, corpus slices, DVC without git."""
    work = workroot / f"{lang}{suffix}"
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
    counts = {
        "source_train": _slice_conll(shared / family / "en" / "train.txt", work / "data" / "en" / "train.txt", SOURCE_SENTENCES),
        "source_dev": _slice_conll(shared / family / "en" / "dev.txt", work / "data" / "en" / "dev.txt", SOURCE_DEV_SENTENCES),
        "target_unlabelled": _slice_conll(shared / family / lang / "train.txt", work / "data" / lang / "train.txt", TARGET_SENTENCES),
        "target_test": _slice_conll(shared / family / lang / "test.txt", work / "data" / lang / "test.txt", TEST_SENTENCES),
    }
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
    names = ["prepare", "encoder", "train_source", "evaluate@r0", "initial_labels"]
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
        }
    return out


def run_cell(lang: str, variant: str, workroot: Path, shared: Path, commit: str, log) -> dict:
    desc, overrides, rounds = VARIANTS[variant]
    work = setup_workdir(lang, workroot, shared, commit, WORKDIR_SUFFIX.get(variant, ""))
    snapshot = json.loads((work / "SNAPSHOT.json").read_text())
    params = write_params(work, lang, overrides or {})
    env = dict(os.environ, PYTHONPATH=str(work), DVC_NO_ANALYTICS="1")
    stages: dict[str, dict] = {}

    def step(name: str, cmd: list[str]) -> None:
        """Run, time and record one step of the cell; a failure ends the cell."""
        log.write(f"== {lang}:{variant}: {' '.join(cmd)}\n")
        res = measured(cmd, work, env, log)
        ran = cmd[:2] != ["dvc", "repro"] or "Running stage" in res["output"]  # DVC skips unchanged stages
        stages[name] = {k: v for k, v in res.items() if k != "output"} | {"ran": ran}
        if res["rc"] != 0:
            raise RuntimeError(f"{lang}:{variant}: {name} failed (exit {res['rc']}); see the harness log")

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


def cmd_run(args) -> int:
    proto = PROTOCOLS[args.protocol]
    commit = pinned_commit(proto, args.commit)
    cells = [tuple(c.split(":")) for c in args.only] if args.only else proto.plan()
    proto.cells.mkdir(parents=True, exist_ok=True)
    workroot = Path(args.workdir) / proto.work_subdir
    log_path = Path(args.workdir) / "harness.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    with open(log_path, "a") as log:
        for lang, variant in cells:
            if lang not in LANGUAGES or variant not in VARIANTS:
                print(f"unknown cell {lang}:{variant}", file=sys.stderr)
                return 2
            path = proto.cell_path(lang, variant)
            if path.exists() and not args.force:
                continue
            print(f"{dt.datetime.now():%H:%M:%S} {proto.name} {lang}:{variant} at {commit[:8]} ...", flush=True)
            try:
                cell = run_cell(lang, variant, workroot, Path(args.shared), commit, log)
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
    for lang, variant in proto.plan():
        p = proto.cell_path(lang, variant)
        print(f"{lang}:{variant:9s} {'measured' if p.exists() else 'pending'}")
    return 0


# --------------------------------------------------------------------------- rendering


def load_cells(proto: Protocol) -> dict[tuple[str, str], dict]:
    return {(c["language"], c["variant"]): c for c in (json.loads(p.read_text()) for p in sorted(proto.cells.glob("*.json")))}


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
        text = head + proto.begin + "\n" + render_tables(cells, proto) + proto.end + tail
    RESULTS_MD.write_text(text)
    print(f"wrote {RESULTS_MD}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), default="v2", help="which protocol's cells (default: v2)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure pending cells")
    r.add_argument("--only", action="append", help="LANG:VARIANT (repeat); default: every cell of the plan")
    r.add_argument("--force", action="store_true", help="rerun cells that are already measured")
    r.add_argument("--workdir", default=str(ROOT.parent / "bench-work"), help="where the per-language work folders live")
    r.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"), help="the benchmark corpora")
    r.add_argument("--commit", help="project commit to snapshot for new work folders (default: the commit of "
                   "the protocol's measured cells, else HEAD)")
    sub.add_parser("status", help="list measured and pending cells")
    sub.add_parser("render", help="write the tables into docs/RESULTS.md")
    args = ap.parse_args(argv)
    return {"run": cmd_run, "status": cmd_status, "render": cmd_render}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
