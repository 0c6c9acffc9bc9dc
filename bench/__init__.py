"""Benchmarks against the embedded broker: ``python -m bench.run_all`` (``make bench``)."""
