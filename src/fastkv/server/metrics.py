"""Prometheus metrics under etcd's names, with a tiny registry (no dependency on prometheus_client:
we need a handful of counters, gauges and histograms, and their text format is simple)."""
from __future__ import annotations

import bisect
import threading

# etcd's disk histograms use exponential buckets from 1 ms doubling 14 times
DISK_BUCKETS = tuple(0.001 * 2**i for i in range(14))


class Histogram:
    def __init__(self, name: str, help_: str, buckets=DISK_BUCKETS):
        self.name, self.help, self.buckets = name, help_, tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0
        self._mu = threading.Lock()

    def observe(self, v: float) -> None:
        with self._mu:
            self.counts[bisect.bisect_left(self.buckets, v)] += 1
            self.sum += v
            self.count += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        acc = 0
        for b, c in zip(self.buckets, self.counts):
            acc += c
            out.append(f'{self.name}_bucket{{le="{b:g}"}} {acc}')
        out.append(f'{self.name}_bucket{{le="+Inf"}} {self.count}')
        out.append(f"{self.name}_sum {self.sum:.9g}")
        out.append(f"{self.name}_count {self.count}")
        return out


class Metrics:
    """Live values come from callables so the exposition always reads current state."""

    def __init__(self):
        self.wal_fsync = Histogram("etcd_disk_wal_fsync_duration_seconds",
                                   "The latency distributions of fsync called by WAL.")
        self.backend_commit = Histogram("etcd_disk_backend_commit_duration_seconds",
                                        "The latency distributions of commit called by backend.")
        self.proposals_failed_total = 0
        self._values: list = []  # (name, type, help, callable)
        self.sections: list = []  # callables returning exposition lines of their own (labelled families)

    def gauge(self, name: str, help_: str, fn) -> None:
        self._values.append((name, "gauge", help_, fn))

    def counter(self, name: str, help_: str, fn) -> None:
        self._values.append((name, "counter", help_, fn))

    def render(self) -> str:
        lines: list[str] = []
        for name, typ, help_, fn in self._values:
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} {typ}", f"{name} {_sample(fn())}"]
        lines += self.wal_fsync.render()
        lines += self.backend_commit.render()
        for section in self.sections:
            lines += section()
        return "\n".join(lines) + "\n"


def _sample(v) -> str:
    # integers exactly ("%g" turned 1234567 into 1.23457e+06, losing counts); floats as Go prints them
    return str(v) if isinstance(v, int) else f"{v:.17g}"
