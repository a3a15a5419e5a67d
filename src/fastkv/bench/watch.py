"""`fastkv bench watch`: put -> event delivery delay to many watchers."""
from fastkv.bench import _loadgen_cli


def add_parser(subparsers):
    _loadgen_cli.add_parser(
        subparsers, "watch", "measure put->event delay to many watchers on an etcd v3 endpoint",
        "Create --watchers watchers on one key, spread over --streams watch streams (and the generator "
        "processes), then put --puts values to that key at --put-rate/s. Each value carries its send "
        "time; every event received is one latency sample (put sent -> event at that watcher). "
        "Throughput is events delivered per second; undelivered events count as MISSING_EVENTS errors.")
