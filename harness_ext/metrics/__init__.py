"""The metrics: pure functions of per-sample numbers and strings (``tofu``), from per-sample
scores to the reported metrics (``aggregate``), the model-based output-quality scores
(``output_quality``), references (``references``) and TOFU's legacy logs (``legacy_logs``).

Nothing here imports lm-eval or the commands.
"""
