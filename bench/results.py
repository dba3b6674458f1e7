"""The benchmark tables of docs/RESULTS.md: glode's variants on the real corpora, one protocol at a time.

    python bench/results.py --protocol v3 status    # measured / pending / skipped cells, hours left
    python bench/results.py --protocol v3 estimate  # the plan's estimated cost and its arithmetic
    python bench/results.py --protocol v3 run       # every pending cell, in priority order; resumable
    python bench/results.py --protocol v3 run --only de:zeroshot:0 --only de:default:0
    python bench/results.py --protocol x4 run --only ar:views-ce:0 [--commit C]
    python bench/results.py render                  # every protocol's block of docs/RESULTS.md

A protocol fixes the settings so results stay comparable: English source = the first 3000
sentences of `conll/en` (CoNLL targets de/es/nl, PER/ORG/LOC/MISC) or `wikiann/en` (WikiAnn targets
ar/hi/zh, PER/ORG/LOC); target unlabelled corpus = the first sentences of the target's train
split, target test = its first test sentences; the snapshot's own defaults otherwise, except the
span cap: the smallest cap holding >= 95% of the English source entities (CoNLL 4 words, WikiAnn 6
words; zh 10 characters through `model.char-languages`). A cell is (language, variant, seed); it
is stored in the protocol's cells folder once measured and never rerun (`--force` reruns it). A
protocol's table comes from one snapshot commit; an exploration (`x*`) runs the checkout's code
instead and keeps a row per cell. `bench/results_harness.py` holds the shared machinery,
`bench/results_tables.py` the tables of the seeded protocols (v3, v4).

Each protocol is one file, `bench/results_<name>.py`, defining `PROTOCOL`; to add one, write that
file and add it to `PROTOCOLS` below. Kept: v3 (the current evidence), v4 (issue 36's table, at 3 epochs),
the explorations x3 and x4, and x38 (issue 38: r0 trained in bf16 against v4's fp32 r0).
Retired in issue 37 (their code last at commit 722848f, their tables still in docs/RESULTS.md):
v1 (1 epoch, the old defaults) and v2 (3 epochs, 2 rounds, one seed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
if str(ROOT / "bench") not in sys.path:  # the protocol modules, imported by name (bench/ is not a package)
    sys.path.append(str(ROOT / "bench"))
import results_v3  # noqa: E402
import results_v4  # noqa: E402
import results_x3  # noqa: E402
import results_x4  # noqa: E402
import results_x38  # noqa: E402
from results_harness import LANGUAGES, Protocol, head_commit, load_cells, run_cell  # noqa: E402

RESULTS_MD = ROOT / "docs" / "RESULTS.md"
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    results_v3.PROTOCOL,
    results_v4.PROTOCOL,
    results_x3.PROTOCOL,
    results_x4.PROTOCOL,
    results_x38.PROTOCOL,
)}


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
    return measured_at.pop() if measured_at else head_commit()


def parse_only(proto: Protocol, only: list[str]) -> list[tuple]:
    """--only values: LANG:VARIANT:SEED, or LANG:VARIANT for every seed the plan gives that variant
    on that language (seed 0 where the plan has none)."""
    cells: list[tuple] = []
    for text in only:
        parts = text.split(":")
        if len(parts) == 3 and parts[2].isdigit():
            cells.append((parts[0], parts[1], int(parts[2])))
        elif len(parts) == 2:
            planned = [c for c in proto.plan() if c[:2] == tuple(parts)]
            cells += planned or [(parts[0], parts[1], 0)]
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
    cells = parse_only(proto, args.only) if args.only else proto.planned()
    for key in cells:  # check them all before anything runs
        if len(key) != 3 or key[0] not in LANGUAGES or key[1] not in proto.variants:
            print(f"unknown cell {':'.join(map(str, key))}", file=sys.stderr)
            return 2
        if not proto.defined(key[1]):
            print(f"{':'.join(map(str, key))}: variant {key[1]} is not defined yet (its overrides in {proto.source} "
                  "are None); nothing measured", file=sys.stderr)
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
                cell = run_cell(proto, *key, workroot, Path(args.shared), commit, log)
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
    planned = proto.planned()
    for lang, variant, seed in planned:
        print(f"{lang}:{variant:9s} s{seed} {'measured' if proto.cell_path(lang, variant, seed).exists() else 'pending'}")
    for lang, variant, seed in sorted(set(load_cells(proto)) - set(planned)):  # an exploration's cells
        print(f"{lang}:{variant:9s} s{seed} measured (not planned)")
    skipped = [c for c in proto.plan() if not proto.defined(c[1])]
    for variant in sorted({v for _, v, _ in skipped}):
        n = sum(1 for c in skipped if c[1] == variant)
        print(f"skipped: {variant} ({n} cells): not defined yet; its overrides in {proto.source} are None")
    for line in proto.status_notes(proto) if proto.status_notes else []:
        print(line)
    return 0


def cmd_estimate(args) -> int:
    proto = PROTOCOLS[args.protocol]
    if proto.estimate is None:
        print(f"protocol {proto.name} has no plan, so no cost estimate", file=sys.stderr)
        return 2
    print(proto.estimate(), end="")
    return 0


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
        text = head + proto.begin + "\n" + proto.render(cells, proto) + proto.end + tail
    RESULTS_MD.write_text(text)
    print(f"wrote {RESULTS_MD}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocol", choices=sorted(PROTOCOLS), default="v3", help="which protocol's cells (default: v3)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="measure pending cells")
    r.add_argument("--only", action="append", help="LANG:VARIANT:SEED, or LANG:VARIANT for every planned seed "
                   "(repeat); default: every cell of the plan")
    r.add_argument("--force", action="store_true", help="rerun cells that are already measured")
    r.add_argument("--workdir", default=str(ROOT.parent / "bench-work"), help="where the per-language work folders live")
    r.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"), help="the benchmark corpora")
    r.add_argument("--commit", help="project commit to snapshot for new work folders (default: the commit of "
                   "the protocol's measured cells, else HEAD; explorations: HEAD)")
    sub.add_parser("status", help="list measured and pending cells, skipped variants and the estimated cost")
    sub.add_parser("render", help="write the tables of every protocol into docs/RESULTS.md")
    sub.add_parser("estimate", help="the protocol's estimated cost (v3: from the v2 cells' stage times; v4: from v3's)")
    args = ap.parse_args(argv)
    return {"run": cmd_run, "status": cmd_status, "render": cmd_render, "estimate": cmd_estimate}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
