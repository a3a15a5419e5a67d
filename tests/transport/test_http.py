"""HTTP/1.1 on the peer port: /members, /version, /health, errors; compared with real etcd's peer
port for the endpoints etcd has there."""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import subprocess
import time

import pytest

from fastkv.netutil import free_port
from fastkv.transport import PeerHTTP, PeerTransport


def _members():
    return [{"id": 0x1234abcd, "peerURLs": ["http://127.0.0.1:2380"], "name": "a",
             "clientURLs": ["http://127.0.0.1:2379"]},
            {"id": 0x55, "peerURLs": ["http://127.0.0.1:2480"], "name": "b",
             "clientURLs": ["http://127.0.0.1:2479"]}]


def _get(port, path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


async def _serve_and_query(kit, healthy, queries):
    tr = PeerTransport(1, kit.CLUSTER_ID, snap_dir=str(kit.tmp_path / "s"),
                       http=PeerHTTP(members=_members, health=lambda: healthy))
    (_h, port), = await tr.serve(["http://127.0.0.1:0"])
    try:
        # http.client is blocking: run it off the loop that serves the port
        return [await asyncio.to_thread(_get, port, *q) for q in queries]
    finally:
        tr.stop()
        await tr.wait_closed()


def test_peer_http_endpoints(kit):
    res = kit.run(_serve_and_query(kit, True, [("/members",), ("/version",), ("/health",),
                                               ("/nope",), ("/members", "POST")]))
    (s1, h1, b1), (s2, h2, b2), (s3, _h3, b3), (s4, _h4, b4), (s5, h5, b5) = res
    assert s1 == 200 and json.loads(b1) == _members()
    assert h1["Content-Type"] == "application/json"
    assert h1["X-Etcd-Cluster-ID"] == f"{kit.CLUSTER_ID:x}"
    assert s2 == 200 and json.loads(b2) == {"etcdserver": "3.4.23", "etcdcluster": "3.4.0"}
    assert s3 == 200 and json.loads(b3) == {"health": "true"}
    assert (s4, b4) == (404, b"404 page not found\n")
    assert (s5, b5, h5["Allow"]) == (405, b"Method Not Allowed\n", "GET")
    (s6, _h, b6), = kit.run(_serve_and_query(kit, False, [("/health",)]))
    assert s6 == 503 and json.loads(b6) == {"health": "false"}


def test_oversized_http_head_is_refused(kit):
    async def body():
        tr = PeerTransport(1, kit.CLUSTER_ID, snap_dir=str(kit.tmp_path / "s"))
        (_h, port), = await tr.serve(["http://127.0.0.1:0"])
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"GET /members HTTP/1.1\r\nX-Junk: " + b"a" * (64 << 10))
            data = await asyncio.wait_for(r.read(), 10)
            assert data.startswith(b"HTTP/1.1 431")
            w.close()
        finally:
            tr.stop()
            await tr.wait_closed()

    kit.run(body())


