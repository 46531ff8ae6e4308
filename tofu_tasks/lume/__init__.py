"""LUME (Ramakrishna et al. 2025; SemEval-2025 Task 4) as a benchmark plug-in: forget and retain sentence completions and questions on creative documents and (synthetic and real) biographies."""
