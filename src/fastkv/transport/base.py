"""The Transporter boundary between the Ready loop and the network.

A cluster transport (long-lived streams for appends and heartbeats, a pipeline for snapshots) plugs
in here; the Ready loop only ever calls `send` after persisting, and feeds what arrives into
`RawNode.step` through the `deliver` callable it registers.
"""
from __future__ import annotations

from typing import Callable, Protocol


class Transporter(Protocol):
    def start(self, deliver: Callable) -> None: ...
    def send(self, messages: list) -> None: ...
    def add_peer(self, member_id: int, urls: list[str]) -> None: ...
    def remove_peer(self, member_id: int) -> None: ...
    def stop(self) -> None: ...


class LocalTransport:
    """The transport of a one-member cluster: there is no peer, so every message is addressed to
    a member that does not exist. Sending one is a bug in the caller, and we say so."""

    def start(self, deliver: Callable) -> None:
        self._deliver = deliver

    def send(self, messages: list) -> None:
        for m in messages:
            raise RuntimeError(f"one-member cluster asked to send a raft message to member {m.to:x}")

    def add_peer(self, member_id: int, urls: list[str]) -> None:
        raise RuntimeError("adding peers needs the cluster transport")

    def remove_peer(self, member_id: int) -> None:
        pass

    def stop(self) -> None:
        pass
