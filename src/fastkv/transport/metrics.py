"""Peer metrics under etcd's names (etcdserver/api/rafthttp/metrics.go), labelled by peer id in hex
as etcd prints member ids.

The server's registry renders unlabelled values, so this module exposes both: `total(name)` for a
callable-based counter and `render_lines()` for the full labelled Prometheus text the server can
append to its exposition. Everything is updated from the event loop only.
"""
from __future__ import annotations

import bisect
from collections import defaultdict

RTT_BUCKETS = tuple(0.0001 * 2**i for i in range(16))
SNAPSHOT_BUCKETS = tuple(0.1 * 2**i for i in range(10))

COUNTERS = {
    # name: (label, help)
    "etcd_network_peer_sent_bytes_total": ("To", "The total number of bytes sent to peers."),
    "etcd_network_peer_received_bytes_total": ("From", "The total number of bytes received from peers."),
    "etcd_network_peer_sent_failures_total": ("To", "The total number of send failures from peers."),
    "etcd_network_peer_received_failures_total": ("From", "The total number of receive failures from peers."),
    "etcd_network_snapshot_send_success": ("To", "Total number of successful snapshot sends"),
    "etcd_network_snapshot_send_failures": ("To", "Total number of snapshot send failures"),
    "etcd_network_snapshot_receive_success": ("From", "Total number of successful snapshot receives"),
    "etcd_network_snapshot_receive_failures": ("From", "Total number of snapshot receive failures"),
    "etcd_network_disconnected_peers_total": ("Remote", "The total number of disconnected peers."),
}
GAUGES = {
    "etcd_network_active_peers": ("Remote", "The current number of active peer connections."),
    "etcd_network_snapshot_send_inflights_total": ("To", "Total number of inflight snapshot sends"),
    "etcd_network_snapshot_receive_inflights_total": ("From", "Total number of inflight snapshot receives"),
}
HISTOGRAMS = {
    "etcd_network_peer_round_trip_time_seconds": ("To", "Round-Trip-Time histogram between peers", RTT_BUCKETS),
    "etcd_network_snapshot_send_total_duration_seconds": ("To", "Total latency distributions of v3 snapshot sends", SNAPSHOT_BUCKETS),
    "etcd_network_snapshot_receive_total_duration_seconds": ("From", "Total latency distributions of v3 snapshot receives", SNAPSHOT_BUCKETS),
}


class _Hist:
    __slots__ = ("buckets", "counts", "sum", "count")

    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, v)] += 1
        self.sum += v
        self.count += 1


class PeerMetrics:
    def __init__(self, local_id: int):
        self.local = f"{local_id:x}"
        self._values: dict[str, dict[int, float]] = {n: defaultdict(int) for n in (*COUNTERS, *GAUGES)}
        self._hists: dict[str, dict[int, _Hist]] = {n: {} for n in HISTOGRAMS}

    def add(self, name: str, peer: int, v: float = 1) -> None:
        self._values[name][peer] += v

    def set(self, name: str, peer: int, v: float) -> None:
        self._values[name][peer] = v

    def get(self, name: str, peer: int) -> float:
        return self._values[name].get(peer, 0)

    def observe(self, name: str, peer: int, v: float) -> None:
        h = self._hists[name].get(peer)
        if h is None:
            h = self._hists[name][peer] = _Hist(HISTOGRAMS[name][2])
        h.observe(v)

    def histogram_count(self, name: str, peer: int) -> int:
        h = self._hists[name].get(peer)
        return 0 if h is None else h.count

    def total(self, name: str) -> float:
        """Sum over peers, for an unlabelled registry entry (server/metrics.Metrics.counter)."""
        if name in self._hists:
            return sum(h.count for h in self._hists[name].values())
        return sum(self._values[name].values())

    def unlabelled(self) -> list[tuple[str, str, str, object]]:
        """(name, "counter"|"gauge", help, fn) for every counter and gauge, summed over peers:
        what server/metrics.Metrics.counter()/gauge() take."""
        out = []
        for table, typ in ((COUNTERS, "counter"), (GAUGES, "gauge")):
            for name, (_label, help_) in table.items():
                out.append((name, typ, help_, lambda name=name: self.total(name)))
        return out

    def render_lines(self) -> list[str]:
        out: list[str] = []
        for table, typ in ((COUNTERS, "counter"), (GAUGES, "gauge")):
            for name, (label, help_) in table.items():
                out += [f"# HELP {name} {help_}", f"# TYPE {name} {typ}"]
                for peer, v in sorted(self._values[name].items()):
                    lbl = f'{label}="{peer:x}"'
                    if name in ("etcd_network_active_peers", "etcd_network_disconnected_peers_total"):
                        lbl = f'Local="{self.local}",' + lbl
                    out.append(f"{name}{{{lbl}}} {_num(v)}")
        for name, (label, help_, _b) in HISTOGRAMS.items():
            out += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
            for peer, h in sorted(self._hists[name].items()):
                acc = 0
                for b, c in zip(h.buckets, h.counts):
                    acc += c
                    out.append(f'{name}_bucket{{{label}="{peer:x}",le="{b:g}"}} {acc}')
                out.append(f'{name}_bucket{{{label}="{peer:x}",le="+Inf"}} {h.count}')
                out.append(f'{name}_sum{{{label}="{peer:x}"}} {h.sum:.9g}')
                out.append(f'{name}_count{{{label}="{peer:x}"}} {h.count}')
        return out


def _num(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:.17g}"
