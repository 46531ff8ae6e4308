"""Where a scoring run's time goes, and how far each phase is from the machine's floor.

``profiled()`` counts, while a scoring run goes on in the same process:

* per phase (generation: the backends' ``generate_until``; log-likelihoods: their
  ``loglikelihood``; start-up and the rest: everything else), the wall seconds;
* the tokens fed to the model (``input_ids`` of every forward pass, padding included) and the
  floating-point operations of every ``nn.Linear`` (2 · rows · in · out, from a global forward
  hook): the matrix products that dominate a transformer's cost;

and ``matmul_peak()`` measures what this machine reaches on matrix products (float32, or the dtype given) of the
model's sizes with the same threads, so that each phase's achieved FLOP/s reads as a share of
the peak: a phase near the peak can only get faster by computing fewer tokens.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Phase:
    seconds: float = 0.0
    tokens: int = 0
    flops: float = 0.0


@dataclass
class Profile:
    phases: dict[str, Phase] = field(default_factory=lambda: defaultdict(Phase))
    total: float = 0.0

    def rows(self, peak: float) -> list[dict]:
        other = Phase(seconds=self.total - sum(p.seconds for p in self.phases.values()))
        out = []
        for name, phase in [*self.phases.items(), ("start-up and the rest", other)]:
            rate = phase.flops / phase.seconds if phase.seconds > 0 else 0.0
            out.append({
                "phase": name, "seconds": phase.seconds, "tokens": phase.tokens,
                "tokens_per_s": phase.tokens / phase.seconds if phase.seconds > 0 else 0.0,
                "gflops": phase.flops / 1e9, "gflop_per_s": rate / 1e9,
                "share_of_peak": rate / peak if peak else 0.0,
            })  # fmt: skip
        return out


_current: list[str] = []  # the phase running now (a stack: a phase may call another's code)


def _phase_method(original, name: str, profile: Profile):
    def wrapped(self, *args, **kwargs):
        if _current:  # already inside a phase (hf-unlearn falling back to hf's code)
            return original(self, *args, **kwargs)
        _current.append(name)
        started = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            profile.phases[name].seconds += time.perf_counter() - started
            _current.pop()

    return wrapped


@contextmanager
def profiled():
    """Count phases, tokens and linear-layer FLOPs of everything run inside."""
    import torch
    from lm_eval.models.huggingface import HFLM

    import harness_ext.lm_eval_plugin.backend  # noqa: F401  (its HFLM subclass, wrapped too)

    profile = Profile()
    methods = {"generation": "generate_until", "log-likelihoods": "loglikelihood"}
    classes = [HFLM, *HFLM.__subclasses__()]
    saved = [(cls, attr, cls.__dict__[attr]) for cls in classes for attr in methods.values()
             if attr in cls.__dict__]  # fmt: skip
    for cls, attr, original in saved:
        name = next(k for k, v in methods.items() if v == attr)
        setattr(cls, attr, _phase_method(original, name, profile))

    def count(module, inputs, output):
        phase = _current[-1] if _current else None
        if phase is None or not inputs or not torch.is_tensor(inputs[0]):
            return
        if isinstance(module, torch.nn.Linear):
            rows = inputs[0].numel() // module.in_features
            profile.phases[phase].flops += 2.0 * rows * module.in_features * module.out_features
        elif isinstance(module, torch.nn.Embedding):
            profile.phases[phase].tokens += inputs[0].numel()

    handle = torch.nn.modules.module.register_module_forward_hook(count)
    started = time.perf_counter()
    try:
        yield profile
    finally:
        profile.total = time.perf_counter() - started
        handle.remove()
        for cls, attr, original in saved:
            setattr(cls, attr, original)


def matmul_peak(
    hidden: int = 576, inner: int = 1536, rows: int = 512, repeats: int = 20, dtype: str = "float32"
) -> float:
    """FLOP/s of ``rows × hidden @ hidden × inner`` products in ``dtype`` on this machine (the
    best of a few shapes around the model's), with torch's current threads."""
    import torch

    best, kind = 0.0, getattr(torch, dtype)
    for n, k, m in ((rows, hidden, inner), (rows, inner, hidden), (rows * 4, hidden, hidden)):
        a, b = torch.randn(n, k, dtype=kind), torch.randn(k, m, dtype=kind)
        for _ in range(3):
            a @ b  # warm-up
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        seconds = time.perf_counter() - started
        best = max(best, 2.0 * n * k * m * repeats / seconds)
    return best


def print_profile(title: str, profile: Profile, peak: float, dtype: str = "float32") -> None:
    print(f"\n{title}: {profile.total:.1f} s in all; {dtype} matmul peak {peak / 1e9:.1f} GFLOP/s")
    print("| phase | seconds | tokens fed | tokens/s | linear GFLOP | GFLOP/s | share of peak |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in profile.rows(peak):
        print(f"| {r['phase']} | {r['seconds']:.1f} | {r['tokens']} | {r['tokens_per_s']:.0f} | "
              f"{r['gflops']:.0f} | {r['gflop_per_s']:.1f} | {r['share_of_peak']:.0%} |")  # fmt: skip
