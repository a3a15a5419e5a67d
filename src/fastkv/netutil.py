"""Loopback ports for the servers fastkv's tools and tests start.

A port the OS hands out for port 0 comes from the ephemeral range, and so does the local port of
every outgoing connection: between choosing such a port and the server binding it, a connection
(a peer dialing a peer, a client, a proxy) may take it, and the server fails to start. Ports chosen
here come from below the ephemeral range instead, at random, and are checked free by binding.
"""
from __future__ import annotations

import random
import socket


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback TCP port nothing listens on, outside the ephemeral range when there is room."""
    low, high = 20000, _ephemeral_low()
    if high - low < 1000:  # an unusual range: fall back to one the OS picks
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    rng = random.SystemRandom()
    while True:
        port = rng.randrange(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
