"""Benchmark of one denoising step (glode/denoising/) against its floor and a faithful reference.

For each size N (target spans; a source set of N/10) it generates synthetic clustered span
vectors with noisy pseudo labels, then runs, each in its own subprocess so that peak RSS
numbers do not contaminate each other, and alternating the variants on every repeat:

* ``faiss``      the floor: a bare faiss exact inner-product search of the same queries
                 against the same memory bank with the same K (index add + search, which
                 returns the full N x K matrices). Above ``--exact-max`` it is timed on a
                 sample of queries and extrapolated linearly (marked ``estimated``).
* ``glode``      glode.denoising.update.denoise as the pipeline calls it (index="auto"), but
                 without the agreement gate (``gate="none"``), so that its labels can be compared
                 with the reference's ungated update.
* ``glode-exact`` the same with index="exact", where "auto" chose IVF and N <= ``--exact-max``:
                 the ground truth for the agreement of the approximate index.
* ``reference``  the reference code's approach: per-span Python loops for the prototype EMA,
                 the thresholds and the class counts, and one search returning the full
                 N x (K+1) neighbour matrices (K+1 so that it can drop the span itself, like
                 glode, and be compared with it label for label). Only up to ``--reference-max``.
* ``quality``    where "auto" chose IVF: recall@K of the IVF search against exact search and
                 the agreement of denoised labels with exact denoising, on a sample of queries
                 (exact counts for the sample, thresholds of the full approximate run).

Usage: ``python bench/denoise_bench.py --sizes 50000 200000`` (writes bench/results/denoise.json
and prints a table). Numbers are wall seconds of the step alone (loading excluded) and the
child's peak RSS (VmHWM), which includes the interpreter and the loaded inputs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "denoise.json"


# --------------------------------------------------------------------------- data


def make_data(
    n: int,
    *,
    d: int = 128,
    n_classes: int = 5,
    source_ratio: float = 0.1,
    entity_rate: float = 0.03,
    o_subclusters: int = 400,
    entity_subclusters: int = 60,
    centre_weight: float = 0.35,
    sub_weight: float = 0.8,
    noise: float = 0.07,
    shift: float = 0.15,
    entity_error: float = 0.2,
    o_error: float = 0.005,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Clustered unit vectors: each class a centre plus sub-clusters (surface forms, contexts).

    Entities are ``entity_rate`` of the spans (docs/METHOD.md: 2-3%). Target vectors carry a
    language shift. Pseudo labels flip ``entity_error`` of gold entities (to O or another
    type) and ``o_error`` of O spans; predicted entities get a soft vector, O one-hot.
    """
    rng = np.random.default_rng(seed)

    def unit(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=-1, keepdims=True)

    C = n_classes
    centres = unit(rng.standard_normal((C, d)))
    subs = [unit(rng.standard_normal((o_subclusters if c == 0 else entity_subclusters, d))) for c in range(C)]
    lang = unit(rng.standard_normal(d))

    def draw(m: int, lang_shift: float) -> tuple[np.ndarray, np.ndarray]:
        y = np.where(rng.random(m) < entity_rate, rng.integers(1, C, m), 0)
        X = np.empty((m, d), np.float32)
        for a in range(0, m, 1 << 18):  # bounded temporaries at 2M
            b = min(a + (1 << 18), m)
            yc = y[a:b]
            sub = np.empty((b - a, d))
            for c in range(C):
                idx = np.flatnonzero(yc == c)
                sub[idx] = subs[c][rng.integers(0, len(subs[c]), len(idx))]
            X[a:b] = unit(centre_weight * centres[yc] + sub_weight * sub + lang_shift * lang
                          + noise * rng.standard_normal((b - a, d)))
        return X, y

    S, s_labels = draw(int(n * source_ratio), 0.0)
    Q, gold = draw(n, shift)
    pred = gold.copy()
    ent = np.flatnonzero(gold != 0)
    flip = ent[rng.random(len(ent)) < entity_error]
    pred[flip] = (gold[flip] + rng.integers(1, C, len(flip))) % C
    o_rows = np.flatnonzero(gold == 0)
    flip_o = o_rows[rng.random(len(o_rows)) < o_error]
    pred[flip_o] = rng.integers(1, C, len(flip_o))
    Y = np.zeros((n, C), np.float32)
    rows = np.flatnonzero(pred != 0)
    Y[pred == 0, 0] = 1.0
    top = rng.uniform(0.5, 0.95, len(rows))
    others = (pred[rows, None] + np.arange(1, C)[None, :]) % C
    Y[rows, pred[rows]] = top
    Y[rows[:, None], others] = rng.dirichlet(np.ones(C - 1), len(rows)) * (1 - top)[:, None]
    return {"Q": Q, "Y": Y, "S": S, "s_labels": s_labels, "gold": gold}


