"""How much the auxiliary-model metrics add to a scoring run.

Scores the packaged SmolLM2-135M-Instruct on tofu_forget01_unlearn twice: first without the
auxiliary models (this run also serves as the pre-unlearning reference, as `lm-unlearn reference`
would), then with every metric. For the second run it reports the seconds spent loading and running
the embedding and NLI models (cosine similarity, entailment, token entropy) against the whole run.

    python benchmarks/aux_metrics_cost.py [--rows-per-set 20] [--nli-model PATH] [--device cpu]

Without --nli-model the entailment model is a randomly initialised DeBERTa-v3-base-sized
classifier (the paper's sileod/deberta-v3-base-tasksource-nli needs the hub): same architecture
and size, so the timing is representative; its labels are meaningless.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
TASK = "tofu_forget01_unlearn"


def deberta_base_sized_nli(out_dir: Path) -> Path:
    """Random-weight NLI classifier with DeBERTa-v3-base's architecture (timing only)."""
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2ForSequenceClassification

    from harness_ext.assets import minilm_dir
    from harness_ext.testing.tiny_models import NLI_LABELS

    config = DebertaV2Config(  # the published deberta-v3-base settings (184M parameters)
        vocab_size=128100,
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        max_position_embeddings=512,
        relative_attention=True,
        position_buckets=256,
        norm_rel_ebd="layer_norm",
        share_att_key=True,
        pos_att_type=["p2c", "c2p"],
        layer_norm_eps=1e-7,
        max_relative_positions=-1,
        position_biased_input=False,
        type_vocab_size=0,
        num_labels=3,
        id2label=NLI_LABELS,
        label2id={v: k for k, v in NLI_LABELS.items()},
    )
    DebertaV2ForSequenceClassification(config).save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out_dir)
    return out_dir


class Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows-per-set", type=int, default=20)
    parser.add_argument(
        "--nli-model", help="NLI classifier (default: DeBERTa-v3-base-sized, random)"
    )
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", default="8")
    args = parser.parse_args()

    from harness_ext.assets import minilm_dir, packaged_smollm2
    from harness_ext.lm_eval_plugin.run import run_tasks
    from harness_ext.metrics import output_quality as output_scoring
    from tofu_tasks.reference_files import reference_from_results, write_reference_file

    model = packaged_smollm2()
    with tempfile.TemporaryDirectory() as tmp:
        nli = args.nli_model or str(deberta_base_sized_nli(Path(tmp) / "nli"))
        watch = Stopwatch()
        for name in ("load_embedder", "load_nli"):
            watch.wrap(output_scoring, name, "load auxiliary models")
        for name in ("_token_entropy", "_cosine", "_entailment"):
            watch.wrap(output_scoring.OutputScorer, name, name.strip("_"))
        model_args = {"pretrained": str(model), "dtype": "float32"}
        options = dict(apply_chat_template=True, batch_size=args.batch_size, device=args.device)
        base = {"max_rows_per_set": args.rows_per_set}
        start = time.perf_counter()
        plain = run_tasks(
            model_args,
            [TASK],
            metadata={**base, "embedding_model": "none", "nli_model": "none"},
            **options,
        )
        without_aux = time.perf_counter() - start
        rows, provenance = reference_from_results(plain, {"pretrained": str(model)})
        reference = write_reference_file(Path(tmp) / "reference.json", rows, provenance)
        metadata = {
            **base,
            "pre_unlearning_reference": str(reference),
            "embedding_model": str(minilm_dir()),
            "nli_model": nli,
            "aux_device": args.device,
        }
        start = time.perf_counter()
        results = run_tasks(model_args, [TASK], metadata=metadata, **options)
        total = time.perf_counter() - start
    from harness_ext.lm_eval_plugin.task_provenance import read_provenance

    rows = read_provenance(results, TASK).rows_per_set
    aux = sum(watch.seconds.values())
    print(
        f"\nSmolLM2-135M-Instruct, tofu_forget01_unlearn, rows per set {rows}, "
        f"device {output_scoring.resolve_device(args.device)}, {os.cpu_count()} CPUs"
    )
    print(f"| {'part':<28} | {'seconds':>8} | {'% of run':>8} |")
    print(f"|{'-' * 30}|{'-' * 10}|{'-' * 10}|")
    for label, seconds in watch.seconds.items():
        print(f"| {label:<28} | {seconds:8.2f} | {100 * seconds / total:7.1f}% |")
    print(f"| {'auxiliary metrics, total':<28} | {aux:8.2f} | {100 * aux / total:7.1f}% |")
    print(f"| {'whole scoring run':<28} | {total:8.2f} | {100.0:7.1f}% |")
    print(f"\nthe same run without auxiliary models: {without_aux:.2f} s")


if __name__ == "__main__":
    main()
