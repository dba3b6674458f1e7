"""Old import path of the round helpers, kept for the bench scripts that import
``glode.selftrain`` (bench/denoise_explore.py, denoise_replay.py, view_diagnostics.py,
view_geometry.py). Nothing in glode/ or stages/ imports it: new code imports from the modules
named here."""

from glode.label_table import class_ids, initial_soft_labels, read_labels_dense
from glode.params import SCHEMA
from glode.pseudo_folder import (SOURCE_LABELS, SOURCE_REPS, SPANS_FILE, SPANS_KIND, TARGET_REPS,
                                 load_array)
from glode.steps.denoise import ema_weight
from glode.steps.pseudo_label import reduce_dim

PROJECTIONS = SCHEMA["denoise.projection"].choices

__all__ = ["PROJECTIONS", "SOURCE_LABELS", "SOURCE_REPS", "SPANS_FILE", "SPANS_KIND", "TARGET_REPS", "class_ids",
           "ema_weight", "initial_soft_labels", "load_array", "read_labels_dense", "reduce_dim"]