# --------------------------------------------------------------------------- reference


def reference_denoise(Q, Y, S, s_labels, *, m, k, o_keep_rate, local_scale, momentum, seed):
    """The reference code's way: Python loops per span, full N x (K+1) neighbour matrices."""
    import faiss

    from glode.denoising.views import build_bank

    N, C = Y.shape
    y_hat = Y.argmax(axis=1)
    mu = np.zeros((C, Q.shape[1]), dtype=np.float64)
    i = j = 0
    M = len(S)
    while i < M or j < N:  # ordered momentum update, one span at a time, source and target paired
        if j >= N or (i < M and (i + 0.5) / M <= (j + 0.5) / N):
            x, c, i = S[i], s_labels[i], i + 1
        else:
            x, c, j = Q[j], y_hat[j], j + 1
        mu[c] = momentum * mu[c] + (1 - momentum) * x
    mu /= np.linalg.norm(mu, axis=1, keepdims=True)
    g = Q @ mu.astype(np.float32).T
    sums, counts = [0.0] * C, [0] * C
    for s in range(N):
        c = int(y_hat[s])
        sums[c] += float(g[s, c])
        counts[c] += 1
    tau_g = np.array([sums[c] / (counts[c] + 1) for c in range(C)])  # the reference's +1 (a zero entry)
    G = g > tau_g
    G[:, 0] |= g.argmax(axis=1) == 0

    bank = build_bank(S, s_labels, Q, y_hat, o_keep_rate=o_keep_rate, seed=seed)
    index = faiss.IndexFlatIP(Q.shape[1])
    index.add(bank.vectors)
    _, I = index.search(Q, k + 1)  # the full N x (K+1) matrices
    n = np.zeros((N, C), dtype=np.int32)
    for s in range(N):
        row = I[s]
        row = row[row != bank.target_pos[s]][:k]
        n[s] = np.bincount(bank.labels[row], minlength=C)
    sums, counts = [0.0] * C, [0] * C
    for s in range(N):
        c = int(y_hat[s])
        sums[c] += float(n[s, c])
        counts[c] += 1
    tau_l = local_scale * np.array([sums[c] / (counts[c] + 1) for c in range(C)])
    L = n > tau_l
    L[:, 0] |= n[:, 0] > n[:, 1:].max(axis=1)

    Gh = G / np.maximum(G.sum(1, keepdims=True), 1)
    Lh = L / np.maximum(L.sum(1, keepdims=True), 1)
    u = (Gh + Lh) / 2
    tot = u.sum(1, keepdims=True)
    u = np.where(tot > 0, u / np.where(tot > 0, tot, 1), Y)
    Y_new = m * Y + (1 - m) * u
    Y_new /= Y_new.sum(1, keepdims=True)
    return Y_new.astype(np.float32), u, n


# --------------------------------------------------------------------------- children


def _rss_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load(data_dir: Path) -> dict[str, np.ndarray]:
    return {name: np.load(data_dir / f"{name}.npy") for name in ("Q", "Y", "S", "s_labels", "gold")}


