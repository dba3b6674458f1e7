"""How the stages grow with the target corpus (issue 38): wall time and peak RSS of
`pseudo_label`, `denoise` and a short `train_target` on target corpora of about 3k, 12k, 48k
and 192k sentences.

    python bench/corpus_scale.py run --project ../bench-work/x4/de-s0 \\
        --target /work/shared/data/conll/de/train.txt --work ../bench-work/scale
    python bench/corpus_scale.py render

`--project` is a glode project folder whose `tables/` (source training set, label set),
`models/r0` and `encoder/` are built (the benchmark harness's work folders qualify); it is only
read. The target corpus of size N is the first N sentences of `--target`, repeated from its
start where N is larger than the file (CoNLL de train has 12,152 sentences: 48k is it 3.95
times, 192k 15.8 times; the render says so). Repeats are identical sentences: the kNN search
finds their copies as neighbours, which is what a corpus with duplicates costs.

Each stage runs as its own child process (the stage scripts of `--commit`, extracted into the
work folder, with 2 threads), and
`os.wait4` gives its wall time and peak RSS (`ru_maxrss`: the child's resident set, file pages
it mapped included, page cache not). Stages: `pseudo_label@r1` from `models/r0`; `denoise@r1`
with GLoDe's views on (`glode preset glode`: both views, fresh predictions; `denoise.index:
auto`, i.e. IVF above 25,000 bank entries); `train_target@r1` on those labels for
`--train-epochs` of an epoch (default 0.25: 47 steps of 16 source sentences with the x4
tables), whose steps per second include loading and encoding the target corpus.

Resumable: results go to bench/results/corpus_scale.json per commit, size and stage as each
stage ends (a work folder holds one commit's outputs: use a new `--work` for another commit); a stage already recorded for this commit is skipped, and its outputs in `--work`
are reused by the next stage. `--pseudo-from` takes each size's `pseudo_label` folder and record from
another commit's work folder (the render marks that commit), to measure a change to the later
stages on the same span vectors. `render` prints the table for docs/SCALE.md: per stage, seconds
per 1,000 target sentences, the ratio of that at the largest size to that at 12k, and the
extrapolation to 1M sentences (time linear in the corpus from the two largest sizes; RSS by its
growth per sentence between them).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "corpus_scale.json"
SIZES = (3000, 12000, 48000, 192000)
STAGES = ("pseudo_label", "denoise", "train_target")
VIEWS = ["--use-global", "--use-local", "--start", "model"]  # glode preset glode


def snapshot(rev: str, work_root: Path) -> tuple[str, Path]:
    """The code of commit ``rev`` extracted under ``work_root`` (once), so that edits in the
    working tree cannot change a run that spans sessions: (short hash, folder)."""
    sha = subprocess.run(["git", "rev-parse", "--short=10", rev], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    code = work_root / f"code-{sha}"
    if not code.is_dir():
        tmp = work_root / f".code-{sha}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
        tmp.rename(code)
    return sha, code


def build_tables(project: Path, target: Path, size: int, tables: Path) -> dict:
    """The project's tables with the target corpus replaced by ``size`` sentences of ``target``."""
    from glode.conll import read_conll
    from glode.tables import write_sentences

    if (tables / "target_unlabelled.parquet").is_file():
        return json.loads((tables / "corpus.json").read_text())
    labels = json.loads((project / "tables" / "stats.json").read_text())["labels"]
    sentences = read_conll(target, labels=labels)
    picked = [sentences[i % len(sentences)] for i in range(size)]
    tmp = tables.with_name(tables.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(project / "tables", tmp)
    write_sentences(picked, tmp / "target_unlabelled.parquet")
    info = {"file": str(target), "file_sentences": len(sentences), "sentences": size,
            "repeats": round(size / len(sentences), 2)}
    (tmp / "corpus.json").write_text(json.dumps(info))
    tmp.rename(tables)
    return info


def run_child(cmd: list[str], cwd: Path, code: Path, threads: int, log: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd[:2])} failed (exit {os.waitstatus_to_exitcode(status)}); see {log}")
    return {"seconds": round(seconds, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def stage_command(stage: str, code: Path, project: Path, work: Path, train_epochs: float) -> list[str]:
    py = [sys.executable, str(code / "stages" / f"{stage}.py")]
    rounds = work / "rounds" / "r1"
    if stage == "pseudo_label":
        return py + ["--round", "r1", "--prev", "r0", "--out", str(rounds / "pseudo"), "--tables", str(work / "tables"),
                     "--models", str(work / "models")]
    if stage == "denoise":
        return py + ["--round", "r1", "--pseudo", str(rounds / "pseudo"), "--prev-labels", str(rounds / "unused.parquet"),
                     "--out", str(rounds / "labels.parquet"), "--metrics", str(rounds / "denoise.json"), *VIEWS]
    return py + ["--round", "r1", "--prev-model", str(work / "models" / "r0"), "--pseudo", str(rounds / "pseudo"),
                 "--labels-table", str(rounds / "labels.parquet"), "--out", str(work / "models" / "r1"),
                 "--logs", str(work / "logs" / "r1"), "--tables", str(work / "tables"), "--encoder",
                 str(work / "encoder"), "--retrain-epochs", str(train_epochs)]


def load_results() -> dict:
    return json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}


def save_results(results: dict) -> None:
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    tmp.replace(RESULTS)


def run(args) -> None:
    project, work_root = args.project.resolve(), args.work.resolve()
    work_root.mkdir(parents=True, exist_ok=True)
    rev, code = snapshot(args.commit, work_root)
    results = load_results()
    results["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    for size in args.sizes:
        work = work_root / str(size)
        (work / "models").mkdir(parents=True, exist_ok=True)
        for link, to in ((work / "models" / "r0", project / "models" / "r0"), (work / "encoder", project / "encoder")):
            if not link.exists():  # (the model folder finds its frozen embeddings at ../../encoder)
                link.symlink_to(to)
        corpus = build_tables(project, args.target.resolve(), size, work / "tables")
        entry = results["runs"].setdefault(rev, {}).setdefault(str(size), {"corpus": corpus})
        if args.pseudo_from and "pseudo_label" not in entry:
            reuse_pseudo(args.pseudo_from.resolve(), size, work, entry, results)
        for stage in args.stages:
            if stage in entry:
                continue
            print(f"{time.strftime('%H:%M:%S')} {size} sentences: {stage} ...", flush=True)
            res = run_child(stage_command(stage, code, project, work, args.train_epochs), work, code, args.threads,
                            work / f"{stage}.log")
            res.update(stage_facts(stage, work))
            entry[stage] = res
            results["runs"][rev]["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
            save_results(results)
            print(f"  {res['seconds']} s, peak RSS {res['peak_rss_mb']} MB", flush=True)


def reuse_pseudo(other_root: Path, size: int, work: Path, entry: dict, results: dict) -> None:
    """Take ``pseudo_label``'s folder and record from another commit's work folder (``--pseudo-from``),
    so that a change to the later stages is measured on the same span vectors without scoring the
    corpus again; the record keeps the commit it was measured at."""
    codes = sorted(other_root.glob("code-*"))
    if len(codes) != 1:
        raise SystemExit(f"--pseudo-from {other_root}: expected one code-<commit> folder, found {len(codes)}")
    other = codes[0].name.removeprefix("code-")
    measured = results["runs"].get(other, {}).get(str(size), {}).get("pseudo_label")
    folder = other_root / str(size) / "rounds" / "r1" / "pseudo"
    if measured is None or not folder.is_dir():
        raise SystemExit(f"--pseudo-from {other_root}: no measured pseudo_label at {size:,} sentences for commit {other}")
    link = work / "rounds" / "r1" / "pseudo"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(folder)
    entry["pseudo_label"] = {**measured, "commit": other}


def stage_facts(stage: str, work: Path) -> dict:
    rounds = work / "rounds" / "r1"
    if stage == "pseudo_label":
        manifest = json.loads((rounds / "pseudo" / "glode_pseudo.json").read_text())
        return {"target_spans": manifest["target_spans"], "source_spans": manifest["source_spans"]}
    if stage == "denoise":
        stats = json.loads((rounds / "denoise.json").read_text())
        return {k: stats[k] for k in ("bank_size", "index", "label_rows", "pseudo_label_f1") if k in stats}
    card = json.loads((work / "models" / "r1" / "glode_model.json").read_text())
    return {"steps": sum(h.get("steps", 0) for h in card.get("history", []))}


def render(args) -> None:
    results = load_results()
    if args.commit:
        rev = next((c for c in results["runs"] if c.startswith(args.commit)), args.commit)
    else:
        rev = max(results["runs"], key=lambda c: results["runs"][c].get("updated", ""), default=None)
    runs = {size: e for size, e in results["runs"].get(rev, {}).items() if size.isdigit()}
    sizes = sorted(runs, key=int)
    print(f"commit {rev}\n")
    print("| target sentences (repeats of the file) | target spans | stage | wall s | CPU s | s per 1k sentences | "
          "peak RSS MB | load before |")
    print("|---|---|---|---|---|---|---|---|")
    for size in sizes:
        e = runs[size]
        for stage in STAGES:
            if stage not in e:
                print(f"| {int(size):,} ({e['corpus']['repeats']}x) | | {stage} | not run at this commit | | | | |")
                continue
            r = e[stage]
            spans = e.get("pseudo_label", {}).get("target_spans", "")
            per = (f"{1000 * r['seconds'] / int(size):.1f}" if stage != "train_target"
                   else f"- ({r.get('steps', '?')} steps)")  # (a fixed number of steps: per sentence says nothing)
            at = f" (at {r['commit'][:7]})" if "commit" in r else ""  # measured at another commit (--pseudo-from)
            print(f"| {int(size):,} ({e['corpus']['repeats']}x) | {spans:,} | {stage}{at} | {r['seconds']:,} | "
                  f"{r['cpu_seconds']:,} | {per} | {r['peak_rss_mb']:,.0f} | {r['load_before']} |")
    done = [s for s in sizes if all(st in runs[s] for st in ("pseudo_label", "denoise"))]
    if "12000" in done and len(done) >= 2 and done[-1] != "12000":
        big = done[-1]
        print()
        for kind, key in (("wall", "seconds"), ("CPU", "cpu_seconds")):
            per = lambda s: sum(runs[s][st][key] for st in ("pseudo_label", "denoise")) / int(s)  # noqa: E731
            print(f"pseudo_label + denoise, {kind} s per sentence at {int(big):,} / at 12,000: {per(big) / per('12000'):.2f}")
    if len(done) >= 2:
        a, b = done[-2], done[-1]
        line = lambda key, x: x[b][key] + (x[b][key] - x[a][key]) / (int(b) - int(a)) * (1_000_000 - int(b))  # noqa: E731
        for stage in ("pseudo_label", "denoise"):
            x = {s: runs[s][stage] for s in (a, b)}
            print(f"{stage} at 1M sentences (extrapolated linearly from {int(a):,} and {int(b):,}): "
                  f"{line('seconds', x) / 3600:.1f} h wall, {line('cpu_seconds', x) / 3600:.1f} CPU h, "
                  f"{line('peak_rss_mb', x) / 1024:.1f} GB")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the missing stages of every size (resumes)")
    r.add_argument("--project", type=Path, required=True)
    r.add_argument("--target", type=Path, required=True, help="CoNLL file the target corpora are drawn from")
    r.add_argument("--work", type=Path, required=True, help="work folder (outside the repository)")
    r.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    r.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    r.add_argument("--train-epochs", type=float, default=0.25)
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--commit", default="HEAD", help="the code to run (extracted with git archive into --work)")
    r.add_argument("--pseudo-from", type=Path, help="another commit's --work folder: reuse its pseudo_label outputs "
                   "and record (to measure a change to denoise or train_target alone)")
    p = sub.add_parser("render", help="print the table of one commit (default: the last recorded)")
    p.add_argument("--commit")
    args = ap.parse_args(argv)
    run(args) if args.cmd == "run" else render(args)


if __name__ == "__main__":
    main()
