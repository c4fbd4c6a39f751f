"""Benchmarks: Loupe paths measured next to their raw baselines."""
