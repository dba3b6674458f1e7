"""Inspect and export the refined pseudo labels of a round (``rounds/rN/labels.parquet``).

Pure functions over DataFrames and strings; ``glode labels ...`` (glode/cli.py) only parses
options and prints. Files are read from the workspace or, with a git revision or experiment
name, through ``dvc.api.DVCFileSystem`` without touching the workspace.

Label tables are sparse (see docs/PIPELINE.md, "Refined labels"): every candidate span without a row is
one-hot ``O``, so a span missing from one round's table has the hard label ``O`` there.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

from glode.errors import GlodeError, InputError
from glode.output_formats import TaggedSentence
from glode.spans import resolve_overlaps
from glode.tables import LABELS_KIND, SENTENCES, read_table

TARGET_TABLE = "tables/target_unlabelled.parquet"
ROUNDS_DIR = "rounds"
FLIP_KINDS = ("o_to_entity", "entity_to_o", "type_swap")


def labels_path(round_name: str) -> str:
    return f"{ROUNDS_DIR}/{round_name}/labels.parquet"


# --------------------------------------------------------------------------- reading


class ProjectFiles:
    """Project files from the workspace (``rev=None``) or from a git revision / DVC experiment.

    Paths are POSIX paths relative to the project root ``root``.
    """

    def __init__(self, root: str | Path = ".", rev: str | None = None):
        self.root = Path(root)
        self.rev = rev or None
        self._fs = None
        if self.rev is not None:
            self._fs = self._open_rev()

    def _open_rev(self):
        from dvc.api import DVCFileSystem

        try:
            fs = DVCFileSystem(str(self.root), rev=self.rev)
            fs.isdir(".")  # opens the repository at that revision now (DVCFileSystem is lazy)
            return fs
        except Exception as exc:  # dvc raises several unrelated types for bad repos/revisions
            raise GlodeError(
                f"cannot open revision {self.rev!r} of the project at {self.root} ({type(exc).__name__}: {exc}); "
                "name a git commit, branch, tag or an experiment listed by `dvc exp show`"
            ) from None

    def where(self, path: str) -> str:
        """How to name ``path`` in messages."""
        return path if self.rev is None else f"{path} (revision {self.rev})"

    def exists(self, path: str) -> bool:
        if self._fs is None:
            return (self.root / path).is_file()
        return bool(self._fs.isfile(path))

    def listdir(self, path: str) -> list[str]:
        """Entry names directly under ``path`` (empty when it is missing)."""
        if self._fs is None:
            p = self.root / path
            return sorted(c.name for c in p.iterdir()) if p.is_dir() else []
        if not self._fs.isdir(path):
            return []
        return sorted(Path(str(e)).name for e in self._fs.ls(path, detail=False))

    @contextlib.contextmanager
    def local_file(self, path: str) -> Iterator[Path]:
        """A local path holding the file's content (the file itself in the workspace)."""
        if self._fs is None:
            yield self.root / path
            return
        try:
            data = self._fs.read_bytes(path)
        except FileNotFoundError:
            raise InputError(self.where(path), None, "not found at that revision (was the stage that writes it run "
                             "and committed or saved as an experiment?)") from None
        with tempfile.TemporaryDirectory(prefix="glode-rev-") as tmp:
            local = Path(tmp) / Path(path).name
            local.write_bytes(data)
            yield local

    def read_table(self, path: str, kind: str) -> pd.DataFrame:
        """``glode.tables.read_table`` on a project file; errors name the project path and revision."""
        with self.local_file(path) as local:
            try:
                return read_table(local, kind)
            except InputError as exc:
                raise InputError(self.where(path), None, exc.problem) from None


def round_sort_key(name: str) -> int:
    return int(name[1:])


def available_rounds(files: ProjectFiles) -> list[str]:
    """Rounds that have a label table, in round order."""
    names = [n for n in files.listdir(ROUNDS_DIR) if re.fullmatch(r"r\d+", n)]
    return sorted((n for n in names if files.exists(labels_path(n))), key=round_sort_key)


def read_round_labels(files: ProjectFiles, round_name: str) -> pd.DataFrame:
    """A round's label table; the class list is in ``df.attrs["classes"]``."""
    if not re.fullmatch(r"r\d+", round_name):
        raise GlodeError(f"round {round_name!r}: round names look like r0, r1, r2 ...")
    path = labels_path(round_name)
    if not files.exists(path):
        rounds = available_rounds(files)
        have = ", ".join(rounds) if rounds else "none (run `dvc repro` first)"
        raise GlodeError(f"{files.where(path)}: round {round_name} has no label table; rounds with labels: {have}")
    df = files.read_table(path, LABELS_KIND)
    classes = df.attrs.get("glode", {}).get("classes")
    df.attrs["classes"] = json.loads(classes) if classes else ["O", *sorted(set(df.label) - {"O"})]
    df.attrs["round"] = round_name
    return df


