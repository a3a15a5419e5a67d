"""Public API of the compiled raft data model (same as raftpb_py)."""
ENTRY_NORMAL: int
ENTRY_CONF_CHANGE: int
ENTRY_HEADER_SIZE: int
MSG_HUP: int
MSG_BEAT: int
MSG_PROP: int
MSG_APP: int
MSG_APP_RESP: int
MSG_VOTE: int
MSG_VOTE_RESP: int
MSG_SNAP: int
MSG_HEARTBEAT: int
MSG_HEARTBEAT_RESP: int
MSG_UNREACHABLE: int
MSG_SNAP_STATUS: int
MSG_CHECK_QUORUM: int
MSG_TRANSFER_LEADER: int
MSG_TIMEOUT_NOW: int
MSG_READ_INDEX: int
MSG_READ_INDEX_RESP: int
MSG_PRE_VOTE: int
MSG_PRE_VOTE_RESP: int
MESSAGE_TYPE_NAMES: tuple[str, ...]
CONF_CHANGE_ADD_NODE: int
CONF_CHANGE_REMOVE_NODE: int
CONF_CHANGE_UPDATE_NODE: int
CONF_CHANGE_ADD_LEARNER_NODE: int

class CodecError(ValueError): ...

class Entry:
    term: int
    index: int
    type: int
    data: bytes
    def __init__(self, term: int = 0, index: int = 0, type: int = 0, data: bytes = b"") -> None: ...
    def size(self) -> int: ...

class HardState:
    term: int
    vote: int
    commit: int
    def __init__(self, term: int = 0, vote: int = 0, commit: int = 0) -> None: ...
    def is_empty(self) -> bool: ...

class ConfState:
    voters: tuple[int, ...]
    learners: tuple[int, ...]
    def __init__(self, voters=(), learners=()) -> None: ...

class SnapshotMetadata:
    index: int
    term: int
    conf_state: ConfState
    def __init__(self, index: int = 0, term: int = 0, conf_state: ConfState | None = None) -> None: ...

class Snapshot:
    metadata: SnapshotMetadata
    data: bytes
    def __init__(self, metadata: SnapshotMetadata | None = None, data: bytes = b"") -> None: ...
    def is_empty(self) -> bool: ...

class ConfChange:
    type: int
    node_id: int
    context: bytes
    def __init__(self, type: int = 0, node_id: int = 0, context: bytes = b"") -> None: ...

class Message:
    type: int
    to: int
    frm: int
    term: int
    log_term: int
    index: int
    entries: list[Entry]
    commit: int
    reject: bool
    reject_hint: int
    snapshot: Snapshot | None
    context: bytes
    def __init__(self, type: int = 0, to: int = 0, frm: int = 0, term: int = 0, log_term: int = 0,
                 index: int = 0, entries: list[Entry] | None = None, commit: int = 0,
                 reject: bool = False, reject_hint: int = 0, snapshot: Snapshot | None = None,
                 context: bytes = b"") -> None: ...

def encode_entry(e: Entry) -> bytes: ...
def decode_entry(buf: bytes) -> Entry: ...
def encode_hard_state(hs: HardState) -> bytes: ...
def decode_hard_state(buf: bytes) -> HardState: ...
def encode_conf_state(cs: ConfState) -> bytes: ...
def decode_conf_state(buf: bytes) -> ConfState: ...
def encode_snapshot_metadata(m: SnapshotMetadata) -> bytes: ...
def decode_snapshot_metadata(buf: bytes) -> SnapshotMetadata: ...
def encode_snapshot(s: Snapshot) -> bytes: ...
def decode_snapshot(buf: bytes) -> Snapshot: ...
def encode_conf_change(cc: ConfChange) -> bytes: ...
def decode_conf_change(buf: bytes) -> ConfChange: ...
def encode_message(m: Message) -> bytes: ...
def decode_message(buf: bytes) -> Message: ...
