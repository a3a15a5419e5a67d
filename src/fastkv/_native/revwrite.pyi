PUT_OVERHEAD: int

class RevisionWriter:
    index: object
    buffer: object
    bucket: int
    revision: int
    size_at_commit: int
    bytes_since_commit: int
    quota_bytes: int | None
    on_put: object
    def __init__(self, index: object, buffer: object, bucket: int, *, lock: object, tx: object, batch_limit: int | None,
                 batch_full: object,
                 empty_key_error: type[Exception], no_space_error: type[Exception],
                 quota_bytes: int | None = None) -> None: ...
    def set_index(self, index: object) -> None: ...
    def put(self, key: bytes, value: bytes, main: int, sub: int, lease: int) -> tuple[int, int]: ...
    def put_value(self, key: bytes, value: bytes, lease: int = 0) -> int: ...

class PutResult:
    revision: int
    prev_kv: object
    def __init__(self, revision: int, prev_kv: object = None) -> None: ...

class PutEntry:
    lean: bool
    def __init__(self, put_value: object, slow: object) -> None: ...
    def put(self, key: bytes, value: bytes, *, lease: int = 0, prev_kv: bool = False, ignore_value: bool = False,
            ignore_lease: bool = False) -> PutResult: ...
