"""Unlearning methods as TRL-based trainers (built in a later release)."""
