"""SIGKILL during appends, repeated: every batch whose save() returned is recovered, and nothing
that was never written (or was torn) appears as data.

A child process appends batches of deterministic entries (tests/wal/helpers.py) to a WAL with small
segments (so kills also land inside segment cuts), printing each batch's last index after save()
returns. The parent kills it at a random moment, reopens the WAL and checks the recovered log is
exactly entries 1..n with n >= the last printed index. The next child continues from n + 1 on the
same directory, so later rounds also exercise recovery of logs that were repaired before.
"""
import os
import random
import signal
import subprocess
import sys
import time

from fastkv.wal import WAL
from fastkv.wal.segment import list_segments
from .helpers import entries

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEG = 256 * 1024
ROUNDS = 12

CHILD = r"""
import os, random, sys
from fastkv.wal import WAL
from tests.wal.helpers import entries, pb

d, seed, seg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
max_batches = int(sys.argv[4]) if len(sys.argv) > 4 else -1
if WAL.exists(d):
    w = WAL.open(d, segment_size=seg)
    _, hs, ents = w.read_all()
    nxt = ents[-1].index + 1 if ents else 1
else:
    w = WAL.create(d, b"meta", segment_size=seg)
    nxt = 1
nxt_first = nxt
os.write(1, b"ready\n")
rng = random.Random(seed)
while max_batches != 0:
    max_batches -= 1
    # mostly small batches; the first and now and then another is large (~0.2-0.4 MB) so kills
    # can land inside write() and every child crosses segment cuts
    big = max_batches < 0 and nxt_first == nxt
    k = rng.randint(1500, 4000) if big or rng.random() < 0.05 else rng.randint(1, 20)
    w.save(pb.HardState(1, 1, nxt + k - 1), entries(nxt, nxt + k - 1))
    os.write(1, b"%d\n" % (nxt + k - 1))
    nxt += k
"""


def _run_and_kill(d, seed, rng):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), ROOT]))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, d, str(seed), str(SEG)],
        stdout=subprocess.PIPE, cwd=ROOT, env=env,
    )
    first = proc.stdout.readline()
    assert first == b"ready\n", first
    time.sleep(rng.uniform(0.01, 0.35))
    os.kill(proc.pid, signal.SIGKILL)
    out = proc.stdout.read()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    lines = out.split(b"\n")[:-1]  # a line without its newline was not fully reported
    return [int(x) for x in lines]


def test_sigkill_during_appends_loses_no_acknowledged_batch(tmp_path):
    d = str(tmp_path / "wal")
    rng = random.Random(20261125)
    acked = 0
    total_batches = 0
    expected: list = []  # entries 1..len(expected), generated once
    for round_no in range(ROUNDS):
        reported = _run_and_kill(d, rng.randrange(2**32), rng)
        assert reported == sorted(reported)
        total_batches += len(reported)
        if reported:
            acked = reported[-1]
        with WAL.open(d, segment_size=SEG) as w:
            meta, hs, ents = w.read_all()
        n = len(ents)
        assert meta == b"meta"
        assert n >= acked, f"round {round_no}: batch ending at {acked} was acknowledged, only {n} recovered"
        if n > len(expected):
            expected += entries(len(expected) + 1, n)
        assert ents == expected[:n], f"round {round_no}: recovered log is not exactly entries 1..{n}"
        assert hs.commit >= acked
        assert not [f for f in os.listdir(d) if f.endswith(".tmp")]
        acked = n  # the next child continues after what survived
    assert total_batches >= ROUNDS // 2  # the kills did land after real work
    assert len(list_segments(d)) >= 2  # and across segment cuts


def _run_until_failpoint(d, seed, spec, seg):
    """Run the appending child with a failpoint that SIGKILLs it; return the acknowledged indexes."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), ROOT]),
               FASTKV_WAL_FAILPOINTS=spec)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, d, str(seed), str(seg), "3000"],
        stdout=subprocess.PIPE, cwd=ROOT, env=env, timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, f"failpoint {spec} did not fire"
    lines = proc.stdout.split(b"\n")[:-1]
    return [int(x) for x in lines if x != b"ready"]


def test_crash_at_every_durability_failpoint(tmp_path):
    """The WAL's own write path is killed at each named failpoint -- including a torn batch (half
    of it written) and the middle of a segment cut, and a crash in the middle of repairing that
    torn batch: recovery always returns exactly entries 1..n with every acknowledged batch."""
    seg = 32 * 1024  # cuts every few batches
    d = str(tmp_path / "wal")
    rng = random.Random(7)
    scenario = [  # (failpoint, verify by reopening afterwards)
        ("wal.save.torn_write=kill@{n}", False),
        ("wal.repair.before_truncate=kill", True),  # the next open dies while repairing that tail
        ("wal.save.before_fsync=kill@{n}", True),
        ("wal.cut.before_rename=kill@{c}", True),
        ("wal.save.after_fsync=kill@{n}", True),
        ("wal.cut.after_rename=kill@{c}", True),
        ("wal.save.torn_write=kill@{n}", True),
        ("wal.save.before_write=kill@{n}", True),
        ("wal.save.torn_write=kill@1", True),
    ]
    acked = 0
    expected: list = []
    repaired = False
    for spec, verify in scenario:
        spec = spec.format(n=rng.randint(1, 60), c=rng.randint(1, 4))
        reported = _run_until_failpoint(d, rng.randrange(2**32), spec, seg)
        if reported:
            acked = reported[-1]
        if spec.startswith("wal.repair"):
            assert reported == [] and any(f.endswith(".broken") for f in os.listdir(d))
            repaired = True
        if not verify:
            continue
        with WAL.open(d, segment_size=seg) as w:
            _, hs, ents = w.read_all()
        n = len(ents)
        assert n >= acked, f"{spec}: batch ending at {acked} was acknowledged, only {n} recovered"
        if n > len(expected):
            expected += entries(len(expected) + 1, n)
        assert ents == expected[:n], f"{spec}: recovered log is not exactly entries 1..{n}"
        assert not [f for f in os.listdir(d) if f.endswith(".tmp")]
        acked = n
    assert repaired and len(list_segments(d)) > 2
