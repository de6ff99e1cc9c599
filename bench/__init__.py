"""Backchannel benchmarks: ours beside the peers people would use instead.

``python -m bench`` runs every benchmark in one process and prints the ratios;
see :mod:`bench.harness` and ``docs/benchmarks.md``.
"""
