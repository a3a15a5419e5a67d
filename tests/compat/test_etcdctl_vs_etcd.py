"""Differential tests: the same etcdctl 3.4 command sequences against a fresh real etcd and a fresh
`fastkv serve`, outputs compared after normalisation (see tests/compat/ctl.py for exactly what is
normalised). Revisions, values, counts, exit codes and error texts must be equal.

etcdctl 3.4 has no `get --count-only` (added in 3.5); count_only is compared over gRPC in
test_grpc_vs_etcd.py instead.

Deliberate differences, normalised or left out on purpose:
- raft index / applied index: etcd also commits internal entries (member attributes, cluster
  version) that fastkv does not have; both are checked to be equal to each other on each server.
- db size: fastkv's live backend is LMDB, not bbolt. Its snapshot is etcd's bbolt format, though:
  `snapshot save` is compared here, and test_snapshot_restore_vs_etcd checks `snapshot status` and
  `snapshot restore` + real etcd serving the restored data.
- Auth (`user`, `role`, `auth`): compared in tests/auth/ (servers there run with auth flags).
"""
from __future__ import annotations

import json
import time

import pytest

from tests.compat.ctl import Pair, max_event_revision

pytestmark = pytest.mark.etcd


@pytest.fixture
def pair(etcd_endpoint, fastkv_endpoint):
    return Pair(etcd_endpoint, fastkv_endpoint)


def _seed(pair):
    for k, v in [("a", "1"), ("ab", "2"), ("abc", "3"), ("b", "4"), ("c", "5"), ("ab", "22"), ("d", "0")]:
        pair.both("put", k, v)


def test_put_and_get_with_every_flag(pair):
    _seed(pair)
    pair.both("put", "ab", "222", "--prev-kv")
    pair.both("put", "e", "6", "--prev-kv", "-w", "json", json_out=True)
    pair.both("put", "e", "--ignore-value", "-w", "json", json_out=True)  # new revision, same value
    pair.both("put", "e", "7", "--ignore-lease", "-w", "fields")
    pair.both("put", "missing", "--ignore-value", expect_rc=1)  # "key not found"
    pair.both("get", "e", "-w", "json", json_out=True)
    for flags in (
        ["a"], ["a", "--prefix"], ["a", "--prefix", "-w", "json"], ["b", "--from-key"], ["a", "c"],
        ["a", "--prefix", "--limit", "2", "-w", "json"], ["", "--from-key", "--limit", "3"],
        ["ab", "--rev", "6", "-w", "json"], ["ab", "--rev", "2"], ["a", "--prefix", "--rev", "4"],
        ["a", "--prefix", "--keys-only"], ["a", "--prefix", "--print-value-only"],
        ["a", "--prefix", "--consistency=s", "-w", "json"], ["missing", "-w", "json"], ["missing"],
        ["", "--from-key", "--keys-only", "--limit", "2", "--order", "DESCEND"],
        ["a", "--prefix", "-w", "fields"], ["a", "--prefix", "--hex"], ["a", "--rev", "-1"],
        ["a", "--prefix", "--limit", "-1"],
    ):
        pair.both("get", *flags, json_out="json" in flags)
    for target in ("KEY", "VERSION", "CREATE", "MODIFY", "VALUE"):
        for order in ("ASCEND", "DESCEND"):
            pair.both("get", "", "--from-key", "--sort-by", target, "--order", order, "-w", "json", json_out=True)
            pair.both("get", "a", "--prefix", "--sort-by", target, "--order", order, "--limit", "2")
    # bad input: the same error text and exit code from both
    pair.both("get", "a", "--rev", "100", expect_rc=1)
    pair.both("put", "", "x", expect_rc=1)
    pair.both("get", "a", "--order", "SIDEWAYS", expect_rc=None)  # rejected by etcdctl itself


