"""`fastkv bench range`: single-key Range throughput and latency (linearizable or serializable)."""
from fastkv.bench import _loadgen_cli


def add_parser(subparsers):
    _loadgen_cli.add_parser(
        subparsers, "range", "load-test single-key Range (get) against an etcd v3 endpoint",
        "First put every key of the key space (unless --no-prefill), then send --total single-key "
        "Range requests for random (or sequential) keys; --consistency l|s picks linearizable "
        "(read-index round) or serializable (member-local) reads.")
