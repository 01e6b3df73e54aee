"""Helpers shared by the tests and the benchmarks: server processes, saved models, the real data."""