def test_del_with_flags(pair):
    _seed(pair)
    pair.both("del", "missing")
    pair.both("del", "d", "--prev-kv")
    pair.both("del", "ab", "--prefix", "--prev-kv", "-w", "json", json_out=True)
    pair.both("del", "b", "--from-key")
    pair.both("get", "", "--from-key", "-w", "json", json_out=True)
    pair.both("del", "a", "--prefix")
    pair.both("get", "", "--from-key", "-w", "json", json_out=True)


def test_txn_success_and_failure_branches(pair):
    _seed(pair)
    success = 'mod("a") > "0"\nvalue("c") = "5"\n\nput a 10\nget ab --prefix\ndel d\n\nput fail 1\n\n'
    pair.both("txn", "-w", "json", stdin=success, json_out=True)
    pair.both("txn", stdin=success)  # simple output format, second time
    failure = 'version("a") = "1"\ncreate("zzz") > "0"\n\nput ok 1\n\nput fail 1\nget a\n\n'
    pair.both("txn", "-w", "json", stdin=failure, json_out=True)
    pair.both("txn", stdin=failure)
    pair.both("txn", stdin='value("a") != "10"\n\nput x 1\n\n\n')  # failure branch with no ops
    pair.both("txn", stdin='\nput t1 1\nput t2 2\n\n\n')  # no compares: success
    pair.both("txn", stdin='\nput t1 1\nput t1 2\n\n\n', expect_rc=1)  # duplicate key
    # --interactive prompts for each section; the prompts and answers must match too
    pair.both("txn", "-i", stdin='value("a") = "10"\n\nput a 11\n\nput a 12\n\n')
    pair.both("txn", "-i", "-w", "json", stdin='create("nope") = "0"\n\nget a\ndel t1\n\n\n', json_out=False)
    pair.both("get", "", "--from-key", "-w", "json", json_out=True)


def test_compaction_and_revision_errors(pair):
    _seed(pair)
    pair.both("compaction", "4")
    pair.both("compaction", "4", expect_rc=1)
    pair.both("compaction", "3", expect_rc=1)
    pair.both("compaction", "100", expect_rc=1)
    pair.both("get", "ab", "--rev", "3", expect_rc=1)
    pair.both("get", "ab", "--rev", "4", "-w", "json", json_out=True)
    pair.both("get", "ab", "--rev", "9", expect_rc=1)
    pair.both("compaction", "--physical", "6")
    pair.both("get", "", "--from-key", "--rev", "6", "-w", "json", json_out=True)
    # a watch from a compacted revision is canceled by the server (with the compact revision)
    pair.both("watch", "--rev", "2", "a", "-w", "json", expect_rc=None, json_out=True)


