"""MUSE (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation") as a benchmark plug-in."""
