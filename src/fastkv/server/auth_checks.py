"""Where auth meets the request path: permission checks on every request that touches keys, and
the applier's side of the auth proposals (etcd's authApplierV3).

Writes are checked when they are *applied*, against the username and auth revision carried in
the proposal: every member decides the same, and a proposal whose credentials were checked at an
older auth revision than the store's is refused ("revision of auth store is old"), so a permission
revoked while the write was in flight is honoured. Reads (Range, read-only Txn, Watch create) are
checked on the member that serves them, then the auth revision is compared again after the read,
as etcd does. With auth disabled every check returns at once.
"""
from __future__ import annotations

from fastkv.api.etcdpb import rpc_pb2
from fastkv.auth.errors import ErrAuthFailed, ErrAuthNotEnabled, ErrAuthOldRevision
from fastkv.errors import EtcdError
from fastkv.auth.store import AuthInfo
from fastkv.server import request as rq

# proposals only root may make (once auth is enabled)
ADMIN_KINDS = frozenset({
    rq.AUTH_ENABLE, rq.AUTH_DISABLE, rq.USER_ADD, rq.USER_DELETE, rq.USER_CHANGE_PASSWORD, rq.USER_GRANT_ROLE,
    rq.USER_REVOKE_ROLE, rq.ROLE_ADD, rq.ROLE_GRANT_PERMISSION, rq.ROLE_REVOKE_PERMISSION, rq.ROLE_DELETE,
    rq.USER_LIST, rq.ROLE_LIST,
})
AUTH_KINDS = ADMIN_KINDS | {rq.AUTHENTICATE, rq.USER_GET, rq.ROLE_GET}


def check_txn(store, ai, req) -> None:
    """Every compare needs read permission; every op its own (nested txns are not in etcd 3.4's
    TxnRequest, so there is nothing deeper to walk)."""
    for c in req.compare:
        store.check_range(ai, c.key, c.range_end)
    _check_ops(store, ai, req.success)
    _check_ops(store, ai, req.failure)


def _check_ops(store, ai, ops) -> None:
    for op in ops:
        which = op.WhichOneof("request")
        if which == "request_range":
            store.check_range(ai, op.request_range.key, op.request_range.range_end)
        elif which == "request_put":
            store.check_put(ai, op.request_put.key)
        elif which == "request_delete_range":
            d = op.request_delete_range
            if d.prev_kv:
                store.check_range(ai, d.key, d.range_end)
            store.check_delete_range(ai, d.key, d.range_end)
        elif which == "request_txn":  # 3.5's nested txn, should a client send one
            check_txn(store, ai, op.request_txn)


def check_serialized_read(store, ai, check, read):
    """etcd's doSerialize: check, read, and refuse the result if the auth store changed meanwhile."""
    if not store.enabled:
        return read()
    check(ai)
    result = read()
    if ai is not None and ai.revision != 0 and ai.revision != store.revision:
        raise ErrAuthOldRevision()
    return result


class AuthApplier:
    """The applier's auth layer: admin checks, auth proposals, permission checks on writes."""

    def __init__(self, store, lessor):
        self.store = store
        self.lessor = lessor
        s = store
        self._handlers = {
            rq.AUTH_ENABLE: lambda m, ai, i: (s.auth_enable(), rpc_pb2.AuthEnableResponse())[1],
            rq.AUTH_DISABLE: lambda m, ai, i: (s.auth_disable(), rpc_pb2.AuthDisableResponse())[1],
            rq.AUTHENTICATE: self._authenticate,
            rq.USER_ADD: lambda m, ai, i: (s.user_add(m), rpc_pb2.AuthUserAddResponse())[1],
            rq.USER_DELETE: lambda m, ai, i: (s.user_delete(m), rpc_pb2.AuthUserDeleteResponse())[1],
            rq.USER_CHANGE_PASSWORD: lambda m, ai, i: (s.user_change_password(m),
                                                       rpc_pb2.AuthUserChangePasswordResponse())[1],
            rq.USER_GRANT_ROLE: lambda m, ai, i: (s.user_grant_role(m), rpc_pb2.AuthUserGrantRoleResponse())[1],
            rq.USER_REVOKE_ROLE: lambda m, ai, i: (s.user_revoke_role(m), rpc_pb2.AuthUserRevokeRoleResponse())[1],
            rq.USER_GET: self._user_get,
            rq.USER_LIST: lambda m, ai, i: s.user_list(),
            rq.ROLE_ADD: lambda m, ai, i: (s.role_add(m), rpc_pb2.AuthRoleAddResponse())[1],
            rq.ROLE_DELETE: lambda m, ai, i: (s.role_delete(m), rpc_pb2.AuthRoleDeleteResponse())[1],
            rq.ROLE_GRANT_PERMISSION: lambda m, ai, i: (s.role_grant_permission(m),
                                                        rpc_pb2.AuthRoleGrantPermissionResponse())[1],
            rq.ROLE_REVOKE_PERMISSION: lambda m, ai, i: (s.role_revoke_permission(m),
                                                         rpc_pb2.AuthRoleRevokePermissionResponse())[1],
            rq.ROLE_GET: self._role_get,
            rq.ROLE_LIST: lambda m, ai, i: s.role_list(),
        }

    def apply(self, index: int, kind: int, msg, username: str, auth_revision: int, dispatch):
        store = self.store
        ai = AuthInfo(username, auth_revision) if (username or auth_revision) else None
        if kind in AUTH_KINDS:
            if kind in ADMIN_KINDS:
                store.check_admin(ai)
            return self._handlers[kind](msg, ai, index)
        if store.enabled:
            if kind == rq.PUT:
                store.check_put(ai, msg.key)
                self._check_lease_keys(ai, msg.lease)
                if msg.prev_kv:
                    store.check_range(ai, msg.key)
            elif kind == rq.DELETE_RANGE:
                store.check_delete_range(ai, msg.key, msg.range_end)
                if msg.prev_kv:
                    store.check_range(ai, msg.key, msg.range_end)
            elif kind == rq.TXN:
                check_txn(store, ai, msg)
            elif kind == rq.LEASE_REVOKE:
                self._check_lease_keys(ai, msg.ID)
        return dispatch(kind, msg)

    def _check_lease_keys(self, ai, lease_id: int) -> None:
        """Writing under (or revoking) a lease needs write permission on every key attached to it."""
        if not lease_id or self.lessor is None:
            return
        lease = self.lessor.lookup(lease_id)
        if lease is None:
            return
        for key in _lease_keys(lease):
            self.store.check_put(ai, key)

    def _authenticate(self, msg, ai, index):
        store = self.store
        if not store.enabled:
            raise ErrAuthNotEnabled()
        user = store.users.get(msg.name)
        if user is None or user.options.no_password:
            raise ErrAuthFailed()
        token = store.tokens.assign(msg.name, store.revision, prefix=msg.password, index=index)
        return rpc_pb2.AuthenticateResponse(token=token)

    def _user_get(self, msg, ai, index):
        try:
            self.store.check_admin(ai)
        except EtcdError:
            if ai is None or msg.name != ai.username:  # anyone may read their own user
                raise
        return self.store.user_get(msg.name)

    def _role_get(self, msg, ai, index):
        try:
            self.store.check_admin(ai)
        except EtcdError:
            if ai is None or not self.store.has_role(ai.username, msg.role):  # and roles they hold
                raise
        return self.store.role_get(msg.role)


def _lease_keys(lease):
    keys = getattr(lease, "keys", None)
    if callable(keys):
        keys = keys()
    return list(keys or ())
