"""Shared fixtures: offline environment, TOFU location and tiny models built on the fly."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (PROJECT_ROOT.parent / "shared" / "data").resolve()
TOFU_DIR = Path(os.environ.get("TOFU_DATA_DIR") or SHARED_DATA / "tofu").resolve()
LEGACY_LOGS = SHARED_DATA / "tofu_legacy_eval_logs"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
# Nothing from the machine's Hugging Face cache: a model that happens to be cached there would
# change what the tests see (the default embedding model, say). Set before any hub import.
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="lm-unlearn-tests-hf-")
os.environ["TOFU_DATA_DIR"] = str(TOFU_DIR)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Property tests run a few hundred examples of cheap functions; on a loaded machine one example
# can take longer than hypothesis's default 200 ms deadline without anything being wrong.
hypothesis_settings.register_profile("lm-unlearn", deadline=None)
hypothesis_settings.load_profile("lm-unlearn")
LAUNCH_TIMEOUT = 900  # seconds a two-process run may take before the test fails


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def launch_two_processes():
    """``accelerate launch`` of ``python -m MODULE ARGS`` on two CPU processes (DDP over gloo),
    on a free port of its own (a second job on the host cannot collide with it) and with a
    time limit (a hung rendezvous fails the test instead of hanging the suite)."""

    def launch(module: str, *args: str) -> subprocess.CompletedProcess:
        cmd = [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(free_port()),
            "-m", module, *args,
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=LAUNCH_TIMEOUT)

    return launch


def pytest_configure(config):
    if not (TOFU_DIR / "forget01_perturbed.json").is_file():
        raise pytest.UsageError(
            f"TOFU data not found at {TOFU_DIR}: set TOFU_DATA_DIR or place ../shared/data beside "
            f"the project"
        )


@pytest.fixture(scope="session")
def tofu_dir() -> Path:
    return TOFU_DIR


@pytest.fixture(scope="session")
def legacy_logs() -> Path:
    if not LEGACY_LOGS.is_dir():
        pytest.fail(f"legacy TOFU logs not found at {LEGACY_LOGS}")
    return LEGACY_LOGS


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from harness_ext.testing.tiny_models import build_tokenizer, tofu_texts

    return build_tokenizer(tofu_texts(TOFU_DIR), vocab_size=1024, chat_template=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer) -> Path:
    """A tiny random Llama with a chat template, saved as a normal HF directory."""
    from harness_ext.testing.tiny_models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_lora_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A LoRA adapter on the tiny model whose weights change its outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    adapter = get_peft_model(model, config)
    out = tmp_path_factory.mktemp("tiny-lora")
    adapter.save_pretrained(out)
    return out


@pytest.fixture
def tofu_copy(tmp_path, tofu_dir):
    """A writable copy of the TOFU directory, for corrupting."""
    target = tmp_path / "tofu"
    shutil.copytree(tofu_dir, target)
    for path in target.iterdir():
        path.chmod(0o644)
    return target