def test_lease_lifecycle(pair):
    _seed(pair)
    pair.both("lease", "grant", "100")
    pair.both("lease", "grant", "1000")
    lease = {c: next(i for i, n in c.leases.items() if n == "LEASE1") for c in (pair.etcd, pair.fkv)}
    for c in (pair.etcd, pair.fkv):  # the lease id differs per server: each side uses its own
        for k in ("l1", "l2", "l3"):
            rc, _out, err = c.run("put", k, "v", f"--lease={lease[c]:x}")
            assert rc == 0, err
    pair.both("get", "l", "--prefix", "-w", "json", json_out=True)
    for c in (pair.etcd, pair.fkv):
        out = c.text(c.run("lease", "keep-alive", "--once", f"{lease[c]:x}")[1])
        assert out == "lease LEASE1 keepalived with TTL(100)", out
        rc, out, err = c.run("lease", "timetolive", f"{lease[c]:x}", "--keys")
        # remaining TTL depends on timing: checked within a range, the rest exactly
        out = c.text(out)
        # etcd lists attached keys in Go map order: compare them as a set
        keys = out.rsplit("attached keys([", 1)[1].rstrip("])").split()
        assert out.startswith("lease LEASE1 granted with TTL(100s), remaining(") and sorted(keys) == ["l1", "l2", "l3"], out
        remaining = int(out.split("remaining(")[1].split("s")[0])
        assert 95 <= remaining <= 100, out
    pair.both("lease", "list", unordered=True)
    pair.both("lease", "list", "-w", "json", json_out=True)
    for c in (pair.etcd, pair.fkv):
        rc, out, err = c.run("lease", "revoke", f"{lease[c]:x}")
        assert (rc, c.text(out)) == (0, "lease LEASE1 revoked"), (out, err)
    # all three keys went in one revision (the next one after the seed)
    hist = pair.history("l", "--prefix", start=9)
    assert [(e.get("type"), e["kv"]["mod_revision"]) for r in hist for e in r["Events"]] == \
        [(None, 9), (None, 10), (None, 11), (1, 12), (1, 12), (1, 12)], hist
    pair.both("get", "", "--from-key", "-w", "json", json_out=True)
    pair.both("lease", "list", unordered=True)
    for c in (pair.etcd, pair.fkv):  # revoked: gone
        rc, out, err = c.run("lease", "revoke", f"{lease[c]:x}")
        assert rc == 1 and c.text(err) == \
            "Error: failed to revoke lease (etcdserver: requested lease not found)", (rc, out, err)
        rc, out, err = c.run("lease", "timetolive", f"{lease[c]:x}")
        assert (rc, c.text(out)) == (0, "lease LEASE1 already expired"), (rc, out, err)


def _background(pair, *args):
    return {c: c.popen(*args) for c in (pair.etcd, pair.fkv)}


def _stop_all(bgs):
    for b in bgs.values():
        b.stop()


def test_watch_history_and_live_events(pair):
    _seed(pair)
    pair.both("txn", stdin='\nput a 7\nput b 8\ndel d\n\n\n')
    history = _background(pair, "watch", "--rev", "1", "--prefix", "", "-w", "json")
    prevkv = _background(pair, "watch", "--rev", "3", "--prev-kv", "a", "--prefix", "-w", "json")
    live = _background(pair, "watch", "a", "--prefix", "--prev-kv", "-w", "json")
    try:
        # the live watchers must be registered before the writes; etcdctl prints nothing at creation
        time.sleep(1.5)
        pair.both("put", "ax", "1")
        pair.both("del", "a", "--prefix")
        pair.both("txn", stdin='\nput a 1\nput ab 2\n\n\n')
        upto = pair.current_revision()
        for name, bgs in (("history", history), ("prevkv", prevkv), ("live", live)):
            for b in bgs.values():
                b.wait_for(lambda ls: max_event_revision(ls) >= upto)
        time.sleep(0.3)  # nothing else may arrive
        for name, bgs in (("history", history), ("prevkv", prevkv), ("live", live)):
            etcd, fkv = (c.json("\n".join(bgs[c].lines)) for c in (pair.etcd, pair.fkv))
            assert fkv == etcd, f"{name}\netcd:   {etcd}\nfastkv: {fkv}"
        # the live watcher saw exactly the three writes made after it started
        assert [r["Header"]["revision"] for r in live[pair.etcd] and
                pair.etcd.json("\n".join(live[pair.etcd].lines))] == [upto - 2, upto - 1, upto]
    finally:
        for bgs in (history, prevkv, live):
            _stop_all(bgs)


def _learn_lease_from_key(c, key_line: str) -> None:
    """Lock and election keys are '<name>/<lease id hex>': name the holder's lease."""
    c.lease_name(int(key_line.rsplit("/", 1)[1], 16))


def _kvs_by_create_revision(pair, prefix):
    """`get --prefix` on both; the kvs compared in create-revision order (key order follows the lease
    ids, which legitimately differ)."""
    out = []
    for c in (pair.etcd, pair.fkv):
        rc, text, err = c.run("get", prefix, "--prefix", "-w", "json")
        assert rc == 0, err
        resp = c.json(text)[0]
        resp["kvs"] = sorted(resp.get("kvs", []), key=lambda kv: kv["create_revision"])
        out.append(resp)
    assert out[1] == out[0], f"etcd:   {out[0]}\nfastkv: {out[1]}"
    return out[0]


