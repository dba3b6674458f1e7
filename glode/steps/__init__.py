"""One module per node of ``dvc dag``: what each pipeline stage does, as plain functions.

``check``: :mod:`glode.steps.check`; ``prepare``: :mod:`glode.steps.prepare`; ``encoder``:
:mod:`glode.encoder.build`; ``train_source``: :mod:`glode.steps.train_source`;
``initial_labels``: :mod:`glode.steps.initial_labels`; ``pseudo_label@rN``:
:mod:`glode.steps.pseudo_label`; ``denoise@rN``: :mod:`glode.steps.denoise`; ``train_target@rN``:
:mod:`glode.steps.train_target`; ``evaluate@M``: :mod:`glode.steps.evaluate`; ``report``:
:mod:`glode.steps.report`. The scripts in ``stages/`` only parse options into settings
(glode/settings.py) and call these; tests call them directly.
"""
