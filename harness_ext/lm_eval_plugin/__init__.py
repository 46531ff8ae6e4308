"""What plugs into lm-evaluation-harness: the autoload hook that makes ``lm_eval`` find the tasks
and the ``hf-unlearn`` backend, the metric registry, the backend itself, and in-process runs.

Kept import-free (the autoload hook imports this package at every interpreter start).
"""

# lm-eval's hf backend with shared-context log-likelihoods and early-exit greedy decoding
DEFAULT_BACKEND = "hf-unlearn"
BACKEND_CLASS = "harness_ext.lm_eval_plugin.backend:UnlearnHFLM"
# the names of the project's tasks begin with these
PROJECT_TASK_PREFIXES = ("tofu_", "realworld_", "muse_", "wmdp_unlearn", "lume_")
