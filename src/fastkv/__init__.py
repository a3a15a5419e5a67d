"""fastkv: an etcd-compatible, Raft-replicated, multi-version key-value store.

Embedded use: `db = fastkv.open(path)` (see fastkv.embedded for the durability contract).
"""
__version__ = "0.1.0"


def open(path, **options):  # noqa: A001 - mirrors builtins.open / lmdb.open naming on purpose
    """Open (or create) an embedded fastkv store at `path`. See fastkv.embedded.DB."""
    from fastkv.embedded import DB

    return DB(path, **options)
