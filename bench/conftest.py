"""pytest-benchmark suites. Run: python -m pytest bench/ --benchmark-only
Each group pairs fastkv with its reference (raw py-lmdb, or the pure-Python twin); compare the
rows of a group, not absolute times — this machine is shared and noisy."""
