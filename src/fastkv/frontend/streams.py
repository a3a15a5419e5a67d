"""Streaming calls (Watch, LeaseKeepAlive, Snapshot) on the native front end."""
from __future__ import annotations

STREAM_METHODS: list = []
run_stream = None
