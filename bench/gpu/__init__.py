"""Benchmarks that need a GPU (run on a lent device by run_on_device.sh)."""
