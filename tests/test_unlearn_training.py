"""Training behaviour on a tiny model: gradient directions, reference models, every method end to
end through `lm-unlearn train` and the tofu task, LoRA, bad input and resuming."""

import gc
import json
import shutil
import subprocess
import sys

import pytest
import torch

from harness_ext.prompts import get_prompt_format
from unlearn_methods import FORGET_TERMS, REGULARIZERS
from unlearn_methods.config import UnlearnConfig, load_config_file
from unlearn_methods.data import PromptEncoder, UnlearnCollator, UnlearnDataset, load_unlearn_data
from unlearn_methods.losses import functional as F
from unlearn_methods.losses.context import LossContext, TermSettings
from unlearn_methods.train import train

SETS = ("forget", "retain", "forget_idk", "retain_idk")


@pytest.fixture(scope="module")
def batch(tiny_tokenizer):
    data = load_unlearn_data("forget01")
    encoder = PromptEncoder(tiny_tokenizer, get_prompt_format("plain"), max_length=256)
    dataset = UnlearnDataset(data, encoder, SETS, pairing="fixed")
    collate = UnlearnCollator(tiny_tokenizer.pad_token_id, SETS)
    return collate([dataset[i] for i in range(4)])


def fresh_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def forward(model):
    return lambda ids, mask: (model(input_ids=ids, attention_mask=mask).logits, None)


def descend(model, batch, term, steps=5, lr=1e-2):
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        term(LossContext(batch, forward(model), settings=TermSettings())).backward()
        optimiser.step()


def measure(model, batch, fn):
    with torch.no_grad():
        return fn(LossContext(batch, forward(model)))


def test_questions_and_padding_are_masked(batch, tiny_tokenizer):
    labels, ids = batch["forget_labels"][0], batch["forget_input_ids"][0]
    supervised = ids[labels != -100].tolist()
    text = tiny_tokenizer.decode(supervised)
    assert "Question" not in text and text.endswith(tiny_tokenizer.eos_token)
    assert (batch["forget_attention_mask"] == 0).any()  # padded rows exist...
    assert (
        labels[batch["forget_attention_mask"][0] == 0] == -100
    ).all()  # ...and are not supervised


def test_gradient_ascent_raises_the_forget_nll(tiny_model_dir, batch):
    model = fresh_model(tiny_model_dir)
    nll = lambda ctx: ctx.policy("forget").mean_token_nll.item()  # noqa: E731
    before = measure(model, batch, nll)
    descend(model, batch, FORGET_TERMS["GA"])
    assert measure(model, batch, nll) > before + 0.01


def test_maximum_entropy_raises_the_predictive_entropy_on_forget_tokens(tiny_model_dir, batch):
    model = fresh_model(tiny_model_dir)

    def entropy(ctx):
        out = ctx.policy("forget")
        return F.predictive_entropy(out.logits, out.attention_mask).item()

    before = measure(model, batch, entropy)
    descend(model, batch, FORGET_TERMS["ME"], lr=1.0)
    assert measure(model, batch, entropy) > before


def test_answer_preservation_prefers_retain_answers_over_refusals(tiny_model_dir, batch):
    model = fresh_model(tiny_model_dir)

    def margin(ctx):  # mean per-sample NLL(refusal) − NLL(answer)
        return (ctx.policy("retain_idk").summed_nll - ctx.policy("retain").summed_nll).mean().item()

    before = measure(model, batch, margin)
    descend(model, batch, REGULARIZERS["AP"], lr=1e-3)
    assert measure(model, batch, margin) > before


def count_models():
    """Causal LMs alive in this process (each wraps one base model, counted once)."""
    gc.collect()
    return sum(1 for obj in gc.get_objects() if type(obj).__name__.endswith("ForCausalLM"))


def build_trainer(tiny_model_dir, tmp_path, method, lora=False):
    from peft import LoraConfig

    from unlearn_methods.config import UnlearnConfig
    from unlearn_methods.trainer import UnlearnTrainer

    args = UnlearnConfig(output_dir=str(tmp_path), method=method, max_steps=1, disable_tqdm=True)
    config = LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM") if lora else None
    return UnlearnTrainer(fresh_model(tiny_model_dir), args, peft_config=config)


