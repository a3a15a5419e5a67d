"""The two-way boundary between the Ready loop and the network.

`Transporter` is what the server calls (like etcd's rafthttp.Transporter); `RaftSink` is the way
back into raft that the server hands the transport (like etcd's rafthttp.Raft). The transport never
touches raft state: it only calls the sink.

Threading contract: everything runs on the server's event loop. Sink methods are called from the
loop, must not block, and must not raise (an exception is logged and the connection that carried
the message is closed).
"""
from __future__ import annotations

from os import PathLike
from typing import BinaryIO, Callable, Protocol, Union

SnapshotSource = Union[str, PathLike, BinaryIO]


class RaftSink(Protocol):
    """What the transport calls back into. The server implements it over its RawNode."""

    def process(self, msg) -> None:
        """A raft message arrived from a peer (any type but MsgSnap): step it into raft."""

    def report_unreachable(self, member_id: int) -> None:
        """A message to `member_id` was dropped (queue full, connection lost or refused):
        raft should stop optimistic replication to it (RawNode.report_unreachable)."""

    def report_snapshot(self, member_id: int, failed: bool) -> None:
        """The snapshot sent to `member_id` finished: the follower verified and accepted the
        backend file (failed=False) or it did not arrive intact (failed=True)."""

    def is_id_removed(self, member_id: int) -> bool:
        """True when `member_id` was removed from the cluster; its connections are refused with
        REFUSE_REMOVED so the removed member learns it and stops."""

    def snapshot_received(self, msg, path: str) -> None:
        """A MsgSnap arrived with its backend file, written to `path` and verified (size and
        checksum, fsynced). The server owns the file from here: it installs it (replacing the
        backend and rebuilding index, lessor, alarms and members) and steps `msg` into raft. The
        transport does not call `process` for a MsgSnap."""


class Transporter(Protocol):
    def start(self, sink: "RaftSink | Callable") -> None:
        """Attach the raft side and begin dialing peers. A bare callable is taken as `process`
        (the older one-member wiring); the other sink methods then do nothing."""

    def send(self, messages: list) -> None:
        """Queue raft messages for their `to` members, after the caller persisted what they
        promise. Never blocks; a message that cannot be queued is dropped and its target reported
        unreachable. MsgSnap must go through `send_snapshot`."""

    def send_snapshot(self, msg, source: SnapshotSource, size: int | None = None):
        """Stream a MsgSnap with its backend file (a path, or a readable binary file object of
        `size` bytes) on a pipeline connection of its own; returns an asyncio.Task resolving to
        True when the follower verified it. The sink hears `report_snapshot` either way."""

    def add_peer(self, member_id: int, urls: list[str]) -> None: ...
    def update_peer(self, member_id: int, urls: list[str]) -> None: ...
    def remove_peer(self, member_id: int) -> None: ...
    def active_since(self, member_id: int) -> float | None: ...
    def stop(self) -> None: ...


class CallableSink:
    """Adapts a bare `deliver(msg)` callable to RaftSink (one-member wiring, tests)."""

    def __init__(self, deliver: Callable):
        self.process = deliver

    def report_unreachable(self, member_id: int) -> None:
        pass

    def report_snapshot(self, member_id: int, failed: bool) -> None:
        pass

    def is_id_removed(self, member_id: int) -> bool:
        return False

    def snapshot_received(self, msg, path: str) -> None:
        raise RuntimeError("this raft side cannot install snapshots")


def as_sink(sink) -> RaftSink:
    return CallableSink(sink) if callable(sink) and not hasattr(sink, "process") else sink


class LocalTransport:
    """The transport of a one-member cluster: there is no peer, so every message is addressed to
    a member that does not exist. Sending one is a bug in the caller, and we say so."""

    def start(self, deliver) -> None:
        self._sink = as_sink(deliver)

    def send(self, messages: list) -> None:
        for m in messages:
            raise RuntimeError(f"one-member cluster asked to send a raft message to member {m.to:x}")

    def send_snapshot(self, msg, source: SnapshotSource, size: int | None = None):
        raise RuntimeError(f"one-member cluster asked to send a snapshot to member {msg.to:x}")

    def add_peer(self, member_id: int, urls: list[str]) -> None:
        raise RuntimeError("adding peers needs the cluster transport")

    def update_peer(self, member_id: int, urls: list[str]) -> None:
        raise RuntimeError("updating peers needs the cluster transport")

    def remove_peer(self, member_id: int) -> None:
        pass

    def active_since(self, member_id: int) -> float | None:
        return None

    def stop(self) -> None:
        pass
