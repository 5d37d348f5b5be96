"""Ratio benchmarks of the library's hot paths: see README.md and :mod:`benchmarks.harness`."""

from benchmarks.harness import Benchmark, Result, discover, measure

__all__ = ["Benchmark", "Result", "discover", "measure"]