def read_target(files: ProjectFiles) -> pd.DataFrame:
    """The target corpus the labels index into: sentence_id, tokens, tags (indexed by sentence_id)."""
    df = files.read_table(TARGET_TABLE, SENTENCES)
    return df.set_index("sentence_id", drop=False)


def check_alignment(labels: pd.DataFrame, target: pd.DataFrame, where: str) -> None:
    """Every label row must point at words that exist and spell its ``text``."""
    tokens = target["tokens"]
    for sid, start, end, text in zip(labels.sentence_id, labels.start, labels.end, labels.text):
        words = tokens.get(int(sid))
        if words is None or int(end) > len(words) or " ".join(words[int(start):int(end)]) != text:
            raise GlodeError(
                f"{where}: span ({sid}, {start}, {end}) {text!r} does not match {TARGET_TABLE}; the labels come from "
                "other tables (rerun `dvc repro`, or pass the same --rev for both)"
            )


# --------------------------------------------------------------------------- filtering and display


def filter_labels(
    df: pd.DataFrame,
    types: Sequence[str] | None = None,
    changed: bool = False,
    min_prob: float | None = None,
    max_prob: float | None = None,
    disagree: bool = False,
    sentences: Sequence[int] | None = None,
    wrong: bool = False,
    include_o: bool = False,
) -> pd.DataFrame:
    """Rows of a label table matching every given filter, ordered by sentence and position.

    ``types``: hard labels to keep (by default every entity type, plus ``O`` with ``include_o``);
    ``changed``: the hard label flipped in this round; ``min_prob``/``max_prob``: range of the
    hard label's probability; ``disagree``: the global and local views admitted different class
    sets; ``wrong``: the hard label differs from the gold label (rows with gold only).
    """
    classes = df.attrs.get("classes", [])
    if types:
        unknown = sorted(set(types) - set(classes)) if classes else []
        if unknown:
            raise GlodeError(f"unknown label type(s) {unknown}; this table has {classes}")
        keep = df.label.isin(list(types))
    else:
        keep = pd.Series(True, index=df.index) if include_o else df.label != "O"
    if changed:
        keep &= df.changed.astype(bool)
    if min_prob is not None:
        keep &= df.prob >= min_prob
    if max_prob is not None:
        keep &= df.prob <= max_prob
    if disagree:
        keep &= pd.Series([set(g) != set(l) for g, l in zip(df.global_admitted, df.local_admitted)], index=df.index)
    if sentences:
        keep &= df.sentence_id.isin([int(s) for s in sentences])
    if wrong:
        keep &= df.gold.notna() & (df.gold != df.label)
    out = df[keep].sort_values(["sentence_id", "start", "end"], kind="stable")
    out.attrs = dict(df.attrs)
    return out


def highlight(tokens: Sequence[str], start: int, end: int, window: int = 8, mark=("[[", "]]")) -> str:
    """The span's words between ``mark``, with up to ``window`` words of context on each side."""
    lo, hi = max(0, start - window), min(len(tokens), end + window)
    left = ("... " if lo > 0 else "") + " ".join(tokens[lo:start])
    right = " ".join(tokens[end:hi]) + (" ..." if hi < len(tokens) else "")
    middle = mark[0] + " ".join(tokens[start:end]) + mark[1]
    return " ".join(p for p in (left.strip(), middle, right.strip()) if p)


