"""Benchmark runner, metrics and command line of the suite."""