def _denoise_settings(args, index: str = "auto"):
    """(settings, index options) of the benchmarked step: the reference's EMA prototypes and no
    gate, the other keys at params.yaml's defaults unless given on the command line."""
    from glode.settings import DenoiseSettings, IndexOptions

    settings = DenoiseSettings(k=args.k, o_keep_rate=args.o_keep_rate, local_scale=args.local_scale, prototype="ema",
                               momentum=args.momentum, seed=args.seed, auto_threshold=args.auto_threshold,
                               nprobe=args.nprobe, gate="none", index=index)
    options = IndexOptions(ivf_list_size=args.ivf_list_size, ivf_niter=args.ivf_niter, chunk_size=args.chunk_size)
    return settings, options


def run_child(args) -> None:
    """One variant on one data set; writes a JSON record (and outputs for agreement) to --record."""
    import faiss

    from glode.denoising.update import DenoiseInput, denoise
    from glode.denoising.views import build_bank

    data_dir = Path(args.data)
    data = _load(data_dir)
    Q, Y, S, s_labels, gold = data["Q"], data["Y"], data["S"], data["s_labels"], data["gold"]
    rec: dict = {"variant": args.child, "rss_inputs_mb": _rss_mb("VmRSS"), "threads": faiss.omp_get_max_threads()}
    outputs: dict[str, np.ndarray] = {}

    if args.child in ("faiss", "faiss-sample"):
        bank = build_bank(S, s_labels, Q, Y.argmax(1), o_keep_rate=args.o_keep_rate, seed=args.seed)
        queries = Q
        if args.child == "faiss-sample":
            rows = np.sort(np.random.default_rng(args.seed).choice(len(Q), args.sample, replace=False))
            queries = np.ascontiguousarray(Q[rows])
        t, c = time.perf_counter(), _cpu()
        index = faiss.IndexFlatIP(Q.shape[1])
        index.add(bank.vectors)
        D, I = index.search(queries, args.k)
        rec["seconds"], rec["cpu_seconds"] = time.perf_counter() - t, _cpu() - c
        rec["rss_peak_mb"] = _rss_mb("VmHWM")
        rec["bank_size"] = bank.size
        if args.child == "faiss-sample":
            rec["seconds"] *= len(Q) / len(queries)
            rec["cpu_seconds"] *= len(Q) / len(queries)
            rec["estimated_from_queries"] = len(queries)
            rec["rss_peak_mb"] = None
        del D, I
    elif args.child in ("glode", "glode-exact"):
        settings, options = _denoise_settings(args, index="exact" if args.child == "glode-exact" else "auto")
        t, c = time.perf_counter(), _cpu()
        r = denoise(DenoiseInput(Q, Y, S, s_labels), settings, args.m, options)
        rec["seconds"], rec["cpu_seconds"] = time.perf_counter() - t, _cpu() - c
        rec["rss_peak_mb"] = _rss_mb("VmHWM")
        rec.update(bank_size=r.bank_size, index=r.index_kind, phases=r.timings,
                   missing_neighbours=r.missing_neighbours)
        if args.child == "glode":
            rec["summary"] = r.summary(gold=gold)
        outputs = {"y_new": r.y_new, "u_arg": r.u.argmax(1), "n": r.n, "Y_new": r.Y_new}
    elif args.child == "reference":
        t, c = time.perf_counter(), _cpu()
        Y_new, u, n = reference_denoise(Q, Y, S, s_labels, m=args.m, k=args.k, o_keep_rate=args.o_keep_rate,
                                        local_scale=args.local_scale, momentum=args.momentum, seed=args.seed)
        rec["seconds"], rec["cpu_seconds"] = time.perf_counter() - t, _cpu() - c
        rec["rss_peak_mb"] = _rss_mb("VmHWM")
        outputs = {"y_new": Y_new.argmax(1), "u_arg": u.argmax(1), "n": n, "Y_new": Y_new}
    elif args.child == "quality":
        rec.update(quality(Q, Y, S, s_labels, args))
    else:
        raise SystemExit(f"unknown variant {args.child}")

    if outputs and args.keep_outputs:
        for name, arr in outputs.items():
            np.save(data_dir / f"out_{args.child}_{name}.npy", arr)
    Path(args.record).write_text(json.dumps(rec))


