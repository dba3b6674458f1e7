"""Old import path of the round helpers, kept for the bench scripts that import
``glode.selftrain`` (bench/denoise_explore.py, denoise_replay.py, view_diagnostics.py,
view_geometry.py). Nothing in glode/ or stages/ imports it: new code imports from the modules
named here."""

from glode.label_table import class_ids, initial_soft_labels, read_labels_dense  # noqa: F401
from glode.params import SCHEMA
from glode.pseudo_folder import (SOURCE_LABELS, SOURCE_REPS, SPANS_FILE, SPANS_KIND, TARGET_REPS,  # noqa: F401
                                 load_array)
from glode.steps.denoise import ema_weight  # noqa: F401
from glode.steps.pseudo_label import reduce_dim  # noqa: F401

PROJECTIONS = SCHEMA["denoise.projection"].choices
