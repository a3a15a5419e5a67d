from collections.abc import Buffer, Callable
from typing import Any

METADATA_TYPE: int
ENTRY_TYPE: int
STATE_TYPE: int
CRC_TYPE: int
SNAPSHOT_TYPE: int
RECORD_HEADER_SIZE: int
ENTRY_HEADER_SIZE: int

class RecordError(ValueError):
    kind: str
    offset: int
    detail: str
    def __init__(self, kind: str, offset: int, detail: str) -> None: ...

def encode_record(rtype: int, data: Buffer, crc: int) -> tuple[bytes, int]: ...
def encode_batch(hard_state: Any | None, entries: list, crc: int) -> tuple[bytes, int]: ...
def decode_records(
    buf: Buffer, offset: int = 0, crc: int = 0, entry_factory: Callable[[int, int, int, bytes], Any] | None = None
) -> tuple[list[tuple[int, Any]], int, int, RecordError | None]: ...
def collect_entries(records: list, entries: list, first_index: int) -> tuple[list[tuple[int, Any]], int | None]: ...
