"""Helpers for tests, benchmarks and offline checks (tiny models); not used by the commands."""
