import pytest

from fastkv.backend import open_backend
from fastkv.mvcc import KVStore


@pytest.fixture(params=["lmdb", "memory"])
def backend_kind(request):
    return request.param


@pytest.fixture
def open_store(tmp_path, backend_kind):
    """open_store(**kv_options) -> KVStore on a fresh backend; reopen with the same path for lmdb."""
    opened = []

    def make(reuse=None, **opts):
        be = reuse or open_backend(backend_kind, str(tmp_path / "db") if backend_kind == "lmdb" else None,
                                   batch_interval=0)
        opened.append(be)
        return KVStore(be, **opts)

    yield make
    for be in opened:
        try:
            be.close()
        except Exception:
            pass


@pytest.fixture
def store(open_store):
    return open_store()
