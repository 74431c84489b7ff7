"""Benchmarks of snakepit against its standard-library peers (pytest-benchmark)."""