def quality(Q, Y, S, s_labels, args) -> dict:
    """Recall@K of the approximate index and denoised-label agreement with exact search, on a query sample."""
    from glode.denoising.update import DenoiseInput, combine, denoise, progressive_update
    from glode.denoising.views import MemoryBank, build_bank, build_index, neighbour_counts, search_neighbours

    settings, options = _denoise_settings(args)
    r = denoise(DenoiseInput(Q, Y, S, s_labels), settings, args.m, options)
    if r.index_kind == "exact":
        return {"index": "exact", "recall_at_k": 1.0}
    y_hat = r.y_prev
    bank = build_bank(S, s_labels, Q, y_hat, o_keep_rate=settings.o_keep_rate, seed=settings.seed)
    k, C = settings.k, Y.shape[1]
    rows = np.sort(np.random.default_rng(args.seed + 1).choice(len(Q), min(args.sample, len(Q)), replace=False))
    q, pos = np.ascontiguousarray(Q[rows]), bank.target_pos[rows]
    approx = build_index(bank.vectors, "ivf", nprobe=settings.nprobe, seed=settings.seed, options=options)
    exact = build_index(bank.vectors, "exact", nprobe=settings.nprobe, seed=settings.seed, options=options)
    ia, ka = search_neighbours(approx, q, pos, k)
    ie, ke = search_neighbours(exact, q, pos, k)
    hits = [np.intersect1d(a[x], b[z]).size for a, x, b, z in zip(ia, ka, ie, ke)]
    recall = float(np.sum(hits) / ke.sum())
    sub = MemoryBank(bank.vectors, bank.labels, pos, bank.source_rows, bank.target_rows)
    n_exact, _ = neighbour_counts(q, sub, exact, k, C, chunk_size=options.chunk_size)
    L = n_exact > r.tau_local[None, :]
    L[:, 0] |= n_exact[:, 0] > n_exact[:, 1:].max(axis=1)
    u = combine(r.G[rows], L, Y[rows])
    Y_new = progressive_update(Y[rows], u, args.m)
    return {
        "index": r.index_kind, "sample": len(rows), "recall_at_k": recall,
        "sample_agree_y_new": float((Y_new.argmax(1) == r.y_new[rows]).mean()),
        "sample_agree_u": float((u.argmax(1) == r.u[rows].argmax(1)).mean()),
        "sample_agree_counts": float((n_exact == r.n[rows]).all(1).mean()),
    }


# --------------------------------------------------------------------------- parent


