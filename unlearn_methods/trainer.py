"""The unlearning trainer: loss = forget_coeff · forget term + reg_coeff · regulariser.

Built the way TRL builds its trainers: a ``transformers.Trainer`` subclass that overrides
``compute_loss``, with TRL's helpers for the reference model. A reference model exists only when a
term needs one (NPO, DPO, KL, RMU): with a new LoRA adapter it is the base model with the adapter
switched off (no second copy in memory); when training continues an adapter (a continual run's
next request) it is the model before this run, base plus adapter, passed in as ``ref_model``;
otherwise a frozen copy prepared for DeepSpeed / FSDP like TRL's. Each
example set goes through the model once per step; the terms share those outputs.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import ProgressCallback

from unlearn_methods.config import UnlearnConfig
from unlearn_methods.losses.context import LossContext, TermSettings
from unlearn_methods.methods import Method, resolve_method


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite."""


def is_peft_model(model) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


class LossTermsProgress(ProgressCallback):
    """The usual progress bar, with the latest loss terms shown beside it instead of printed."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {k: v for k, v in logs.items() if k == "loss" or k.startswith("loss/")}
            if shown:
                self.training_bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()})


class EpochPairing(TrainerCallback):
    """Tells the dataset which epoch starts, so ``pairing="random"`` draws new partners."""

    def on_epoch_begin(self, args, state, control, train_dataloader=None, **kwargs):
        dataset = getattr(train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(int(state.epoch or 0))


COMPLETE = ".complete"  # written into a checkpoint once every file of it is saved


class MarkCompleteCheckpoints(TrainerCallback):
    """Marks a checkpoint complete once the Trainer has written all of it: ``on_save`` comes
    after weights, optimiser, scheduler, RNG state and trainer state. Resuming reads only marked
    checkpoints, so a run killed while writing one never continues from half of it."""

    def on_save(self, args, state, control, **kwargs):
        from pathlib import Path

        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                (folder / COMPLETE).write_text(str(state.global_step))


class UnlearnTrainer(Trainer):
    """Unlearn with a registered method; see the module docstring."""

    loss_is_scaled_for_ga = False  # the Trainer divides the loss by the accumulation steps

    def __init__(
        self,
        model,
        args: UnlearnConfig,
        train_dataset=None,
        data_collator=None,
        processing_class=None,
        ref_model=None,
        peft_config=None,
        callbacks=None,
        method: Method | None = None,
    ) -> None:
        self.method = method or resolve_method(args.method)
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            data_collator=data_collator,
            processing_class=processing_class,
            callbacks=[EpochPairing(), *(callbacks or [])],
        )
        if not args.disable_tqdm:
            self.remove_callback(ProgressCallback)
            self.add_callback(LossTermsProgress())
        self.settings = TermSettings(
            beta=args.beta,
            gamma=args.gamma,
            compat=args.compat,
            rmu_layer=args.rmu_layer,
            rmu_steering=args.rmu_steering,
            rmu_alpha=args.rmu_alpha,
        )
        self.ref_model = None
        if self.method.needs_reference and (ref_model is not None or not is_peft_model(self.model)):
            self.ref_model = self._prepare_reference(ref_model or self._frozen_copy())
        self._term_values: dict[str, list[float]] = defaultdict(list)

    # ------------------------------------------------------------------ reference model
    def _frozen_copy(self):
        """The model before unlearning: a copy, or (when DeepSpeed / FSDP may shard the
        parameters) a fresh load from the model's path, as TRL does."""
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            from trl.trainer.utils import create_model_from_path, get_config_model_id

            return create_model_from_path(
                get_config_model_id(self.model.config), dtype=self.model.dtype
            )
        return copy.deepcopy(self.accelerator.unwrap_model(self.model))

    def _prepare_reference(self, reference):
        from trl.trainer.utils import disable_dropout_in_model

        reference.eval()
        reference.requires_grad_(False)
        disable_dropout_in_model(reference)
        if self.is_deepspeed_enabled:
            from trl.models.utils import prepare_deepspeed

            return prepare_deepspeed(reference, self.accelerator)
        if self.is_fsdp_enabled:
            from trl.models.utils import prepare_fsdp

            return prepare_fsdp(reference, self.accelerator)
        return self.accelerator.prepare_model(reference, evaluation_mode=True)

    # ------------------------------------------------------------------ forward passes
    def _forward(self, model):
        hidden = self.method.uses_hidden_states

        def run(input_ids, attention_mask):
            out = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                output_hidden_states=hidden,
                use_cache=False,
            )
            return out.logits, (out.hidden_states if hidden else None)

        return run

    def _reference_forward(self, model):
        if not self.method.needs_reference:
            return None
        if self.ref_model is not None:
            return self._forward(self.ref_model)
        unwrapped = self.accelerator.unwrap_model(model)
        policy = self._forward(model)

        def run(input_ids, attention_mask):  # LoRA: the base model is the adapter switched off
            with unwrapped.disable_adapter():
                return policy(input_ids, attention_mask)

        return run

    # ------------------------------------------------------------------ loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        context = LossContext(
            inputs, self._forward(model), self._reference_forward(model), self.settings
        )
        step = self.state.global_step + 1
        forget = self._checked(self.method.forget(context), self.method.forget.name, step)
        loss = self.args.forget_coeff * forget
        self._term_values[f"loss/{self.method.forget.name}"].append(forget.item())
        if self.method.regularizer is not None:
            term = self.method.regularizer
            value = self._checked(term(context), term.name, step)
            loss = loss + self.args.reg_coeff * value
            self._term_values[f"loss/{term.name}"].append(value.item())
        return (loss, {}) if return_outputs else loss

    @staticmethod
    def _checked(value: torch.Tensor, name: str, step: int) -> torch.Tensor:
        if not torch.isfinite(value).all():
            raise NonFiniteLossError(
                f"step {step}: the {name} term is {value.item()}; training stopped. Lower the "
                f"learning rate, check the data, or try bf16 off / fp32."
            )
        return value

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean of each loss term since the last log (as TRL's trainers do)."""
        if self._term_values and "loss" in logs:
            for name, values in self._term_values.items():
                logs[name] = sum(values) / len(values)
            self._term_values.clear()
        super().log(logs, start_time)


def steps_per_epoch(n_examples: int, per_device: int, world_size: int, accumulation: int) -> int:
    return max(1, math.ceil(n_examples / (per_device * world_size * accumulation)))
