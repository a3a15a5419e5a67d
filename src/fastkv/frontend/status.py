"""gRPC status codes by name (the numbers on the wire), without importing grpc.

EtcdError.code is a status *name* (fastkv/errors.py); front ends turn it into a number here.
"""
from __future__ import annotations

from fastkv.errors import EtcdError

CODES = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
    "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
    "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}
NAMES = {v: k for k, v in CODES.items()}

OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14


def of_error(exc: EtcdError) -> int:
    """The status number of an EtcdError (UNKNOWN for a name gRPC does not have)."""
    return CODES.get(exc.code, UNKNOWN)
