"""Benchmarks and the pure-NumPy reference network; installed as ``fastbp.benchmarks``."""
