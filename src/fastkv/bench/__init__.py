"""Benchmarks behind `fastkv bench`. One module per workload; see fastkv.bench._common."""
