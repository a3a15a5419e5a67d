"""Endpoint parsing and channel options shared by the sync and asyncio clients."""
from __future__ import annotations

from urllib.parse import urlparse

# etcd accepts requests up to 1.5 MiB and may answer with larger ranges; lift gRPC's 4 MiB cap on
# receive so a big range does not fail on the client. A local subchannel pool makes each channel a
# real TCP connection of its own: without it gRPC shares one connection among equal channels,
# and --conns would be a lie.
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
    ("grpc.use_local_subchannel_pool", 1),
)


def parse_endpoint(endpoint: str) -> str:
    """'http://127.0.0.1:2379', '127.0.0.1:2379' or 'localhost' -> 'host:port' for gRPC."""
    if "://" in endpoint:
        u = urlparse(endpoint)
        if u.scheme not in ("http", "grpc"):
            raise ValueError(f"unsupported endpoint scheme {u.scheme!r} (TLS is not supported): {endpoint}")
        return f"{u.hostname}:{u.port or 2379}"
    return endpoint if ":" in endpoint else f"{endpoint}:2379"


def prefix_range_end(prefix: bytes) -> bytes:
    """etcd's prefix rule: the last byte below 0xff incremented, trailing 0xff bytes dropped;
    b"\\0" (every key >= prefix) when the prefix is all 0xff bytes or empty."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"
