"""Benchmarks (`make bench`, not part of `make test`): see tests/perf/bench.py."""
