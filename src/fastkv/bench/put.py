"""`fastkv bench put`: Put throughput and latency against any etcd v3 endpoint."""
from fastkv.bench import _loadgen_cli


def add_parser(subparsers):
    _loadgen_cli.add_parser(
        subparsers, "put", "load-test Put against an etcd v3 endpoint",
        "Send --total Put requests (random or sequential keys of --key-size bytes from a key space of "
        "--key-space-size, values of --val-size bytes) from --clients concurrent clients.")
