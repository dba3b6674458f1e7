"""Denoising of span pseudo labels by a global and a local view (docs/METHOD.md §3): the method's
refinement step, one call of :func:`glode.denoising.update.denoise` per self-training round, on
plain numpy arrays (the ``denoise@rN`` step, glode/steps/denoise.py, does the I/O).

* :mod:`glode.denoising.projection`: the span vectors the views compare, reduced to
  ``denoise.dim`` dimensions (run by the ``pseudo_label@rN`` step);
* :mod:`glode.denoising.views`: the class prototypes and the global view; the memory bank, its
  faiss index, the kNN class counts and the local view;
* :mod:`glode.denoising.update`: the step's entry point :func:`~glode.denoising.update.denoise`,
  which composes the views with the update: combine the admitted sets, the agreement gate,
  confident selection and the progressive (EMA) update;
* :mod:`glode.denoising.align`: class-share alignment of the labels a round starts from
  (``denoise.align``).

The scores of refined labels against gold (hard and soft P/R/F1, how much mass moved, a step's
statistics) are glode/label_quality.py, next to the model's entity scores (glode/metrics.py), so
that the steps which only score labels import neither faiss nor this package.

This ``__init__`` imports nothing, so that importing one module (the projection, with no faiss)
does not load the others.
"""
