"""The client URL serves gRPC and plain HTTP (/metrics, /health, /version) on one port, as etcd."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from fastkv.client.sync import EtcdClient


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_http_and_grpc_share_the_client_port(fastkv_endpoint):
    c = EtcdClient(fastkv_endpoint)
    try:
        assert c.put(b"k", b"v").header.revision == 2
        status, body = _get(fastkv_endpoint + "/health")
        assert (status, json.loads(body)) == (200, {"health": "true"})
        status, body = _get(fastkv_endpoint + "/version")
        assert status == 200 and json.loads(body)["etcdserver"] == "3.4.23"
        status, body = _get(fastkv_endpoint + "/metrics")
        assert status == 200 and b"etcd_server_has_leader 1" in body
        assert b"etcd_server_proposals_applied_total" in body
        assert _get(fastkv_endpoint + "/nope")[0] == 404
        # gRPC still works on the same port after the HTTP requests
        assert c.get(b"k").kvs[0].value == b"v"
    finally:
        c.close()


def _relayed_ports(pid: int, client_port: int) -> list[int]:
    """The internal gRPC port of each relayed connection: the member's outgoing loopback
    connections to a port it listens on itself (other than the client port)."""
    import psutil

    conns = psutil.Process(pid).net_connections("tcp")
    internal = {c.laddr.port for c in conns if c.status == psutil.CONN_LISTEN} - {client_port}
    return sorted(c.raddr.port for c in conns
                  if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port in internal)


def test_client_connections_spread_over_the_grpc_servers(tmp_path):
    """--grpc-servers N (the grpcio reference front end): each new gRPC connection is relayed to the
    least loaded internal server, so N connections use N different servers, and every one serves the
    same member."""
    from tests.server._util import Member

    m = Member(tmp_path / "data", "--client-frontend", "grpcio", "--grpc-servers", "3").start()
    clients = []
    try:
        for i in range(3):
            c = m.client()
            clients.append(c)
            assert c.put(b"k%d" % i, b"v").header.revision == i + 2
        ports = _relayed_ports(m.proc.pid, m.port)
        assert len(ports) == 3 and len(set(ports)) == 3, ports
        for c in clients:  # all three see every write: one member behind all servers
            assert [kv.key for kv in c.get(b"k", prefix=True).kvs] == [b"k0", b"k1", b"k2"]
        # a fourth connection shares a server with one of the first three, and works as well
        c = m.client()
        clients.append(c)
        assert c.put(b"k3", b"v").header.revision == 5
        ports = _relayed_ports(m.proc.pid, m.port)
        assert len(ports) == 4 and len(set(ports)) == 3, ports
    finally:
        for c in clients:
            c.close()
        m.stop()