def _views(admitted) -> str:
    return ",".join(admitted) if len(admitted) else "-"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain aligned columns (the last column is not padded)."""
    if not rows:
        return ""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    widths[-1] = 0
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def show_rows(df: pd.DataFrame, target: pd.DataFrame, window: int = 8, mark=("[[", "]]")) -> tuple[list[str], list[list[str]]]:
    """Headers and string rows for ``glode labels show``."""
    headers = ["sent", "span", "label", "prob", "prev", "gold", "global", "local", "context"]
    tokens = target["tokens"]
    rows = []
    for r in df.itertuples(index=False):
        rows.append(
            [
                str(r.sentence_id),
                f"{r.start}:{r.end}",
                r.label + ("*" if r.changed else ""),
                f"{r.prob:.2f}",
                r.prev_label,
                r.gold if isinstance(r.gold, str) else "?",
                _views(r.global_admitted),
                _views(r.local_admitted),
                highlight(tokens[int(r.sentence_id)], int(r.start), int(r.end), window, mark),
            ]
        )
    return headers, rows


# --------------------------------------------------------------------------- diff


def flip_kind(old: str, new: str) -> str | None:
    if old == new:
        return None
    if old == "O":
        return "o_to_entity"
    if new == "O":
        return "entity_to_o"
    return "type_swap"


def diff_labels(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """Every span whose hard label differs between two label tables (a missing row is ``O``).

    Columns: sentence_id, start, end, text, label_a, prob_a, label_b, prob_b, gold, kind.
    """
    key = ["sentence_id", "start", "end"]
    cols = [*key, "text", "label", "prob", "gold"]
    m = a[cols].merge(b[cols], on=key, how="outer", suffixes=("_a", "_b"), sort=True)
    m["text"] = m.text_a.where(m.text_a.notna(), m.text_b)
    m["gold"] = m.gold_a.where(m.gold_a.notna(), m.gold_b)
    # a span the other table does not store is one-hot O there
    m["prob_a"] = m.prob_a.where(m.label_a.notna(), 1.0)
    m["prob_b"] = m.prob_b.where(m.label_b.notna(), 1.0)
    m["label_a"] = m.label_a.fillna("O")
    m["label_b"] = m.label_b.fillna("O")
    m["kind"] = [flip_kind(x, y) for x, y in zip(m.label_a, m.label_b)]
    out = m[m.kind.notna()][[*key, "text", "label_a", "prob_a", "label_b", "prob_b", "gold", "kind"]]
    return out.sort_values(key, kind="stable").reset_index(drop=True)


def diff_summary(flips: pd.DataFrame) -> dict:
    """Flip counts by kind and by (from, to), and against gold where it is known."""
    counts = {k: int((flips.kind == k).sum()) for k in FLIP_KINDS}
    pairs = flips.groupby(["label_a", "label_b"]).size()
    summary = {
        "flips": int(len(flips)),
        "by_kind": counts,
        "by_label": {f"{x}->{y}": int(n) for (x, y), n in pairs.items()},
    }
    known = flips[flips.gold.notna()]
    if len(known):
        summary["gold"] = {
            "fixed": int((known.label_b == known.gold).sum()),
            "broken": int((known.label_a == known.gold).sum()),
            "still_wrong": int(((known.label_a != known.gold) & (known.label_b != known.gold)).sum()),
        }
    return summary


def format_summary(summary: dict, name_a: str, name_b: str) -> str:
    lines = [f"{summary['flips']} span(s) change their hard label from {name_a} to {name_b}"]
    lines.append("  " + ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in summary["by_kind"].items()))
    for pair, n in sorted(summary["by_label"].items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {pair:<14} {n}")
    if "gold" in summary:
        g = summary["gold"]
        lines.append(f"  against gold: {g['fixed']} fixed, {g['broken']} broken, {g['still_wrong']} wrong before and after")
    return "\n".join(lines)


def diff_rows(flips: pd.DataFrame, target: pd.DataFrame, window: int = 8, mark=("[[", "]]")) -> tuple[list[str], list[list[str]]]:
    headers = ["sent", "span", "kind", "from", "to", "gold", "context"]
    tokens = target["tokens"]
    rows = [
        [
            str(r.sentence_id),
            f"{r.start}:{r.end}",
            r.kind.replace("_", " "),
            f"{r.label_a} {r.prob_a:.2f}",
            f"{r.label_b} {r.prob_b:.2f}",
            r.gold if isinstance(r.gold, str) else "?",
            highlight(tokens[int(r.sentence_id)], int(r.start), int(r.end), window, mark),
        ]
        for r in flips.itertuples(index=False)
    ]
    return headers, rows


# --------------------------------------------------------------------------- export


def hard_spans(df: pd.DataFrame) -> dict[int, list[tuple[int, int, str, float]]]:
    """Non-overlapping entity spans per sentence from a label table's hard labels.

    Entity rows that overlap are resolved greedily by probability, as training does with the
    refined labels; returns ``{sentence_id: [(start, end, label, prob), ...]}`` by start.
    """
    ents = df[df.label != "O"]
    out: dict[int, list[tuple[int, int, str, float]]] = {}
    for sid, group in ents.groupby("sentence_id", sort=True):
        items = list(zip(group.start.astype(int), group.end.astype(int), group.label, group.prob.astype(float)))
        prob = {(s, e, lab): p for s, e, lab, p in items}
        out[int(sid)] = [(s.start, s.end, s.label, prob[(s.start, s.end, s.label)]) for s in resolve_overlaps(items)]
    return out


def export_records(df: pd.DataFrame, target: pd.DataFrame) -> Iterator[TaggedSentence]:
    """One sentence per target sentence (in order) with the round's hard entity spans and the gold tags."""
    spans = hard_spans(df)
    for sid, line, tokens, tags in zip(target.sentence_id, target.line, target.tokens, target.tags):
        yield TaggedSentence(list(tokens), int(line), list(tags), spans.get(int(sid), []), int(sid))
