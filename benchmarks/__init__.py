"""Benchmarks and checks that do not ship in the image."""
