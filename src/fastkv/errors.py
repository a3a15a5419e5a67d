"""etcd's client-visible errors: exact message texts and the gRPC status code each maps to.

Every layer raises these (they carry no gRPC dependency: `code` is the grpc.StatusCode *name*), so
the embedded API and the gRPC server report the same thing for the same bad input. The texts are
etcd's own (rpctypes); clients match on them, so never reword them.
"""
from __future__ import annotations


class EtcdError(Exception):
    """An error a client can see. `code` is a grpc.StatusCode name, e.g. "OUT_OF_RANGE"."""

    message: str = ""
    code: str = "UNKNOWN"

    def __init__(self, message: str | None = None, code: str | None = None):
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        super().__init__(self.message)


def _kind(name: str, message: str, code: str) -> type[EtcdError]:
    return type(name, (EtcdError,), {"message": message, "code": code, "__doc__": message})


ErrCompacted = _kind("ErrCompacted", "etcdserver: mvcc: required revision has been compacted", "OUT_OF_RANGE")
ErrFutureRev = _kind("ErrFutureRev", "etcdserver: mvcc: required revision is a future revision", "OUT_OF_RANGE")
ErrNoSpace = _kind("ErrNoSpace", "etcdserver: mvcc: database space exceeded", "RESOURCE_EXHAUSTED")
ErrCorrupt = _kind("ErrCorrupt", "etcdserver: corrupt cluster", "DATA_LOSS")
ErrEmptyKey = _kind("ErrEmptyKey", "etcdserver: key is not provided", "INVALID_ARGUMENT")
ErrKeyNotFound = _kind("ErrKeyNotFound", "etcdserver: key not found", "INVALID_ARGUMENT")
ErrValueProvided = _kind("ErrValueProvided", "etcdserver: value is provided", "INVALID_ARGUMENT")
ErrLeaseProvided = _kind("ErrLeaseProvided", "etcdserver: lease is provided", "INVALID_ARGUMENT")
ErrTooManyOps = _kind("ErrTooManyOps", "etcdserver: too many operations in txn request", "INVALID_ARGUMENT")
ErrDuplicateKey = _kind("ErrDuplicateKey", "etcdserver: duplicate key given in txn request", "INVALID_ARGUMENT")
ErrRequestTooLarge = _kind("ErrRequestTooLarge", "etcdserver: request is too large", "INVALID_ARGUMENT")
ErrLeaseNotFound = _kind("ErrLeaseNotFound", "etcdserver: requested lease not found", "NOT_FOUND")
ErrLeaseExist = _kind("ErrLeaseExist", "etcdserver: lease already exists", "FAILED_PRECONDITION")
ErrLeaseTTLTooLarge = _kind("ErrLeaseTTLTooLarge", "etcdserver: too large lease TTL", "OUT_OF_RANGE")
ErrTooManyRequests = _kind("ErrTooManyRequests", "etcdserver: too many requests", "RESOURCE_EXHAUSTED")
ErrNoLeader = _kind("ErrNoLeader", "etcdserver: no leader", "UNAVAILABLE")
ErrTimeout = _kind("ErrTimeout", "etcdserver: request timed out", "UNAVAILABLE")
ErrLeaderChanged = _kind("ErrLeaderChanged", "etcdserver: leader changed", "UNAVAILABLE")
ErrPermissionDenied = _kind("ErrPermissionDenied", "etcdserver: permission denied", "PERMISSION_DENIED")
ErrInvalidAuthToken = _kind("ErrInvalidAuthToken", "etcdserver: invalid auth token", "UNAUTHENTICATED")
