"""The harness every protocol of `bench/results.py` shares: work folders, params, running and
timing the stages, collecting a cell's metrics, and the helpers the renderings share.

A protocol (`Protocol`) is a fixed set of settings and variants; a cell is one (language,
variant, seed), the seed being `train.seed` (r0 changes with it). Each (language, seed) gets a
work folder under `--workdir` (outside the project: CoNLL text must not enter the repository)
holding a snapshot of the project at one commit (`git archive`), the corpus slices and a DVC
project without git. The snapshot is put first on PYTHONPATH, so edits to the live checkout never
leak into a running benchmark. A cell writes `params.yaml`, runs the stages one by one with
`dvc repro --single-item` (DVC skips what is unchanged, so the variants of a seed share its r0),
times each stage and records its peak RSS. After the evaluate stages, bench/sentence_counts.py
(the snapshot's own copy) reloads the last model and the test table with glode's functions and
stores per test sentence (tp, predicted, gold) in the cell; the sums must reproduce the stage's
P/R/F1 exactly or the cell fails. (Per-seed DVC experiments are not an option: the work folders
are DVC projects without git, so that only the pinned snapshot runs, and `dvc exp` needs git.)
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import json
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

LANGUAGES = {  # target -> (corpus family, entity types, span cap in words)
    "de": ("conll", ["PER", "ORG", "LOC", "MISC"], 4),
    "es": ("conll", ["PER", "ORG", "LOC", "MISC"], 4),
    "nl": ("conll", ["PER", "ORG", "LOC", "MISC"], 4),
    "ar": ("wikiann", ["PER", "ORG", "LOC"], 6),
    "hi": ("wikiann", ["PER", "ORG", "LOC"], 6),
    "zh": ("wikiann", ["PER", "ORG", "LOC"], 6),
}
ZH_CHAR_CAP = 10
ORDER = ["de", "es", "nl", "ar", "hi", "zh"]  # the tables' row order
ABLATION_LANGS = ["de", "ar"]

NO_DENOISING = {"denoise.use-global": False, "denoise.use-local": False, "denoise.start": "model"}
R0_SECTIONS = ("train", "model", "data", "encoder", "target")  # params r0's stages read
R0_STAGES = ("check", "prepare", "encoder", "train_source", "initial_labels", "evaluate@r0", "pseudo_label@r1")  # shared in a folder


@dataclass(frozen=True)
class Protocol:
    """One fixed benchmark protocol: its variants and settings, cells, work folders and place in
    docs/RESULTS.md. Its code lives in ``bench/results_<name>.py``; `bench/results.py` lists it."""

    name: str
    cells: Path  # raw JSON per cell
    work_subdir: str  # under --workdir
    variants: dict  # name -> (description, params overrides; None: not defined yet, skipped)
    sizes: dict  # sentences per corpus slice: source_train, source_dev, target_unlabelled, target_test
    epochs: int  # train.epochs of r0 and every round
    rounds: int  # self-training rounds of a variant that does not set its own
    render: Callable  # (cells, protocol) -> its block of docs/RESULTS.md
    plan: Callable[[], list] = list  # every planned cell (language, variant, seed), undefined variants included
    explore: bool = False  # the checkout's code (or --commit's), no pinned commit; work folders follow the code
    estimate: Callable[[], str] | None = None  # the plan's cost, as text
    status_notes: Callable[["Protocol"], list] | None = None  # lines `status` adds
    r0_variant: str = "default"  # the variant whose r0 (work folder) the others share unless they change what r0 reads
    # per test sentence counts of the last model (bench/sentence_counts.py, scored in fp32), checked against the
    # evaluate stage's metrics; off where the stage scores otherwise by design (x38: bf16) and no bootstrap needs them
    sentence_counts: bool = True

    @property
    def source(self) -> str:
        return f"bench/results_{self.name}.py"

    @property
    def begin(self) -> str:  # render markers in docs/RESULTS.md
        return f"<!-- results-{self.name}:begin (bench/results.py --protocol {self.name} render) -->"

    @property
    def end(self) -> str:
        return f"<!-- results-{self.name}:end -->"

    def cell_path(self, lang: str, variant: str, seed: int) -> Path:
        return self.cells / f"{lang}-{variant}-s{seed}.json"

    def planned(self) -> list[tuple[str, str, int]]:
        """The plan's cells whose variant is defined, in priority order."""
        return [c for c in self.plan() if self.defined(c[1])]

    def defined(self, variant: str) -> bool:
        return self.variants[variant][1] is not None

    def overrides(self, variant: str, seed: int) -> dict:
        """The protocol's settings, then the variant's own overrides."""
        own = self.variants[variant][1]
        if own is None:
            raise KeyError(f"variant {variant} is not defined yet ({self.source}: its overrides are None)")
        return {"train.epochs": self.epochs, "train.seed": seed, "rounds": self.rounds, **own}

    def round_epochs(self, variant: str) -> float:
        """Passes over the source sentences per self-training round of a variant."""
        return float((self.variants[variant][1] or {}).get("retrain.epochs") or self.epochs)

    def rounds_of(self, variant: str) -> list[str]:
        """The models a cell trains: r0, then its rounds (a zero-shot cell: r0 only)."""
        if variant == "zeroshot":
            return ["r0"]
        n = int((self.variants[variant][1] or {}).get("rounds", self.rounds))
        return ["r0", *(f"r{i}" for i in range(1, n + 1))]

    def workdir(self, lang: str, variant: str, seed: int) -> str:
        """Work folder name: one per (language, seed), so each seed trains its own r0 and shares it
        with every variant of that seed; a variant that changes what r0 reads (the protocol's
        epochs included), compared with ``r0_variant``, gets its own (v3's nomlm, v4's paper)."""
        own, base = ({"train.epochs": self.epochs, **(self.variants[v][1] or {})} for v in (variant, self.r0_variant))
        changes_r0 = any(key.split(".", 1)[0] in R0_SECTIONS and own.get(key) != base.get(key) for key in {*own, *base})
        return f"{lang}-s{seed}" + (f"-{variant}" if changes_r0 else "")


