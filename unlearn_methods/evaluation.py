"""Evaluation during training (``lm-unlearn train --eval-every N``) and checkpoint selection.

Every N optimiser steps the model being trained is scored by the same lm-eval task code as a
scoring run (``tofu_<split>_unlearn``, or ``muse_<corpus>_unlearn`` when the forget data is a
MUSE corpus), through the ``hf-unlearn`` backend wrapped around the
model object in memory: nothing is written to disk for it. The metrics go through the Trainer's
logging (``eval_<metric>`` in the log history, shown as ``eval/<metric>`` by TensorBoard and
W&B) and into the run card. The model goes back to train mode afterwards; gradients and the
random state are left as they were, so a run with evaluations trains to the same weights as one
without.

Under several processes (``accelerate launch``) rank 0 scores the whole model while the other
ranks wait for its decision; DeepSpeed ZeRO and FSDP, which shard the parameters, are refused.

With a selection rule (:mod:`unlearn_methods.selection`) the kept checkpoint's weights become the
output. Training stops at the first checkpoint that reaches a target (``--no-stop-at-selection`` trains on,
keeping a CPU copy of that checkpoint's trainable weights); ``best:`` keeps a copy of the best so
far. The kept copy and the evaluations so far are saved into each Trainer checkpoint, so an
interrupted run resumes with them. A target never reached ends with the final model, a loud
warning and ``reached: false`` in the run card.

The plan of the evaluations (task, rows, options, selection rule) is
:mod:`unlearn_methods.evaluation_plan`'s.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from unlearn_methods.distributed import from_main_process
from unlearn_methods.evaluation_plan import EvalOptionError, EvalPlan, shown_metric

LOG_PREFIX = "eval_"  # TensorBoard and W&B show eval_<metric> as eval/<metric>
STATE_FILE = "lm_unlearn_eval.json"  # inside each Trainer checkpoint
WEIGHTS_FILE = "lm_unlearn_selected.safetensors"


# ---------------------------------------------------------------------- one evaluation
def _rng_states() -> dict[str, Any]:
    import numpy as np
    import torch

    states = {"python": random.getstate(), "numpy": np.random.get_state()}
    states["torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


@contextlib.contextmanager
def _quiet_logs(quiet: bool) -> Iterator[None]:
    """The task's notes (missing references, ...) once per run, not at every evaluation."""
    loggers = [logging.getLogger(name) for name in ("lm-unlearn", "lm_eval")] if quiet else []
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)


