"""etcd's auth errors: exact texts and gRPC codes (etcd's rpctypes, as the v3 API maps auth's errors).

ErrPermissionDenied and ErrInvalidAuthToken live in fastkv.errors (other layers raise them too).
ErrNoPasswordUser has no entry in etcd's gRPC error map, so etcd sends it with code UNKNOWN and
auth's own text: kept that way because clients see exactly that.
"""
from __future__ import annotations

from fastkv.errors import EtcdError, ErrInvalidAuthToken, ErrPermissionDenied  # noqa: F401


def _kind(name: str, message: str, code: str) -> type[EtcdError]:
    return type(name, (EtcdError,), {"message": message, "code": code, "__doc__": message})


ErrRootUserNotExist = _kind("ErrRootUserNotExist", "etcdserver: root user does not exist", "FAILED_PRECONDITION")
ErrRootRoleNotExist = _kind("ErrRootRoleNotExist", "etcdserver: root user does not have root role",
                            "FAILED_PRECONDITION")
ErrUserAlreadyExist = _kind("ErrUserAlreadyExist", "etcdserver: user name already exists", "FAILED_PRECONDITION")
ErrUserEmpty = _kind("ErrUserEmpty", "etcdserver: user name is empty", "INVALID_ARGUMENT")
ErrUserNotFound = _kind("ErrUserNotFound", "etcdserver: user name not found", "FAILED_PRECONDITION")
ErrRoleAlreadyExist = _kind("ErrRoleAlreadyExist", "etcdserver: role name already exists", "FAILED_PRECONDITION")
ErrRoleNotFound = _kind("ErrRoleNotFound", "etcdserver: role name not found", "FAILED_PRECONDITION")
ErrRoleEmpty = _kind("ErrRoleEmpty", "etcdserver: role name is empty", "INVALID_ARGUMENT")
ErrAuthFailed = _kind("ErrAuthFailed", "etcdserver: authentication failed, invalid user ID or password",
                      "INVALID_ARGUMENT")
ErrNoPasswordUser = _kind("ErrNoPasswordUser",
                          "auth: authentication failed, password was given for no password user", "UNKNOWN")
ErrRoleNotGranted = _kind("ErrRoleNotGranted", "etcdserver: role is not granted to the user", "FAILED_PRECONDITION")
ErrPermissionNotGranted = _kind("ErrPermissionNotGranted", "etcdserver: permission is not granted to the role",
                                "FAILED_PRECONDITION")
ErrAuthNotEnabled = _kind("ErrAuthNotEnabled", "etcdserver: authentication is not enabled", "FAILED_PRECONDITION")
ErrInvalidAuthMgmt = _kind("ErrInvalidAuthMgmt", "etcdserver: invalid auth management", "INVALID_ARGUMENT")
ErrAuthOldRevision = _kind("ErrAuthOldRevision", "etcdserver: revision of auth store is old", "INVALID_ARGUMENT")


# auth's own texts for the errors a maintenance admin check can raise: etcd 3.4's maintenance
# service returns them without its gRPC error mapping, so clients see code UNKNOWN and these texts
_UNMAPPED_TEXT = {
    "etcdserver: permission denied": "auth: permission denied",
    "etcdserver: user name is empty": "auth: user name is empty",
    "etcdserver: user name not found": "auth: user not found",
    "etcdserver: invalid auth token": "auth: invalid auth token",
    "etcdserver: revision of auth store is old": "auth: revision in header is old",
}


def unmapped(exc: EtcdError) -> EtcdError:
    """The error as etcd's maintenance service sends it (auth's text, code UNKNOWN)."""
    text = _UNMAPPED_TEXT.get(exc.message)
    return EtcdError(text, "UNKNOWN") if text else exc
