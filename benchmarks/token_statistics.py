"""What the per-token membership-inference numbers add to a log-likelihood pass of ``hf-unlearn``.

Prints, for a vocabulary the size of SmolLM2's (49,152) and of Llama-2's (32,000), the time of the
log-softmax and pick that every log-likelihood pass does, and of the extra statistics (mean and
variance of the log-prob under the model's distribution, argmax match) computed from it. The
model's forward pass, which dominates a real run, is not included, so the ratio is an upper bound.

    python benchmarks/token_statistics.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from harness_ext.lm_eval_plugin.shared_context import token_statistics

TOKENS = 1024  # predicted positions in one batch
REPEATS = 5


def best_of(fn, *args) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def log_softmax_and_pick(logits: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor:
    log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32)
    return log_probs.gather(-1, wanted[:, None])


def main() -> None:
    torch.manual_seed(0)
    print("| vocabulary | positions | log-softmax + pick (ms) | statistics (ms) | ratio |")
    print("|---:|---:|---:|---:|---:|")
    for vocab in (32_000, 49_152):
        logits = torch.randn(TOKENS, vocab) * 3
        wanted = torch.randint(vocab, (TOKENS,))
        log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32)
        plain = best_of(log_softmax_and_pick, logits, wanted)
        extra = best_of(token_statistics, log_probs, wanted)
        print(
            f"| {vocab:,} | {TOKENS} | {plain * 1e3:.1f} | {extra * 1e3:.1f} | "
            f"{extra / plain:.2f} |"
        )


if __name__ == "__main__":
    main()