def score_live_model(model, tokenizer, plan: EvalPlan, quiet: bool = False) -> dict[str, Any]:
    """The task's metrics of ``model`` as it is now; its mode, gradients and the random state
    are left as they were."""
    import torch

    from harness_ext.lm_eval_plugin.results import task_metrics
    from harness_ext.lm_eval_plugin.run import evaluate_model_object

    was_training = model.training
    states = _rng_states()
    try:
        with torch.no_grad(), _quiet_logs(quiet):
            results = evaluate_model_object(
                model,
                tokenizer,
                [plan.task],
                metadata=copy.deepcopy(plan.metadata),
                apply_chat_template=plan.apply_chat_template,
                batch_size=plan.batch_size,
            )
    finally:
        model.train(was_training)
        _restore_rng_states(states)
    return task_metrics(results, plan.task)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def warn_loudly(message: str) -> None:
    line = "!" * 78
    print(f"\n{line}\nWARNING: {message}\n{line}\n", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- the callback
@dataclass
class Kept:
    """The checkpoint a selection rule keeps; ``weights``: a CPU copy of its trainable
    parameters (None while it is the live model, i.e. training stops there)."""

    step: int
    value: float
    weights: dict[str, Any] | None = field(default=None, repr=False)


class EvaluateDuringTraining(TrainerCallback):
    """Scores the model every ``plan.every`` steps and applies the selection rule (module docs).

    ``attach`` gives it the trainer (for its logging); ``finish`` puts the kept weights into
    the model before it is saved; ``card`` is what the run card records.
    """

    def __init__(self, plan: EvalPlan) -> None:
        self.plan = plan
        self.trainer = None
        self.history: list[dict[str, Any]] = []
        self.kept: Kept | None = None
        self.stopped_at: int | None = None

    def attach(self, trainer, resume_from: str | os.PathLike | None = None) -> None:
        if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
            raise EvalOptionError("--eval-every cannot score a model sharded by DeepSpeed / FSDP")
        self.trainer = trainer
        if resume_from and trainer.is_world_process_zero():
            self._restore(Path(resume_from))
        self.stopped_at = from_main_process(self.stopped_at)

    def reload_stopped_run(self, trainer, checkpoint: str | os.PathLike) -> None:
        """The interrupted run had stopped at its target, in the checkpoint it resumes from:
        load that model and state instead of training on."""
        from transformers import TrainerState

        trainer._load_from_checkpoint(str(checkpoint))
        trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))

    # -------------------------------------------------------------- training events
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.plan.every:
            return
        stop = False
        if state.is_world_process_zero:
            model = self.trainer.model  # the model itself, not its DDP wrapper
            record = self.evaluate(model, self.trainer.processing_class, state)
            stop = self._select(record, model)
        if from_main_process(stop):
            control.should_training_stop = True
            self.stopped_at = state.global_step

    def on_save(self, args, state, control, **kwargs):
        """Saves the evaluations and the kept copy into the checkpoint (before it is marked
        complete), so a resumed run continues with them."""
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            self._save(folder)

    # -------------------------------------------------------------- evaluation and selection
    def evaluate(self, model, tokenizer, state) -> dict[str, Any]:
        started = time.perf_counter()
        metrics = score_live_model(model, tokenizer, self.plan, quiet=bool(self.history))
        record = {
            "step": state.global_step,
            "epoch": state.epoch,
            "seconds": round(time.perf_counter() - started, 2),
            "metrics": metrics,
        }
        self.history.append(record)
        self._log({LOG_PREFIX + k: v for k, v in metrics.items() if _is_number(v)})
        print(self._progress_line(record), flush=True)
        return record

    def _progress_line(self, record: dict[str, Any]) -> str:
        """One line per evaluation on the console: the selection metric (or the forget
        ROUGE-L) against its target, and the time the evaluation took."""
        rule = self.plan.rule
        metric = rule.metric if rule else shown_metric(self.plan.task)
        value = record["metrics"].get(metric)
        shown = f"{value:.4f}" if _is_number(value) else str(value)
        target = f" (target {rule.text})" if rule else ""
        return f"step {record['step']}: {metric} {shown}{target}, evaluated in {record['seconds']:.0f} s"

    def _log(self, logs: dict[str, float]) -> None:
        """Through the Trainer's logging (every reporting callback sees it); logging resets the
        flag that asks for this step's loss log, so it is set back."""
        should_log = self.trainer.control.should_log
        self.trainer.log(logs)
        self.trainer.control.should_log = should_log

    def _select(self, record: dict[str, Any], model) -> bool:
        """Applies the rule to one evaluation; True: training stops here."""
        rule, step = self.plan.rule, record["step"]
        if rule is None:
            return False
        value = record["metrics"].get(rule.metric)
        if not _is_number(value):
            warn_loudly(f"step {step}: the selection metric {rule.metric} is {value}")
            return False
        if rule.best:
            if self.kept is None or rule.improves(value, self.kept.value):
                self._keep(step, value, model, copy_weights=True)
            return False
        if self.kept is not None or not rule.reached(value):
            return False
        self._keep(step, value, model, copy_weights=not self.plan.stop)
        then = "training stops" if self.plan.stop else "training goes on (--no-stop-at-selection)"
        print(f"step {step}: {rule.metric} = {value:.4g} reaches {rule.text}; kept, {then}")
        return self.plan.stop

    def _keep(self, step: int, value: float, model, copy_weights: bool) -> None:
        weights = None
        if copy_weights:
            weights = {
                name: p.detach().to("cpu", copy=True)
                for name, p in model.named_parameters()
                if p.requires_grad
            }
        self.kept = Kept(step, float(value), weights)

    def finish(self, trainer) -> None:
        """After training: the kept checkpoint's weights into the model (rank 0, which saves
        it), or a loud warning when the target was never reached."""
        rule = self.plan.rule
        if rule is None or not trainer.is_world_process_zero():
            return
        final = trainer.state.global_step
        if self.kept is None:
            steps = ", ".join(str(r["step"]) for r in self.history) or "none"
            warn_loudly(
                f"the selection target {rule.text} was never reached (evaluated at steps "
                f"{steps}); the output is the final model (step {final}) and its run card "
                f"records reached: false"
            )
            return
        if self.kept.step == final:
            return
        if self.kept.weights is None:
            raise RuntimeError(f"the weights of step {self.kept.step} were not kept")
        parameters = dict(trainer.model.named_parameters())
        import torch

        with torch.no_grad():
            for name, tensor in self.kept.weights.items():
                parameters[name].copy_(tensor)
        print(f"output: the checkpoint of step {self.kept.step} ({rule.text}), not step {final}")

    # -------------------------------------------------------------- run card
    def card(self, final_step: int) -> dict[str, Any]:
        entry: dict[str, Any] = {"evaluation": {**self.plan.settings(), "history": self.history}}
        rule = self.plan.rule
        if rule is not None:
            kept = self.kept
            entry["selection"] = {
                **rule.describe(),
                "reached": kept is not None,
                "step": kept.step if kept else final_step,
                "value": kept.value if kept else self._value_at(final_step),
                "why": self._why(),
                "stopped_early": self.stopped_at is not None,
                "final_step": final_step,
            }
        return entry

    def _value_at(self, step: int) -> Any:
        metric = self.plan.rule.metric
        return next((r["metrics"].get(metric) for r in self.history if r["step"] == step), None)

    def _why(self) -> str:
        rule, kept = self.plan.rule, self.kept
        if kept is None:
            return f"{rule.text} never reached: the final model"
        if rule.best:
            return f"the best {rule.metric} of the evaluations"
        source = f" (the retain model's value, from {rule.reference})" if rule.reference else ""
        return f"the first evaluation with {rule.text}{source}"

    # -------------------------------------------------------------- resuming
    def _save(self, folder: Path) -> None:
        kept = self.kept
        state = {
            "history": self.history,
            "kept": None if kept is None else {"step": kept.step, "value": kept.value},
            "stopped_at": self.stopped_at,
        }
        if kept is not None and kept.weights is not None:
            from safetensors.torch import save_file

            save_file(kept.weights, str(folder / WEIGHTS_FILE))
        (folder / STATE_FILE).write_text(json.dumps(state, indent=1), encoding="utf-8")

    def _restore(self, folder: Path) -> None:
        path = folder / STATE_FILE
        if not path.is_file():
            return
        state = json.loads(path.read_text(encoding="utf-8"))
        self.history = state["history"]
        self.stopped_at = state.get("stopped_at")
        kept = state.get("kept")
        if kept:
            weights = None
            if (folder / WEIGHTS_FILE).is_file():
                from safetensors.torch import load_file

                weights = load_file(str(folder / WEIGHTS_FILE))
            self.kept = Kept(kept["step"], kept["value"], weights)
