"""A round's pseudo_label folder (``rounds/rN/pseudo``): what the pseudo_label stage writes and
the denoise and train_target stages read.

* ``spans.parquet`` (kind ``target_spans``): every candidate span of the target corpus with the
  previous model's class probabilities, its argmax, whether it is a kept entity, and gold;
* ``target_reps.npy``, ``source_reps.npy``: the L2-normalised span vectors of target and source
  spans; ``source_labels.npy`` the source spans' gold class ids;
* ``glode_pseudo.json``: the manifest (format version, classes, sizes) that marks the folder complete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from glode.atomic import atomic_path, write_json
from glode.errors import GlodeError
from glode.tables import read_table

SPANS_KIND = "target_spans"
TARGET_REPS = "target_reps.npy"
SOURCE_REPS = "source_reps.npy"
SOURCE_LABELS = "source_labels.npy"
SPANS_FILE = "spans.parquet"
PSEUDO_MANIFEST = "glode_pseudo.json"
PSEUDO_FORMAT_VERSION = 1


def save_array(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def load_array(path: Path) -> np.ndarray:
    if not Path(path).is_file():
        raise GlodeError(f"{path}: missing; run the pseudo_label stage of this round (dvc repro)")
    return np.load(path, allow_pickle=False)


def write_pseudo_manifest(pseudo_dir: Path, classes: Sequence[str], **info) -> dict:
    """Write the manifest that marks a complete pseudo_label folder of this format version."""
    manifest = {"format_version": PSEUDO_FORMAT_VERSION, "kind": "glode-pseudo", "classes": list(classes), **info}
    write_json(Path(pseudo_dir) / PSEUDO_MANIFEST, manifest)
    return manifest


def read_pseudo_manifest(pseudo_dir: Path) -> dict:
    """The manifest of a pseudo_label folder, after checking its format version."""
    path = Path(pseudo_dir) / PSEUDO_MANIFEST
    if not path.is_file():
        raise GlodeError(f"{pseudo_dir}: not a pseudo_label output folder (no {PSEUDO_MANIFEST}); "
                         "run the round's pseudo_label stage (dvc repro)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GlodeError(f"{path}: unreadable ({exc}); rerun the round's pseudo_label stage (dvc repro --force)") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != PSEUDO_FORMAT_VERSION:
        raise GlodeError(f"{path}: pseudo-label folder format version {version!r}, this glode reads version "
                         f"{PSEUDO_FORMAT_VERSION}; rerun the round's pseudo_label stage (dvc repro --force) "
                         "or use the matching glode version")
    return manifest


def read_spans(pseudo_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """The span table of a complete pseudo_label folder and the classes it was scored for."""
    read_pseudo_manifest(pseudo_dir)
    spans = read_table(Path(pseudo_dir) / SPANS_FILE, SPANS_KIND)
    return spans, json.loads(spans.attrs["glode"]["classes"])