def test_lock_second_contender_waits_for_the_first(pair):
    first = _background(pair, "lock", "mylock")
    second = {}
    try:
        for c, b in first.items():
            line = b.wait_lines(1)[0]
            assert line.startswith("mylock/"), b.lines
            _learn_lease_from_key(c, line)
        second = _background(pair, "lock", "mylock", "echo", "second got it")
        time.sleep(1.5)
        for c, b in second.items():
            assert b.lines == [] and b.proc.poll() is None, "second contender did not wait"
        held = _kvs_by_create_revision(pair, "mylock")
        assert [kv["key"] for kv in held["kvs"]][0] == "mylock/LEASE1" and len(held["kvs"]) == 2, held
        _stop_all(first)
        for c, b in second.items():
            assert b.wait_lines(1) == ["second got it"]
            assert b.proc.wait(10) == 0
        hist = pair.history("mylock", "--prefix")
        # put(first), put(second), delete(first), delete(second): four revisions
        assert [e.get("type", 0) for r in hist for e in r["Events"]] == [0, 0, 1, 1], hist
        assert _kvs_by_create_revision(pair, "mylock")["kvs"] == []
    finally:
        _stop_all(first)
        _stop_all(second)


def test_elect_second_candidate_waits_and_observer_sees_both(pair):
    first = _background(pair, "elect", "myelection", "p1")
    observer, second = {}, {}
    try:
        for c, b in first.items():
            lines = b.wait_lines(2)
            assert lines[1] == "p1", b.lines
            _learn_lease_from_key(c, lines[0])
        observer = _background(pair, "elect", "-l", "myelection")
        for c, b in observer.items():
            assert b.wait_lines(2)[1] == "p1", b.lines
        second = _background(pair, "elect", "myelection", "p2")
        time.sleep(1.5)
        for c, b in second.items():
            assert b.lines == [] and b.proc.poll() is None, "second candidate did not wait"
        _kvs_by_create_revision(pair, "myelection")
        _stop_all(first)
        for c, b in second.items():
            lines = b.wait_lines(2)
            assert lines[1] == "p2", lines
            _learn_lease_from_key(c, lines[0])
        for c, b in observer.items():
            b.wait_lines(4)
        for name, bgs in (("first", first), ("second", second), ("observer", observer)):
            etcd, fkv = (c.text("\n".join(bgs[c].lines)) for c in (pair.etcd, pair.fkv))
            assert fkv == etcd, f"{name}\netcd:   {etcd}\nfastkv: {fkv}"
        assert pair.etcd.text("\n".join(observer[pair.etcd].lines)).splitlines() == \
            ["myelection/LEASE1", "p1", "myelection/LEASE2", "p2"]
        _stop_all(second)
        pair.history("myelection", "--prefix")
    finally:
        for bgs in (first, second, observer):
            _stop_all(bgs)


