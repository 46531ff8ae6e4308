"""Does a checkpoint written by lm-unlearn load as the same model in transformers 4.45?

transformers 5.x writes the RoPE base only under ``rope_parameters``; 4.x reads ``rope_theta``
and would silently use Llama's default 10000 without it, and it does not know 5.x's tokenizer
class name. ``make check-old-readers`` runs this script twice:

    python tests/old_readers.py write FOLDER   # this project's environment (transformers 5.x)
    python tests/old_readers.py read FOLDER    # a separate one with transformers 4.45

``write`` builds a tiny Llama with RoPE base 100000, fine-tunes it one step with
``lm-unlearn finetune`` (the project writes the checkpoint) and stores its logits on a few
prompts, and a copy of the checkpoint without the keys the project adds. ``read`` loads both
with transformers 4.45 (it imports nothing of the project) and compares the logits: the
project's checkpoint must give the writer's (float32 noise), and the copy without the keys
must not (so the check can fail).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

PROMPTS = [
    "Question: Who wrote the novel about the lighthouse keeper?\nAnswer:",
    "Question: Where was the author born?\nAnswer: The author was born in",
    "A quite long text to reach positions where a wrong RoPE base shows: " * 6,
]
TOLERANCE = 1e-4


def logits(model_dir: Path):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # the argument's name changed in transformers 4.56
    name = "torch_dtype" if transformers.__version__.startswith("4.") else "dtype"
    model = AutoModelForCausalLM.from_pretrained(model_dir, **{name: torch.float32}).eval()
    out = []
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
            out.append((ids[0].tolist(), model(ids).logits[0]))
    return out


def write(folder: Path) -> None:
    import torch

    from harness_ext.commands.cli import main
    from harness_ext.testing.tiny_models import build_tiny_llama

    folder.mkdir(parents=True, exist_ok=True)
    base = build_tiny_llama(folder / "base", rope_theta=100000.0)
    written = folder / "written"
    code = main(["finetune", "--model", str(base), "--data", "forget01[:4]", "--num-train-epochs", "1",
                 "--learning-rate", "1e-3", "--per-device-train-batch-size", "4", "--effective-batch-size", "4",
                 "--output", str(written), "--overwrite", "--prompt-format", "plain"])  # fmt: skip
    if code != 0:
        sys.exit(f"lm-unlearn finetune failed ({code})")
    torch.save(logits(written), folder / "writer_logits.pt")
    bare = folder / "without-keys"
    shutil.rmtree(bare, ignore_errors=True)
    shutil.copytree(written, bare)
    config = json.loads((bare / "config.json").read_text())
    config.pop("rope_theta", None)
    config.pop("rope_scaling", None)
    (bare / "config.json").write_text(json.dumps(config))
    print(
        f"written: {written} (rope_theta {json.loads((written / 'config.json').read_text())['rope_theta']})"
    )


def read(folder: Path) -> None:
    import torch
    import transformers

    expected = torch.load(folder / "writer_logits.pt")
    worst = {}
    for name in ("written", "without-keys"):
        got = logits(folder / name)
        for (ids_a, a), (ids_b, b) in zip(expected, got, strict=True):
            if ids_a != ids_b:
                sys.exit(f"{name}: transformers {transformers.__version__} tokenizes differently")
            worst[name] = max(worst.get(name, 0.0), float((a - b).abs().max()))
    print(f"transformers {transformers.__version__}: largest logit difference to the writer's: "
          f"project checkpoint {worst['written']:.2e}, without the added keys "
          f"{worst['without-keys']:.2e}")  # fmt: skip
    if worst["written"] > TOLERANCE:
        sys.exit(f"FAIL: the project's checkpoint loads as another model ({worst['written']:.2e})")
    if worst["without-keys"] <= TOLERANCE:
        sys.exit("FAIL: the check cannot tell: the copy without the keys loads the same")
    print("OK: the project's checkpoint loads as the same model")


if __name__ == "__main__":
    stage, where = sys.argv[1], Path(sys.argv[2])
    {"write": write, "read": read}[stage](where)
