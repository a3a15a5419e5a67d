"""`fastkv bench lease-keepalive`: LeaseKeepAlive round trips on per-client streams."""
from fastkv.bench import _loadgen_cli


def add_parser(subparsers):
    _loadgen_cli.add_parser(
        subparsers, "lease-keepalive", "load-test LeaseKeepAlive against an etcd v3 endpoint",
        "Each client grants one lease (--lease-ttl), opens its own LeaseKeepAlive stream and sends "
        "keep-alives one at a time; latency is one request/response round trip on the stream. "
        "Leases are revoked afterwards (outside the measurement).")
