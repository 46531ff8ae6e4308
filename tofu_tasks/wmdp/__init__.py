"""WMDP (Li et al. 2024, "The WMDP Benchmark: Measuring and Reducing Malicious Use With Unlearning") as a benchmark plug-in: its questions as the forget score, MMLU as the utility."""
