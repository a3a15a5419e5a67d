"""Peer transport: how raft messages reach other members (see base.Transporter)."""
from fastkv.transport.base import LocalTransport, Transporter  # noqa: F401
