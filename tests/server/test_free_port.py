"""free_port: the ports tests and tools give the servers they start."""
from __future__ import annotations

import socket

from fastkv.netutil import _ephemeral_low, free_port


def test_free_port_never_hands_out_a_port_twice():
    # a cluster picks every member's ports before starting any, so a port handed out still looks
    # free; with random picks from ~12k ports, a few thousand picks would repeat one for sure
    ports = [free_port() for _ in range(3000)]
    assert len(set(ports)) == len(ports)
    assert all(20000 <= p < _ephemeral_low() for p in ports)


def test_free_port_skips_a_port_in_use():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert taken not in {free_port() for _ in range(200)}
