"""Baselines and references used by scripts/benchmark.py and the tests; not part of the package."""
