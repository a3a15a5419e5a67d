"""`fastkv bench snapshot` through the real CLI: the output contract, a checked etcd-format file, and
both timings taken in the same run (only their presence and sanity are asserted, never speed)."""


def test_snapshot_bench_reports_both_kinds_and_checks_the_file(bench):
    r = bench.json("snapshot", "--keys", "3000", "--val-size", "64", "--repeat", "1")
    assert r["checked"] is True
    assert r["revisions"] == 3000 + 750  # every 4th key written twice
    assert r["bbolt_s"] > 0 and r["lmdb_s"] > 0
    assert r["ratio_bbolt_to_lmdb"] == r["bbolt_s"] / r["lmdb_s"]
    assert r["bbolt_bytes"] % 4096 == 0 and r["bbolt_bytes"] > 3750 * 64


def test_snapshot_bench_help_explains_itself(bench):
    out = bench("snapshot", "--help").stdout
    assert "bbolt" in out and "reference" in out.lower()
