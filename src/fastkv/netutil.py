"""Loopback ports for the servers fastkv's tools and tests start.

A port the OS hands out for port 0 comes from the ephemeral range, and so does the local port of
every outgoing connection: between choosing such a port and the server binding it, a connection
(a peer dialing a peer, a client, a proxy) may take it, and the server fails to start. Ports chosen
here come from below the ephemeral range instead, at random, and are checked free by binding.
"""
from __future__ import annotations

import random
import socket
import threading


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_handed_out: set[int] = set()  # ports free_port returned in this process: never returned twice
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """A loopback TCP port nothing listens on, outside the ephemeral range when there is room, and
    not one this process was given before: a port handed out but not yet bound (a cluster picks
    every member's ports before it starts any) looks free, and two members given the same port
    would fight over it."""
    low, high = 20000, _ephemeral_low()
    if high - low < 1000:  # an unusual range: fall back to one the OS picks
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    rng = random.SystemRandom()
    while True:
        port = rng.randrange(low, high)
        with _handed_out_lock:
            if port in _handed_out:
                continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        with _handed_out_lock:
            if port in _handed_out:  # another thread took it meanwhile
                continue
            if len(_handed_out) >= (high - low) // 2:  # a very long run: start over, oldest are long gone
                _handed_out.clear()
            _handed_out.add(port)
        return port