# --------------------------------------------------------------------------- work folders


def head_commit() -> str:
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


def setup_workdir(lang: str, workroot: Path, shared: Path, commit: str, sizes: dict, name: str) -> Path:
    """Create (once) a work folder ``workroot/name``: project snapshot, corpus slices of ``sizes``
    sentences, DVC without git."""
    work = workroot / name
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
    for output in ("data", "metrics", "logs", "reports", "rounds", "models", "dvc.lock"):
        p = work / output
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
    """r0's stages, then each round's; only r0 and the last round are scored on the test set
    (an intermediate round's test F1 is not part of a table, and a 3000-sentence test costs)."""
    names = ["check", "prepare", "encoder", "train_source", "evaluate@r0", "initial_labels"]
    for r in rounds[1:]:
        names += [f"pseudo_label@{r}", f"denoise@{r}", f"train_target@{r}"]
    if len(rounds) > 1:
        names.append(f"evaluate@{rounds[-1]}")
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


def run_cell(proto: Protocol, lang: str, variant: str, seed: int, workroot: Path, shared: Path, commit: str, log) -> dict:
    """One cell: the stages, then per test sentence entity counts of its last model, which must
    reproduce the evaluate stage's metrics exactly (bench/sentence_counts.py)."""
    desc = proto.variants[variant][0]
    overrides = proto.overrides(variant, seed)
    rounds = proto.rounds_of(variant)
    work = setup_workdir(lang, workroot, shared, commit, proto.sizes, proto.workdir(lang, variant, seed))
    if proto.explore:
        refresh_code(work, commit)
    snapshot = json.loads((work / "SNAPSHOT.json").read_text())
    params = write_params(work, lang, overrides)
    stages: dict[str, dict] = {}
    step = stepper(f"{lang}:{variant}:s{seed}", work, log, stages)
    r0_done = all((work / p).exists() for p in ("models/r0", "metrics/r0.json", "rounds/r0/labels.parquet"))
    for name in stage_names(rounds):
        if proto.explore and r0_done and name in R0_STAGES and name not in ("check", "pseudo_label@r1"):
            continue  # exploration keeps the folder's r0 (trained by the code in SNAPSHOT.json's r0_commit)
        step(name, ["dvc", "repro", "--single-item", name])
    last = rounds[-1]
    counts = sentence_counts(work, variant, last, params, step) if proto.sentence_counts else None
    per_round = collect(work, rounds)
    for r, x in per_round.items():
        if r not in ("r0", last):  # not scored by this cell: the folder's metrics/rN.json may be another variant's
            for k in ("f1", "precision", "recall", "span_f1", "per_type", "gold_entities_over_cap", "truncated_words"):
                x[k] = None
        x["optimizer_steps"] = x.get("history_steps") or (x["train_steps"] * params["train"]["epochs"] if x.get("train_steps") else None)
    extra = {"r0_commit": snapshot.get("r0_commit", snapshot["commit"])} if proto.explore else {}
    if counts is not None and counts["f1"] != per_round[last]["f1"]:
        raise RuntimeError(f"{lang}:{variant}:s{seed}: per-sentence counts give F1 {counts['f1']!r}, "
                           f"metrics/{last}.json {per_round[last]['f1']!r}")
    if counts is not None:
        extra["sentence_counts"] = {last: {k: counts[k] for k in ("sentences", "tp", "pred", "gold")}}
    return {**extra, "language": lang, "variant": variant, "seed": seed, "description": desc, "commit": snapshot["commit"],
            "workdir": work.name, "sentences": snapshot["sentences"], "overrides": overrides, "params": params,
            "span_cap": params["model"]["max-span-len"], "epochs": params["train"]["epochs"], "rounds": per_round,
            "stages": stages, "machine": machine(),
            "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}


def sentence_counts(work: Path, variant: str, last: str, params: dict, step) -> dict:
    """Per test sentence (tp, predicted, gold) of the cell's last model, by the snapshot's own
    bench/sentence_counts.py (it imports the snapshot's glode, which the checkout's may not match)."""
    counts_json = work / "counts" / f"{variant}-{last}.json"
    if counts_json.exists():
        counts_json.unlink()
    step(f"sentence_counts@{last}", [sys.executable, str(work / "bench" / "sentence_counts.py"), "--model", f"models/{last}",
                                     "--test", "tables/target_test.parquet", "--encoder", "encoder",
                                     "--metrics", f"metrics/{last}.json", "--batch-size", str(params["evaluate"]["batch-size"]),
                                     "--out", str(counts_json.relative_to(work))])
    return json.loads(counts_json.read_text())


# --------------------------------------------------------------------------- rendering helpers


def bench_module(name: str):
    """A script of bench/ as a module (bench/ is not a package), loaded once."""
    key = f"glode_bench_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, ROOT / "bench" / f"{name}.py")
        sys.modules[key] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[key]


def load_cells(proto: Protocol) -> dict[tuple, dict]:
    return {(c["language"], c["variant"], c["seed"]): c
            for c in (json.loads(p.read_text()) for p in sorted(proto.cells.glob("*.json")))}


def fmt(x, digits=1):
    """An F1 (0-1) in points, or pending."""
    return "pending" if x is None else f"{100 * x:.{digits}f}"


def render_exploration(cells: dict, proto: Protocol) -> str:
    """Exploration cells, one row each: what was run, at which commit, and what it scored."""
    lines = ["| target | variant | seed | r0 test F1 | last round test F1 | pseudo-label F1 before -> after denoising, per round "
             "| optimiser steps per round | commit (r0's) |", "|---|---|---|---|---|---|---|---|"]
    for (lang, variant, seed), c in sorted(cells.items()):
        rounds = c["rounds"]
        last = proto.rounds_of(variant)[-1] if variant in proto.variants else list(rounds)[-1]
        pl = []
        for r, x in rounds.items():
            p = x.get("pseudo_label") or {}
            if p.get("before") and p.get("after"):
                pl.append(f"{r}: {100 * p['before']['f1']:.1f} -> {100 * p['after']['f1']:.1f}")
        steps = sorted({x.get("optimizer_steps") for r, x in rounds.items() if r != "r0"} - {None})
        lines.append(f"| {lang} | {variant} | {seed} | {fmt(rounds['r0'].get('f1'))} | {fmt((rounds.get(last) or {}).get('f1'))} "
                     f"| {'; '.join(pl) or '-'} | {', '.join(map(str, steps)) or '-'} | {c['commit'][:8]} ({c.get('r0_commit', c['commit'])[:8]}) |")
    return "\n".join(lines) + "\n"
