"""Clean shutdown and restart: SIGTERM exits 0 quickly, and a restart on the same data dir resumes
with the same member id, revision, keys, leases (their TTL keeps running) and compaction state; a
watch from an old revision after the restart replays history. Snapshots: with --snapshot-count 100
and small WAL segments, a few thousand writes leave snapshot files and released WAL segments, and a
restart from them gives back the same store."""
from __future__ import annotations

import os
import time

import grpc
import pytest

from fastkv.api.etcdpb import rpc_pb2
from tests.server._util import Member, all_kvs, env_with_src

SIGTERM_EXIT_SECONDS = 5.0


def _events_from(client, start_revision: int, until_revision: int) -> list:
    """Every event of a prefix-less all-keys watch from start_revision up to until_revision."""
    out = []
    with client.watch(b"\0", b"\0", start_revision=start_revision, timeout=15) as w:
        created = next(w)
        assert created.created and not created.canceled, created
        while not out or out[-1][0] < until_revision:
            resp = next(w)
            assert not resp.canceled, resp
            out += [(ev.kv.mod_revision, ev.type, ev.kv.key, ev.kv.value) for ev in resp.events]
    return out


def _snapshot_of_state(c) -> dict:
    st = c.status()
    hkv = c.maintenance.HashKV(rpc_pb2.HashKVRequest(revision=0), timeout=10)
    return {"member_id": st.header.member_id, "cluster_id": st.header.cluster_id,
            "revision": st.header.revision, "hash_kv": (hkv.hash, hkv.compact_revision),
            "kvs": [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) for kv in all_kvs(c)],
            "leases": sorted(l.ID for l in c.lease_leases().leases)}


def test_sigterm_then_restart_resumes(tmp_path):
    m = Member(tmp_path / "data").start()
    try:
        c = m.client()
        for i in range(20):
            c.put(b"k%02d" % (i % 7), b"v%d" % i)
        c.delete(b"k03")
        c.txn([], [rpc_pb2.PutRequest(key=b"t1", value=b"a"), rpc_pb2.PutRequest(key=b"t2", value=b"b")])
        compact_rev = c.get(b"k00").header.revision - 5
        c.compact(compact_rev)
        long_lease = c.lease_grant(600).ID
        c.put(b"leased/long", b"L", lease=long_lease)
        short_lease = c.lease_grant(4).ID
        c.put(b"leased/short", b"S", lease=short_lease)
        before = _snapshot_of_state(c)
        history = _events_from(c, compact_rev, before["revision"])
        assert history and history[0][0] == compact_rev
        c.close()

        rc, took = m.terminate()
        assert rc == 0, f"SIGTERM exit code {rc}"
        assert took < SIGTERM_EXIT_SECONDS, f"SIGTERM took {took:.1f}s"
        t_stop = time.monotonic()

        m.start()
        c = m.client()
        after = _snapshot_of_state(c)
        assert after == before
        # compaction state survives: below it is compacted, at it is readable
        with pytest.raises(grpc.RpcError) as ei:
            c.get(b"k00", revision=compact_rev - 1)
        assert ei.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert ei.value.details() == "etcdserver: mvcc: required revision has been compacted"
        assert c.get(b"k00", revision=compact_rev).header.revision == before["revision"]
        # a watch from an old revision replays the same history
        assert _events_from(c, compact_rev, before["revision"]) == history
        # and one from below the compaction is cancelled with compact_revision
        with c.watch(b"\0", b"\0", start_revision=compact_rev - 1, timeout=10) as w:
            resps = [next(w)]
            if not resps[0].canceled:
                resps.append(next(w))
            assert resps[-1].canceled and resps[-1].compact_revision == compact_rev, resps
        # leases: the long one still has its grant, keys attached, TTL running
        ttl = c.lease_time_to_live(long_lease, keys=True)
        assert ttl.grantedTTL == 600 and 0 < ttl.TTL <= 600 and list(ttl.keys) == [b"leased/long"]
        # the short one keeps counting down after the restart and its key goes with it
        short = c.lease_time_to_live(short_lease, keys=True)
        assert short.grantedTTL == 4 and 0 < short.TTL <= 4 + 2, short
        deadline = t_stop + 20
        while c.get(b"leased/short").kvs and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not c.get(b"leased/short").kvs, "short lease never expired after the restart"
        assert c.lease_time_to_live(short_lease).TTL == -1
        assert c.get(b"leased/long").kvs
        # the store keeps counting
        rev = c.get(b"x").header.revision
        assert c.put(b"x", b"y").header.revision == rev + 1
        c.close()
        rc, took = m.terminate()
        assert rc == 0 and took < SIGTERM_EXIT_SECONDS
    finally:
        m.stop()


def test_snapshots_release_wal_segments_and_restart(tmp_path):
    data = tmp_path / "data"
    m = Member(data, "--snapshot-count", "100", "--max-snapshots", "3", "--max-wals", "3",
               env=env_with_src(FASTKV_WAL_SEGMENT_BYTES=64 * 1024)).start()
    waldir, snapdir = data / "member" / "wal", data / "member" / "snap"
    try:
        c = m.client()
        value = b"v" * 100
        ops = []
        for i in range(3000):
            ops.append(rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"key/%05d" % (i % 500), value=value)))
            if len(ops) == 1:  # one write per request: 3000 raft entries
                c.kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=10)
                ops = []
        before = _snapshot_of_state(c)
        assert before["revision"] == 3001
        segments = sorted(f for f in os.listdir(waldir) if f.endswith(".wal"))
        snaps = sorted(f for f in os.listdir(snapdir) if f.endswith(".snap"))
        assert snaps, "no snapshot files after 3000 writes with --snapshot-count 100"
        assert len(snaps) <= 3, f"old snapshots are not purged to --max-snapshots: {snaps}"
        # --max-wals: no more than 3 segments once snapshots cover the older ones (the tail
        # segment can be one a snapshot does not cover yet)
        assert len(segments) <= 3 + 1, f"old WAL segments are not purged to --max-wals: {segments}"
        print("wal segments:", segments, "snapshots:", snaps)
        first_seq = int(segments[0].split("-")[0], 16)
        assert first_seq > 0, f"no WAL segment was released: {segments}"
        # the released segments' entries are in the snapshot; what is left replays on top of it
        c.close()
        m.kill9()
        m.start()
        c = m.client()
        assert _snapshot_of_state(c) == before
        assert c.put(b"after", b"1").header.revision == 3002
        c.close()
    finally:
        m.stop()


