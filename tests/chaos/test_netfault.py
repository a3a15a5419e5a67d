"""Peer-port proxies: classification of etcd's peer requests, and real partitions of real etcd."""
from __future__ import annotations

import os
import shutil
import time

import pytest

from fastkv.chaos.cluster import EtcdCluster
from fastkv.chaos.netfault import PeerProxies, _classify, _one_request, _Proxy, isolate, split
from fastkv.client.sync import EtcdClient


def test_classify_peer_requests():
    stream = b"GET /raft/stream/msgappv2/abc HTTP/1.1\r\nHost: x\r\nX-Server-From: 8E9E05C52164694D\r\n\r\n"
    assert _classify(stream) == ("8e9e05c52164694d", "out")
    post = b"POST /raft HTTP/1.1\r\nX-Server-From: 1f\r\nContent-Length: 3\r\n\r\n"
    assert _classify(post) == ("1f", "in")
    assert _classify(b"POST /raft/snapshot HTTP/1.1\r\nX-Server-From: 1f\r\n\r\n") == ("1f", "in")
    assert _classify(b"GET /version HTTP/1.1\r\n\r\n") == (None, "both")


def test_each_proxied_connection_carries_one_request():
    # Go reuses kept-alive connections across requests: a probe's connection must not be
    # reused for POST /raft, which the proxy would then never classify
    head = b"GET /raft/probing HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nUser-Agent: Go\r\n\r\n"
    assert _one_request(head) == (b"GET /raft/probing HTTP/1.1\r\nHost: x\r\nUser-Agent: Go\r\n"
                                  b"Connection: close\r\n\r\n")
    assert _one_request(b"GET / HTTP/1.1\r\n\r\n") == b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n"


def test_block_rules_follow_the_direction_of_the_messages():
    p = _Proxy({"a": (1, 2), "b": (3, 4)})
    p.names = {"b1": "b"}
    p.blocked = {("b", "a")}  # nothing b sends reaches a
    assert p.crosses_block("a", "b1", "in")        # b posting to a
    assert not p.crosses_block("a", "b1", "out")   # a streaming to b
    assert p.crosses_block("a", "b1", "both")
    assert not p.crosses_block("a", "zz", "in")    # unknown dialer passes
    assert isolate("a", ["a", "b", "c"]) == {("a", "b"), ("b", "a"), ("a", "c"), ("c", "a")}
    assert split(["a"], ["a", "b", "c"]) == isolate("a", ["a", "b", "c"])


def _wait(fn, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            out = fn()
            if out:
                return out
        except Exception as exc:  # noqa: BLE001 - members are expected to fail while partitioned
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"condition not met in {timeout}s (last error: {last})")


@pytest.fixture
def etcd3(tmp_path):
    if shutil.which("etcd") is None and not os.environ.get("ETCD_BIN"):
        if os.environ.get("FASTKV_ALLOW_NO_ETCD"):
            pytest.skip("real etcd not installed")
        pytest.fail("real etcd is needed: apt-get install -y etcd-server etcd-client")
    cluster = EtcdCluster(str(tmp_path / "c"), 3, proxied=True)
    proxies = PeerProxies(cluster.members)
    proxies.start()
    try:
        cluster.start()
        clients = [EtcdClient(e, timeout=2) for e in cluster.endpoints()]
        yield cluster, proxies, clients
    finally:
        cluster.stop()
        proxies.stop()
    assert not any(m.running for m in cluster.members)
    assert proxies.proc is None


@pytest.mark.etcd
def test_isolated_leader_loses_its_quorum_and_heals(etcd3):
    cluster, proxies, clients = etcd3
    status = _wait(lambda: (s := clients[0].status()).leader and s)
    ids = {m.ID: m.name for m in clients[0].member_list().members}
    proxies.set_member_ids(ids)
    names = [m.name for m in cluster.members]
    leader = names.index(ids[status.leader])
    others = [i for i in range(3) if i != leader]
    clients[leader].put(b"k", b"before")
    proxies.block(isolate(names[leader], names))
    # the majority elects someone else and takes writes; the isolated old leader cannot
    _wait(lambda: (s := clients[others[0]].status()).leader and ids[s.leader] != names[leader])
    _wait(lambda: clients[others[0]].put(b"k", b"majority"))
    with pytest.raises(Exception):
        clients[leader].put(b"k", b"isolated")
    proxies.heal()
    _wait(lambda: clients[leader].get(b"k").kvs[0].value == b"majority")


@pytest.mark.etcd
def test_one_way_loss_cuts_only_what_a_member_receives(etcd3):
    cluster, proxies, clients = etcd3
    status = _wait(lambda: (s := clients[0].status()).leader and s)
    ids = {m.ID: m.name for m in clients[0].member_list().members}
    proxies.set_member_ids(ids)
    names = [m.name for m in cluster.members]
    leader = names.index(ids[status.leader])
    deaf = (leader + 1) % 3
    # nothing reaches `deaf`, but what it sends still goes out
    proxies.block({(names[i], names[deaf]) for i in range(3) if i != deaf})
    term_before = clients[leader].status().raftTerm
    _wait(lambda: clients[leader].put(b"k", b"v1") or True)
    time.sleep(2.5)  # more than two election timeouts
    got = clients[deaf].get(b"k", serializable=True)
    assert not got.kvs, "a member that receives nothing got the write"
    # its vote requests (outbound) still reach the others, which ignore them while they hear from
    # their leader (etcd runs raft with CheckQuorum: a follower in its leader's lease neither votes
    # nor takes the higher term), so the majority keeps its leader and term
    deaf_id = format(next(i for i, n in ids.items() if n == names[deaf]), "x")
    ignored = f"ignored MsgVote from {deaf_id}"
    _wait(lambda: all(ignored in open(cluster.members[i].log_path, errors="replace").read()
                      for i in range(3) if i != deaf))
    for i in range(3):
        if i != deaf:
            st = clients[i].status()
            assert (st.leader, st.raftTerm) == (status.leader, term_before)
    proxies.heal()
    _wait(lambda: clients[deaf].get(b"k", serializable=True).kvs[0].value == b"v1")
