"""lm-unlearn's library around lm-evaluation-harness.

Layers, each importing only from the ones above it:

* ``provenance``, ``assets``, ``model_files``: support (hashes, versions, offline assets, checks)
* ``metrics``: the metric math, references and legacy logs (no lm-eval)
* ``lm_eval_plugin``: what plugs into lm-eval (autoload, metric registry, backend, runs)
* ``workflows``: scoring runs, leaderboard, continual, demo, doctor
* ``commands``: the ``lm-unlearn`` command line

Kept import-free: the autoload hook imports this package at every interpreter start.
"""

__version__ = "0.2.0"
