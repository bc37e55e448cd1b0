"""Benchmarks for collectstatic-plus; see benchmarks/README.md."""
