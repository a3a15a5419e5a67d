"""`fastkv bench txn-put`: Txn requests each carrying --txn-ops puts (no compares)."""
from fastkv.bench import _loadgen_cli


def add_parser(subparsers):
    _loadgen_cli.add_parser(
        subparsers, "txn-put", "load-test Txn with puts against an etcd v3 endpoint",
        "Send --total Txn requests, each putting --txn-ops consecutive distinct keys in one revision.")