@pytest.mark.parametrize("method", ["ME+GD", "IDK+AP", "GA+GD"])
def test_no_reference_model_for_reference_free_methods(tiny_model_dir, tmp_path, method):
    before = count_models()
    trainer = build_trainer(tiny_model_dir, tmp_path, method)
    assert trainer.ref_model is None
    assert count_models() == before + 1  # the policy only
    del trainer


def test_reference_model_only_when_needed(tiny_model_dir, tmp_path):
    trainer = build_trainer(tiny_model_dir, tmp_path, "NPO+GD")
    assert trainer.ref_model is not None and not any(
        p.requires_grad for p in trainer.ref_model.parameters()
    )
    lora = build_trainer(tiny_model_dir, tmp_path, "NPO+KL", lora=True)
    assert lora.ref_model is None  # the base model with the adapter off serves as reference


def small_run(tiny_model_dir, output, method, **extra):
    options = dict(
        method=method, model=str(tiny_model_dir), output_dir=str(output), forget="forget01",
        max_steps=2, per_device_train_batch_size=2, effective_batch_size=2, max_length=96,
        learning_rate=1e-3, prompt_format="plain",
    )  # fmt: skip
    options.update(extra)
    return train(UnlearnConfig(**options))


def score(model_dir, **model_args):
    from harness_ext.lm_eval_plugin.results import task_metrics
    from harness_ext.lm_eval_plugin.run import run_tasks

    results = run_tasks(
        {"pretrained": str(model_dir), **model_args}, ["tofu_forget01_unlearn"], batch_size=4, device="cpu",
        metadata={"max_rows_per_set": 1, "embedding_model": "none", "nli_model": "none"},
    )  # fmt: skip
    return task_metrics(results, "tofu_forget01_unlearn")


def all_methods():
    return [f.name for f in FORGET_TERMS.values()] + [f"GA+{r.name}" for r in REGULARIZERS.values()]


@pytest.mark.parametrize(
    "method", all_methods() + ["ME+GD", "IDK+AP", "NPO+KL", "DPO+GD", "SimNPO+GD"]
)
def test_every_method_trains_and_its_checkpoint_scores(tiny_model_dir, tmp_path, method):
    output = small_run(tiny_model_dir, tmp_path / "run", method)
    card = json.loads((output / "run_card.json").read_text())
    assert card["method"] == method and card["global_steps"] == 2
    assert len(card["losses"]["per_step"]) == 2
    assert set(card["losses"]["final"]) >= {"loss", f"loss/{card['forget_term']}"}
    assert len(card["data"]["data_sha256"]) == 64 and card["seed"] == 1001
    assert not (output / "checkpoints").exists()
    metrics = score(output)
    assert 0.0 <= metrics["forget_prob"] <= 1.0 and isinstance(metrics["tofu_model_utility"], float)


def test_training_changes_the_weights_and_lora_writes_an_adapter(tiny_model_dir, tmp_path):
    output = small_run(tiny_model_dir, tmp_path / "lora", "NPO+GD", lora=True)
    assert (output / "adapter_config.json").exists() and not (output / "model.safetensors").exists()
    card = json.loads((output / "run_card.json").read_text())
    assert card["output"]["kind"] == "peft-adapter" and card["hyperparameters"]["lora"]["r"] == 8
    with_adapter = score(tiny_model_dir, peft=str(output))
    assert with_adapter["forget_prob"] != score(tiny_model_dir)["forget_prob"]


def test_cli_unknown_method_lists_the_known_ones(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "harness_ext.commands.cli", "train", "--method", "GRADASCENT", "--model", "x",
         "--output", str(tmp_path / "o")], capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 2
    assert "unknown forget term 'GRADASCENT'" in done.stderr and "ME+GD" in done.stderr
    assert not (tmp_path / "o").exists()


