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