def test_restart_with_other_peer_urls_keeps_the_stored_member_id(tmp_path):
    """etcd ignores --initial-* flags on restart: the member is who its WAL says it is. A restart
    with other peer URLs (hence another flag-derived member id) must still elect itself and serve."""
    first = Member(tmp_path / "data").start()
    try:
        c = first.client()
        c.put(b"a", b"1")
        member_id = c.status().header.member_id
        c.close()
        assert first.terminate()[0] == 0
    finally:
        first.stop()
    second = Member(tmp_path / "data").start()  # new client and peer ports
    try:
        c = second.client()
        assert c.status().header.member_id == member_id
        assert c.put(b"b", b"2").header.revision == 3
        assert [m.ID for m in c.member_list().members] == [member_id]
        c.close()
    finally:
        second.stop()


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_shutdown_under_load_with_open_streams(tmp_path, sig):
    """A signal while writers run and watch / keep-alive streams are open: exit 0 within seconds,
    and every acknowledged write is there after the restart."""
    import signal as signal_mod
    import threading

    m = Member(tmp_path / "data").start()
    try:
        c = m.client()
        lease = c.lease_grant(60).ID
        watch = c.watch(b"w/", prefix=True, timeout=30)
        assert next(watch).created
        acked: dict = {}
        stop = threading.Event()

        def keepalive_requests():  # one renew, then the stream stays open until the test ends
            yield rpc_pb2.LeaseKeepAliveRequest(ID=lease)
            stop.wait(30)

        keepalive = c.lease.LeaseKeepAlive(keepalive_requests(), timeout=30)
        assert next(keepalive).TTL == 60

        def writer(n):
            wc = m.client(timeout=5)
            i = 0
            try:
                while not stop.is_set():
                    k = b"w/%d/%d" % (n, i)
                    acked[k] = wc.put(k, b"v").header.revision
                    i += 1
            except grpc.RpcError:
                pass
            finally:
                wc.close()

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        t0 = time.monotonic()
        m.proc.send_signal(getattr(signal_mod, sig))
        rc = m.proc.wait(15)
        took = time.monotonic() - t0
        stop.set()
        for t in threads:
            t.join(10)
        watch.close()
        keepalive.cancel()
        c.close()
        assert rc == 0, f"{sig}: exit code {rc}"
        assert took < SIGTERM_EXIT_SECONDS, f"{sig}: took {took:.1f}s with open streams"
        assert len(acked) > 10
        m.start()
        c = m.client()
        stored = {kv.key: kv.mod_revision for kv in c.get(b"w/", prefix=True).kvs}
        assert {k: stored.get(k) for k in acked} == acked
        c.close()
    finally:
        m.stop()


def test_second_member_on_a_data_dir_in_use_is_refused(tmp_path):
    """Two processes on one data dir would corrupt it: the second exits 1 at once with a message
    naming the lock (no traceback), and the first keeps serving."""
    import subprocess
    import sys

    from tests.server._util import free_port

    m = Member(tmp_path / "data").start()
    try:
        c = m.client()
        c.put(b"a", b"1")
        port, peer = free_port(), free_port()
        r = subprocess.run([sys.executable, "-m", "fastkv.cli", "serve", "--data-dir", m.data_dir,
                            "--listen-client-urls", f"http://127.0.0.1:{port}",
                            "--listen-peer-urls", f"http://127.0.0.1:{peer}"],
                           env=env_with_src(), capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r.stderr
        assert "is in use by another fastkv process" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert c.put(b"a", b"2").header.revision == 3
        assert c.get(b"a").kvs[0].value == b"2"
        c.close()
    finally:
        m.stop()


def test_corrupt_wal_refuses_to_start_and_says_where(tmp_path):
    """A flipped byte in the middle of the WAL is corruption, not a torn tail: the member refuses
    to start (exit 1, one line naming the file and offset) and leaves the file as it was."""
    import subprocess
    import sys

    from tests.server._util import free_port

    m = Member(tmp_path / "data").start()
    try:
        c = m.client()
        for i in range(200):
            c.put(b"k%d" % i, b"v" * 50)
        c.close()
        assert m.terminate()[0] == 0
    finally:
        m.stop()
    waldir = tmp_path / "data" / "member" / "wal"
    path = waldir / sorted(f for f in os.listdir(waldir) if f.endswith(".wal"))[0]
    with open(path, "r+b") as f:
        f.seek(5000)
        b = f.read(1)
        f.seek(5000)
        f.write(bytes([b[0] ^ 0xFF]))
    corrupted = path.read_bytes()
    r = subprocess.run([sys.executable, "-m", "fastkv.cli", "serve", "--data-dir", str(tmp_path / "data"),
                        "--listen-client-urls", f"http://127.0.0.1:{free_port()}",
                        "--listen-peer-urls", f"http://127.0.0.1:{free_port()}"],
                       env=env_with_src(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "WAL corrupt" in r.stderr and path.name in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert path.read_bytes() == corrupted
