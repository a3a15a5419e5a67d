"""Peer transport: how raft messages and snapshots reach other members.

base.Transporter / base.RaftSink name the two-way boundary with the server; PeerTransport is the
cluster implementation (stream + pipeline over TCP, TLS optional); LocalTransport serves a
one-member cluster.
"""
from fastkv.transport.base import CallableSink, LocalTransport, RaftSink, Transporter  # noqa: F401
from fastkv.transport.peer import PeerTransport, TransportConfig  # noqa: F401
from fastkv.transport.peerhttp import PeerHTTP  # noqa: F401
from fastkv.transport.tls import TLSInfo  # noqa: F401