def test_cluster_and_maintenance_commands(pair, tmp_path):
    _seed(pair)
    pair.both("member", "list", "-w", "json", json_out=True)
    for c in (pair.etcd, pair.fkv):
        rc, out, err = c.run("member", "list")
        fields = out.strip().split(", ")
        assert rc == 0 and fields[1:3] == ["started", "default"] and fields[5] == "false", out
        assert fields[4] == f"http://{c.endpoint}", out
    pair.both("endpoint", "status", "-w", "json", json_out=True)
    for c in (pair.etcd, pair.fkv):  # the one member leads, and has applied all it committed
        st = json.loads(c.run("endpoint", "status", "-w", "json")[1])[0]["Status"]
        assert st["leader"] == st["header"]["member_id"] and st["raftAppliedIndex"] == st["raftIndex"], st
    pair.both("endpoint", "health")
    # --cluster: etcdctl finds the endpoints through MemberList's client URLs
    pair.both("endpoint", "health", "--cluster")
    pair.both("endpoint", "status", "--cluster", "-w", "json", json_out=True)
    pair.both("endpoint", "hashkv", "-w", "json", json_out=True)
    pair.both("alarm", "list")
    pair.both("alarm", "list", "-w", "json", json_out=True)
    pair.both("alarm", "disarm")
    pair.both("alarm", "disarm", "-w", "json", json_out=True)
    pair.both("defrag")
    pair.both("get", "", "--from-key", "-w", "json", json_out=True)
    status = []
    for c in (pair.etcd, pair.fkv):
        path = tmp_path / f"snap-{c.port}.db"
        rc, out, err = c.run("snapshot", "save", str(path))
        assert (rc, out.strip()) == (0, f"Snapshot saved at {path}"), (out, err)
        assert path.stat().st_size > 0
        # both files are etcd snapshots: status (bbolt's check, then a scan) reads them alike
        rc, out, err = c.run("snapshot", "status", str(path), "-w", "json")
        assert rc == 0, err
        st = json.loads(out.strip().splitlines()[-1])
        status.append((st["revision"], st["totalKey"]))
    assert status[0] == status[1]
    pair.both("put", "after", "snap")
    pair.both("endpoint", "status", "-w", "json", json_out=True)


def test_lock_holder_killed_releases_when_its_lease_expires(pair):
    """SIGKILL leaves no chance to unlock: the lock passes on only when the holder's session lease
    (--ttl 2, etcd's minimum with the default election timeout) expires; the leader proposes the
    revoke, which deletes the holder's key in one revision."""
    first = _background(pair, "lock", "--ttl", "2", "killed")
    second = {}
    try:
        for c, b in first.items():
            _learn_lease_from_key(c, b.wait_lines(1)[0])
        second = _background(pair, "lock", "killed", "echo", "after expiry")
        time.sleep(0.5)
        for b in first.values():
            b.stop(sig_term=False)
        killed_at = time.monotonic()
        for c, b in second.items():
            assert b.wait_lines(1, timeout=15) == ["after expiry"]
        # not released before the TTL could run out (etcd's keep-alive renews every TTL/3)
        assert time.monotonic() - killed_at > 1.0
        for b in second.values():
            assert b.proc.wait(10) == 0
        hist = pair.history("killed", "--prefix")
        assert [e.get("type", 0) for r in hist for e in r["Events"]] == [0, 0, 1, 1], hist
    finally:
        _stop_all(first)
        _stop_all(second)


def test_interactive_watch_with_progress_request(pair):
    """`watch -i`: watchers added on one stream from stdin, and `progress` (a progress request on a
    synced stream) answered with the current revision as a bookmark."""
    _seed(pair)
    bgs = {c: c.popen("watch", "-i", "-w", "json", stdin=True) for c in (pair.etcd, pair.fkv)}
    try:
        for b in bgs.values():
            b.write("watch a --prefix --prev-kv")
        time.sleep(1.5)  # registered (etcdctl prints nothing at creation)
        pair.both("put", "ab", "new")  # 9
        for b in bgs.values():
            b.wait_for(lambda ls: max_event_revision(ls) >= 9)
            b.write("progress")
            b.wait_lines(3)
            b.write("watch --rev 2 c")
            b.wait_lines(4)
        time.sleep(0.3)
        etcd, fkv = (c.text("\n".join(bgs[c].lines)) for c in (pair.etcd, pair.fkv))
        assert fkv == etcd, f"etcd:   {etcd}\nfastkv: {fkv}"
        assert "progress notify: 9" in etcd.splitlines(), etcd
    finally:
        _stop_all(bgs)