def test_tokenizer_without_pad_token_is_a_clear_error(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    model_dir = tmp_path / "nopad"
    shutil.copytree(tiny_model_dir, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(model_dir)
    with pytest.raises(ValueError, match="has no pad token.*--pad-token eos"):
        small_run(model_dir, tmp_path / "o", "GA+GD")
    output = small_run(model_dir, tmp_path / "o2", "GA+GD", pad_token="eos")
    assert (output / "run_card.json").exists()


def test_non_finite_loss_names_the_step_and_the_term(tiny_model_dir, tmp_path):
    from unlearn_methods.trainer import NonFiniteLossError

    with pytest.raises(NonFiniteLossError, match=r"step 1: the NPO term is (nan|inf)"):
        small_run(tiny_model_dir, tmp_path / "o", "NPO+GD", beta=float("inf"))


def test_output_folder_with_a_finished_run_or_other_files_is_refused(tiny_model_dir, tmp_path):
    from unlearn_methods.output_folder import OutputDirError

    output = small_run(tiny_model_dir, tmp_path / "done", "GA")
    with pytest.raises(OutputDirError, match="already holds a finished run"):
        small_run(tiny_model_dir, output, "GA")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="holds other files"):
        small_run(tiny_model_dir, tmp_path / "busy", "GA")
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"


def test_interrupted_run_resumes_to_the_same_weights(tiny_model_dir, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from unlearn_methods.trainer import UnlearnTrainer

    settings = dict(max_steps=4, save_steps=2)
    straight = small_run(tiny_model_dir, tmp_path / "straight", "NPO+GD", **settings)

    original = UnlearnTrainer.training_step
    calls = {"n": 0}

    def crash_on_third_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(UnlearnTrainer, "training_step", crash_on_third_step)
    with pytest.raises(KeyboardInterrupt):
        small_run(tiny_model_dir, tmp_path / "resumed", "NPO+GD", **settings)
    assert (tmp_path / "resumed" / "checkpoints" / "checkpoint-2").is_dir()
    monkeypatch.setattr(UnlearnTrainer, "training_step", original)
    resumed = small_run(tiny_model_dir, tmp_path / "resumed", "NPO+GD", **settings)

    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def test_shipped_configs_carry_the_papers_settings():
    llama = load_config_file("tofu_llama2", method="ME+GD")
    assert (
        llama["forget_coeff"] == 0.1
        and llama["learning_rate"] == 1e-5
        and llama["prompt_format"] == "llama2"
    )
    assert "forget_coeff" not in load_config_file("tofu_llama2", method="GA+GD")
    real = load_config_file("realworld_llama3", method="ME+GD")
    assert (
        real["learning_rate"] == 5e-6 and real["forget_coeff"] == 0.5 and real["max_length"] == 300
    )
    UnlearnConfig(method="ME+GD", output_dir="x", **load_config_file("tofu_phi", method="ME+GD"))


def test_two_processes_under_accelerate_launch(tiny_model_dir, tmp_path, launch_two_processes):
    """Real DDP on two CPU processes (gloo). accelerate's own `--cpu` route starts one process
    unless MPI is installed, so this uses its torchrun launcher; the trainer picks the CPU."""
    output = tmp_path / "ddp"
    done = launch_two_processes(
        "harness_ext.commands.cli", "train", "--method", "NPO+KL", "--model", str(tiny_model_dir),
        "--forget", "forget01", "--output", str(output), "--max-steps", "2", "--per-device-train-batch-size", "2",
        "--effective-batch-size", "8", "--max-length", "96", "--prompt-format", "plain",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    card = json.loads((output / "run_card.json").read_text())
    assert card["hyperparameters"]["world_size"] == 2
    assert (
        card["hyperparameters"]["gradient_accumulation_steps"] == 2
    )  # 2 per device x 2 devices x 2 = 8
    assert isinstance(score(output)["forget_prob"], float)


def test_chat_format_training_labels_mask_the_rendered_prompt(tiny_tokenizer):
    """In the chat format the prompt is the tokenizer's own rendering (with the generation
    prompt); its tokens are masked and the answer's tokens plus one EOS are supervised, at the
    positions TOFU's rule gives: after len(tokenize(prompt))."""
    encoder = PromptEncoder(tiny_tokenizer, get_prompt_format("chat"), max_length=512)
    data = load_unlearn_data("forget01")
    for row in data.forget[:10]:
        messages = [{"role": "user", "content": row["question"]}]
        prompt = tiny_tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        assert prompt.endswith("<|assistant|>\n")
        encoded = encoder.encode(row["question"], row["answer"])
        whole = tiny_tokenizer(prompt + row["answer"], add_special_tokens=False)["input_ids"]
        prompt_length = len(tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"])
        assert encoded["input_ids"] == whole + [tiny_tokenizer.eos_token_id]
        expected = [-100] * prompt_length + whole[prompt_length:] + [tiny_tokenizer.eos_token_id]
        assert encoded["labels"] == expected
        supervised = [t for t in encoded["labels"] if t != -100]
        assert tiny_tokenizer.decode(supervised[:-1]) == row["answer"]


def train_on_two_processes(launch, output, *train_args):
    """`lm-unlearn train` on two CPU processes (DDP over gloo), as in the test above."""
    done = launch("harness_ext.commands.cli", "train", "--output", str(output), *train_args)
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def test_two_processes_train_to_the_weights_of_one_with_the_same_effective_batch(
    tiny_model_dir, tmp_path, launch_two_processes
):
    """DDP on two processes (per-device batch 2, no accumulation) and one process (batch 2,
    accumulation 2) see the same 4 examples per optimiser step: the sampler is seeded with
    data_seed on every rank, accelerate deals consecutive batches of it round-robin to the ranks,
    and one process takes the same two batches as its two micro-batches. The trainer divides each
    micro-batch's loss by the accumulation steps, DDP averages the ranks' gradients, so the
    updates agree up to float rounding (the order of the sums differs). Pairing "fixed" and the
    tiny Llama's zero dropout leave nothing else random. NPO+KL also exercises the reference."""
    from safetensors.torch import load_file

    assert json.loads((tiny_model_dir / "config.json").read_text())["attention_dropout"] == 0.0
    settings = dict(
        method="NPO+KL", max_steps=3, per_device_train_batch_size=2, effective_batch_size=4,
        learning_rate=1e-2, pairing="fixed",
    )  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the launched processes (OMP_NUM_THREADS=1)
    try:
        single = small_run(tiny_model_dir, tmp_path / "one", **settings)
    finally:
        torch.set_num_threads(threads)
    double = train_on_two_processes(
        launch_two_processes, tmp_path / "two", "--method", "NPO+KL", "--model", str(tiny_model_dir),
        "--forget", "forget01", "--max-steps", "3", "--per-device-train-batch-size", "2",
        "--effective-batch-size", "4", "--max-length", "96", "--learning-rate", "1e-2",
        "--prompt-format", "plain", "--pairing", "fixed",
    )  # fmt: skip
    cards = [json.loads((out / "run_card.json").read_text()) for out in (single, double)]
    assert [(c["hyperparameters"]["world_size"], c["hyperparameters"]["gradient_accumulation_steps"])
            for c in cards] == [(1, 2), (2, 1)]  # fmt: skip
    assert all(c["hyperparameters"]["effective_batch_size"] == 4 for c in cards)
    assert all(c["global_steps"] == 3 for c in cards)

    start = load_file(tiny_model_dir / "model.safetensors")
    one, two = load_file(single / "model.safetensors"), load_file(double / "model.safetensors")
    assert one.keys() == two.keys() == start.keys()
    moved = max((one[k] - start[k]).abs().max().item() for k in one)
    difference = max((one[k] - two[k]).abs().max().item() for k in one)
    print(f"largest weight change {moved:.3g}; largest 1- vs 2-process difference {difference:.3g}")
    assert moved > 1e-3  # the runs did train
    # Tolerance 1e-6 (float32, CPU). Measured (torch 2.13, one thread per process): the weights
    # are bitwise identical, difference 0, after a largest change of 3.0e-3 (3 AdamW steps; the
    # warm-up gives lr 0, 1e-3, 2e-3). The tolerance leaves room for summation-order rounding on
    # other builds (~1e-8 per step at these learning rates) and still fails for a real
    # difference: another data order (--seed 7 on two processes) differs by 6e-3, micro-batches
    # of 1 instead of 2 (same examples per step, other padding and KL token weighting) by 3.8e-6.
    for name in one:
        torch.testing.assert_close(one[name], two[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    ("split", "rows", "steps", "warmup"),
    [("forget01", 40, 6, 0), ("forget05", 200, 31, 6), ("forget10", 400, 62, 12)],
)
def test_the_reproduction_config_gives_the_papers_step_counts(
    tiny_model_dir, tmp_path, capsys, split, rows, steps, warmup
):
    from harness_ext.commands.cli import main

    args = ["train", "--config", "tofu_llama2", "--method", "ME+GD", "--forget", split,
            "--model", str(tiny_model_dir), "--output", str(tmp_path / "run"), "--dry-run"]  # fmt: skip
    assert main(args) == 0
    run = json.loads(capsys.readouterr().out)
    assert (run["max_steps"], run["warmup_steps"], run["forget_rows"]) == (steps, warmup, rows)
    assert run["effective_batch_size"] == 32 and run["learning_rate"] == 1e-5
    assert run["lr_scheduler_type"] == "linear" and run["pairing"] == "fixed"
    assert run["compat"] == "closer-look" and run["forget_coeff"] == 0.1
    assert run["reg_coeff"] == 1.0 and run["method"] == "ME+GD"
    assert run["retain_rows"] == 4000 - rows
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_the_papers_pairing_uses_one_refusal_for_both_idk_examples(tiny_tokenizer):
    import torch as torch_module

    data = load_unlearn_data("forget01")
    encoder = PromptEncoder(tiny_tokenizer, get_prompt_format("plain"), max_length=256)
    dataset = UnlearnDataset(data, encoder, SETS, pairing="fixed")
    for index in range(len(dataset)):
        retain, forget_refusal, retain_refusal = dataset.partners(index)
        assert forget_refusal == retain_refusal
        # the draws of the paper's code: a generator seeded with the item's index
        generator = torch_module.Generator().manual_seed(index)
        offset = torch_module.randint(0, len(data.retain), (1,), generator=generator).item()
        refusal = torch_module.randint(0, len(data.refusals), (1,), generator=generator).item()
        assert (retain, forget_refusal) == ((index + offset) % len(data.retain), refusal)
        assert dataset.partners(index) == (retain, forget_refusal, retain_refusal)  # every epoch


def test_every_training_arguments_field_reaches_the_trainer(tiny_model_dir, tmp_path, capsys):
    """Fields lm-unlearn has no flag of its own for (the scheduler, logging integrations,
    accumulation, ...) pass to TrainingArguments from the command line and from a config."""
    from harness_ext.commands.cli import main

    base = ["train", "--method", "GA+GD", "--model", str(tiny_model_dir), "--forget", "forget01",
            "--max-steps", "2", "--per-device-train-batch-size", "2", "--max-length", "96",
            "--prompt-format", "plain", "--bf16", "false"]  # fmt: skip
    args = [*base, "--output", str(tmp_path / "run"), "--lr_scheduler_type", "cosine",
            "--gradient_accumulation_steps", "3", "--adam_beta2", "0.95"]  # fmt: skip
    assert main([*args, "--dry-run"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["lr_scheduler_type"] == "cosine" and run["gradient_accumulation_steps"] == 3
    assert run["effective_batch_size"] == 6
    assert main(args) == 0
    capsys.readouterr()
    card = json.loads((tmp_path / "run" / "run_card.json").read_text())
    assert card["hyperparameters"]["lr_scheduler"] == "cosine"
    assert card["hyperparameters"]["gradient_accumulation_steps"] == 3
    assert {"lr_scheduler_type": "cosine", "gradient_accumulation_steps": 3,
            "adam_beta2": 0.95}.items() <= card["options"].items()  # fmt: skip
    config = tmp_path / "mine.yaml"
    config.write_text("method: GA+GD\nlr_scheduler_type: constant\nreport_to: none\n")
    assert main([*base, "--config", str(config), "--output", str(tmp_path / "x"), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["lr_scheduler_type"] == "constant"
    with pytest.raises(SystemExit) as exit_:
        main([*base, "--output", str(tmp_path / "y"), "--no_such_option", "1"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --no_such_option" in capsys.readouterr().err