@pytest.mark.etcd
def test_matches_real_etcd_peer_port(kit, tmp_path):
    binary = shutil.which("etcd")
    if binary is None:
        if os.environ.get("FASTKV_ALLOW_NO_ETCD"):
            pytest.skip("real etcd not installed")
        pytest.fail("real etcd is needed: apt-get install -y etcd-server etcd-client")
    cport, pport = free_port(), free_port()
    purl = f"http://127.0.0.1:{pport}"
    proc = subprocess.Popen([binary, "--name", "default", "--data-dir", str(tmp_path / "etcd"),
                             "--listen-client-urls", f"http://127.0.0.1:{cport}",
                             "--advertise-client-urls", f"http://127.0.0.1:{cport}",
                             "--listen-peer-urls", purl, "--initial-advertise-peer-urls", purl,
                             "--initial-cluster", f"default={purl}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                theirs = [_get(pport, "/members"), _get(pport, "/version"), _get(pport, "/nope"),
                          _get(pport, "/members", "POST")]
                if theirs[0][0] == 200 and "clientURLs" in json.loads(theirs[0][2])[0]:
                    break  # etcd publishes its client URLs through raft shortly after start
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("etcd's peer port did not answer")
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(10)
    ours = kit.run(_serve_and_query(kit, True, [("/members",), ("/version",), ("/nope",),
                                                ("/members", "POST")]))
    for (ts, th, tb), (os_, oh, ob) in zip(theirs, ours):
        assert ts == os_
        assert th["Content-Type"] == oh["Content-Type"]
        assert ("X-Etcd-Cluster-Id" in th) == ("X-Etcd-Cluster-ID" in oh)
    # same member JSON shape: field names, order and types
    (their_member,), our_members = json.loads(theirs[0][2]), json.loads(ours[0][2])
    assert list(their_member) == list(our_members[0])
    assert {k: type(v) for k, v in their_member.items()} == {k: type(v) for k, v in our_members[0].items()}
    assert theirs[0][2].endswith(b"]\n") and ours[0][2].endswith(b"]\n")
    assert theirs[1][2] == ours[1][2]
    assert theirs[2][2] == ours[2][2] and theirs[3][2] == ours[3][2]


def test_forwarded_requests_answered_with_etcds_statuses(kit):
    """The POST routes a follower forwards to the leader: a promote's refusals come back as etcd's
    peer handler gives them (404 unknown member, 412 not a learner), the keep-alive and time to live
    as protobuf; a body longer than any of ours is not taken for one of them."""
    from fastkv.api.etcdpb import rpc_pb2
    from fastkv.errors import EtcdError
    from fastkv.transport.peerrequests import ForwardRefused, promote_on_leader, renew_on_leader, \
        time_to_live_on_leader

    async def promote(mid):
        if mid == 7:
            raise EtcdError("etcdserver: can only promote a learner member", "FAILED_PRECONDITION")
        if mid == 8:
            return _members()
        raise EtcdError("etcdserver: member not found", "NOT_FOUND")

    async def renew(lid):
        return 30 if lid == 5 else 0

    async def ttl(req):
        return rpc_pb2.LeaseTimeToLiveResponse(ID=req.ID, TTL=12, grantedTTL=20, keys=[b"k"] if req.keys else [])

    async def go():
        tr = PeerTransport(1, kit.CLUSTER_ID, snap_dir=str(kit.tmp_path / "s"),
                           http=PeerHTTP(members=_members, lease_renew=renew, lease_time_to_live=ttl,
                                         member_promote=promote))
        (_h, port), = await tr.serve(["http://127.0.0.1:0"])
        urls = [f"http://127.0.0.1:{port}"]
        try:
            out = [await promote_on_leader(urls, 8)]
            for mid in (7, 9):
                with pytest.raises(ForwardRefused) as ei:
                    await promote_on_leader(urls, mid)
                out.append((ei.value.status, ei.value.text))
            out.append((await renew_on_leader(urls, 5), await renew_on_leader(urls, 6)))
            r = await time_to_live_on_leader(urls, rpc_pb2.LeaseTimeToLiveRequest(ID=3, keys=True))
            out.append((r.ID, r.TTL, r.grantedTTL, list(r.keys)))
            big = await asyncio.to_thread(_post_raw, port, "/leases", b"x" * 65)
            bad_id = await asyncio.to_thread(_post_raw, port, "/members/promote/xyz", b"")
            return out, big, bad_id
        finally:
            tr.stop()
            await tr.wait_closed()

    out, big, bad_id = kit.run(go())
    assert out == [_members(), (412, "etcdserver: can only promote a learner member"),
                   (404, "etcdserver: member not found"), (30, 0), (3, 12, 20, [b"k"])]
    assert big[0] == 404          # not a route of ours: the GET-only table answers
    assert bad_id == (404, b"member xyz not found in cluster\n")


def _post_raw(port, path, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("POST", path, body=body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()