def spawn(variant: str, data_dir: Path, args, keep_outputs: bool) -> dict:
    record = data_dir / f"rec_{variant}.json"
    cmd = [sys.executable, __file__, "--child", variant, "--data", str(data_dir), "--record", str(record)]
    for name in ("m", "k", "o_keep_rate", "local_scale", "momentum", "seed", "auto_threshold",
                 "ivf_list_size", "nprobe", "ivf_niter", "chunk_size", "sample"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if keep_outputs:
        cmd.append("--keep-outputs")
    subprocess.run(cmd, check=True)
    return json.loads(record.read_text())


def agreement(data_dir: Path, a: str, b: str) -> dict:
    def load(v, name):
        return np.load(data_dir / f"out_{v}_{name}.npy")

    return {
        "agree_y_new": float((load(a, "y_new") == load(b, "y_new")).mean()),
        "agree_u": float((load(a, "u_arg") == load(b, "u_arg")).mean()),
        "agree_counts": float((load(a, "n") == load(b, "n")).all(1).mean()),
        "max_abs_Y_new_diff": float(np.abs(load(a, "Y_new") - load(b, "Y_new")).max()),
    }


def median(records: list[dict], key: str):
    vals = [r[key] for r in records if r.get(key) is not None]
    return float(np.median(vals)) if vals else None


VARIANTS = ("faiss", "glode", "reference", "glode-exact", "quality")


def bench_size(n: int, args, workdir: Path, previous: dict | None = None) -> dict:
    """Run the requested variants at one size; results merge into ``previous`` (same data, same seed)."""
    data_dir = workdir / str(n)
    data_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    data = make_data(n, d=args.dim, n_classes=args.classes, seed=args.seed)
    for name, arr in data.items():
        np.save(data_dir / f"{name}.npy", arr)
    del data
    print(f"[N={n}] data generated in {time.perf_counter() - t:.1f}s", flush=True)

    wanted = set(args.variants)
    exact_ok = n <= args.exact_max
    timed = []
    if "faiss" in wanted:
        timed.append("faiss" if exact_ok else "faiss-sample")
    if "glode" in wanted or "glode-exact" in wanted:
        timed.append("glode")  # glode-exact agreement needs this invocation's glode outputs
    if "reference" in wanted and n <= args.reference_max:
        timed.append("reference")
    repeats = args.repeats if n <= args.repeat_max else 1
    out: dict = dict(previous or {})
    runs: dict[str, list[dict]] = dict(out.get("runs", {}))
    for v in timed:
        runs[v] = []
    for rep in range(repeats):
        order = timed if rep % 2 == 0 else timed[::-1]
        for v in order:
            rec = spawn(v, data_dir, args, keep_outputs=(rep == 0))
            runs[v].append(rec)
            print(f"[N={n}] rep {rep} {v}: {rec['seconds']:.2f}s (cpu {rec.get('cpu_seconds', 0):.2f}s) "
                  f"peak {rec.get('rss_peak_mb')} MB", flush=True)
    out.update(n=n, source=int(n * 0.1), runs=runs)
    if "glode" in runs:
        first = runs["glode"][0]
        out.update(bank_size=first["bank_size"], index=first["index"], summary=first.get("summary"))
    for v, recs in runs.items():
        out[v] = {key: median(recs, key) for key in ("seconds", "cpu_seconds", "rss_peak_mb", "rss_inputs_mb")}
        out[v]["repeats"] = len(recs)
    floor_key = "faiss" if "faiss" in runs else "faiss-sample"
    if floor_key in runs and "glode" in runs:
        out["glode_over_floor"] = out["glode"]["seconds"] / out[floor_key]["seconds"]
        if out["glode"].get("cpu_seconds") and out[floor_key].get("cpu_seconds"):
            out["glode_over_floor_cpu"] = out["glode"]["cpu_seconds"] / out[floor_key]["cpu_seconds"]
        out["floor_estimated"] = floor_key == "faiss-sample"
    if "reference" in timed:
        out["reference_over_glode"] = out["reference"]["seconds"] / out["glode"]["seconds"]
        out["glode_vs_reference"] = agreement(data_dir, "glode", "reference")
    if out.get("index", "exact") != "exact":
        if "glode-exact" in wanted and exact_ok:
            rec = spawn("glode-exact", data_dir, args, keep_outputs=True)
            out["glode-exact"] = {"seconds": rec["seconds"], "cpu_seconds": rec.get("cpu_seconds"),
                                  "rss_peak_mb": rec["rss_peak_mb"]}
            out["approx_vs_exact"] = agreement(data_dir, "glode", "glode-exact")
            print(f"[N={n}] glode-exact: {rec['seconds']:.2f}s", flush=True)
        if "quality" in wanted:
            out["quality"] = spawn("quality", data_dir, args, keep_outputs=False)
            print(f"[N={n}] quality: {out['quality']}", flush=True)
    elif "glode" in runs:
        out["quality"] = {"index": "exact", "recall_at_k": 1.0}
    if not args.keep_data:
        shutil.rmtree(data_dir)
    return out


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def print_table(results: list[dict]) -> None:
    """Markdown table: medians; '*' marks a floor extrapolated from a query sample."""
    head = ("N", "bank", "index", "(a) faiss s", "(b) glode s", "b/a", "b/a cpu", "(c) ref s", "RSS a MB",
            "RSS b MB", "RSS c MB", "recall@K", "agree Y_new", "agree u")
    rows = []
    for r in results:
        floor = r.get("faiss") or r.get("faiss-sample") or {}
        glode = r.get("glode", {})
        ref = r.get("reference", {})
        agree = r.get("approx_vs_exact") or {}
        q = r.get("quality", {})
        a_y = agree.get("agree_y_new", q.get("sample_agree_y_new"))
        a_u = agree.get("agree_u", q.get("sample_agree_u"))
        rows.append((
            str(r["n"]), str(r.get("bank_size", "-")), r.get("index", "-"),
            fmt(floor.get("seconds")) + ("*" if r.get("floor_estimated") else ""), fmt(glode.get("seconds")),
            fmt(r.get("glode_over_floor"), ".2f"), fmt(r.get("glode_over_floor_cpu"), ".2f"),
            fmt(ref.get("seconds")), fmt(floor.get("rss_peak_mb"), ".0f"),
            fmt(glode.get("rss_peak_mb"), ".0f"), fmt(ref.get("rss_peak_mb"), ".0f"),
            fmt(q.get("recall_at_k"), ".3f"), fmt(a_y, ".4f"), fmt(a_u, ".4f"),
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                   help="what to run (a rerun of some variants keeps the others' earlier results)")
    p.add_argument("--repeats", type=int, default=3, help="runs per variant (medians reported)")
    p.add_argument("--repeat-max", type=int, default=200_000, help="above this N, one run per variant")
    p.add_argument("--reference-max", type=int, default=200_000, help="largest N for the reference")
    p.add_argument("--exact-max", type=int, default=1_000_000,
                   help="largest N for full exact searches (floor and exact denoising)")
    p.add_argument("--sample", type=int, default=4000, help="queries for estimates and recall")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--m", type=float, default=0.8, help="EMA weight (0.8: the last, most moving round)")
    p.add_argument("--k", type=int, default=300)
    p.add_argument("--o-keep-rate", type=float, default=0.03)
    p.add_argument("--local-scale", type=float, default=0.9)
    p.add_argument("--momentum", type=float, default=0.99)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--auto-threshold", type=int, default=None, help="default: glode's")
    p.add_argument("--ivf-list-size", type=int, default=None, help="default: glode's")
    p.add_argument("--nprobe", type=int, default=None, help="default: glode's")
    p.add_argument("--ivf-niter", type=int, default=None, help="default: glode's")
    p.add_argument("--chunk-size", type=int, default=None, help="default: glode's")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--keep-data", action="store_true")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help=argparse.SUPPRESS)
    p.add_argument("--record", default=None, help=argparse.SUPPRESS)
    p.add_argument("--keep-outputs", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    from glode.settings import DenoiseSettings, IndexOptions

    defaults = {"auto_threshold": DenoiseSettings().auto_threshold, "nprobe": DenoiseSettings().nprobe,
                **{name: getattr(IndexOptions(), name) for name in ("ivf_list_size", "ivf_niter", "chunk_size")}}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.child:
        run_child(args)
        return

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="glode-denoise-bench-"))
    results = []
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    by_n = {r["n"]: r for r in previous.get("results", [])}
    for n in args.sizes:
        results.append(bench_size(n, args, workdir, by_n.get(n)))
        results[-1]["command"] = " ".join(["python", "bench/denoise_bench.py", *(argv if argv is not None else sys.argv[1:])])
        by_n[n] = results[-1]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
            "params": {k: getattr(args, k) for k in ("dim", "classes", "m", "k", "o_keep_rate", "local_scale",
                                                      "momentum", "seed", "auto_threshold", "ivf_list_size",
                                                      "nprobe", "ivf_niter", "chunk_size", "sample", "repeats")},
            "command": " ".join(["python", "bench/denoise_bench.py", *(argv if argv is not None else sys.argv[1:])]),
            "results": [by_n[k] for k in sorted(by_n)],
        }
        tmp = args.out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(args.out)  # merged with earlier sizes so runs can be split
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table([by_n[k] for k in sorted(by_n)])


if __name__ == "__main__":
    main()
