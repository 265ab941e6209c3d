"""Benchmarks: `python -m benchmarks.x` from the repository root (those that reuse a recipe need the -m form)."""
