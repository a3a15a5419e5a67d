"""The auth store: users, roles and the auth flag/revision, persisted in the backend's auth buckets.

Buckets and encodings are etcd's own, so an exported etcd snapshot carries them unchanged:
    auth       "authEnabled" -> b"\\x01" | b"\\x00";  "authRevision" -> u64 big-endian
    authUsers  user name -> authpb.User (password: the bcrypt hash; roles kept sorted)
    authRoles  role name -> authpb.Role (permissions kept sorted by key)

Mutations are called by the applier inside its batch tx (every member applies the same entries, so
every member's store is the same); each one that changes something adds 1 to the auth revision,
as etcd's does (enabling auth does not, disabling does). Password hashing happens *before* the
proposal (bcrypt is slow and salted: hashing at apply time would block the apply loop and give
each member a different hash); the proposal carries the hash, never the password.

The in-memory view (users, roles, each user's merged permissions) is rebuilt from the backend on
start and after every change. Permission checks read only that view.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from fastkv.api.etcdpb.authpb import auth_pb2
from fastkv.api.etcdpb.etcdserverpb import rpc_pb2
from fastkv.auth import errors as E
from fastkv.auth.perms import UnifiedPermissions
from fastkv.backend import AUTH, AUTH_ROLES, AUTH_USERS

ROOT_USER = "root"
ROOT_ROLE = "root"
ENABLED_KEY = b"authEnabled"
REVISION_KEY = b"authRevision"
_U64 = struct.Struct(">Q")
BCRYPT_MIN_COST, BCRYPT_MAX_COST, BCRYPT_DEFAULT_COST = 4, 31, 10


class AuthInfo(NamedTuple):
    """Who makes a request, and the auth revision its credentials were checked at."""
    username: str
    revision: int


class AuthStore:
    def __init__(self, backend, tokens, bcrypt_cost: int = BCRYPT_DEFAULT_COST):
        if not BCRYPT_MIN_COST <= bcrypt_cost <= BCRYPT_MAX_COST:
            bcrypt_cost = BCRYPT_DEFAULT_COST  # as etcd: an out-of-range cost falls back to the default
        self.bcrypt_cost = bcrypt_cost
        self.backend = backend
        self.tokens = tokens
        self._tx = backend.batch_tx()
        self.enabled = False
        self.revision = 0
        self.users: dict[str, auth_pb2.User] = {}
        self.roles: dict[str, auth_pb2.Role] = {}
        self._perms: dict[str, UnifiedPermissions] = {}
        self.recover()
        if self.revision == 0:  # a fresh store starts at auth revision 1, as etcd's does
            with self._tx:
                self._commit_revision()

    # --- loading ------------------------------------------------------------------------------
    def recover(self) -> None:
        """(Re)build the in-memory view from the backend (at start, after a backend swap)."""
        with self._tx as tx:
            flag = tx.unsafe_get(AUTH, ENABLED_KEY)
            rev = tx.unsafe_get(AUTH, REVISION_KEY)
            users = tx.unsafe_range(AUTH_USERS, b"", b"")
            roles = tx.unsafe_range(AUTH_ROLES, b"", b"")
        self.revision = _U64.unpack(bytes(rev))[0] if rev is not None and len(rev) == 8 else 0
        self.users = {}
        for _k, v in users:
            u = auth_pb2.User()
            u.ParseFromString(bytes(v))
            self.users[u.name.decode("utf-8", "surrogateescape")] = u
        self.roles = {}
        for _k, v in roles:
            r = auth_pb2.Role()
            r.ParseFromString(bytes(v))
            self.roles[r.name.decode("utf-8", "surrogateescape")] = r
        self._refresh_perms()
        enabled = flag is not None and bytes(flag) == b"\x01"
        if enabled != self.enabled:
            self.enabled = enabled
            (self.tokens.enable if enabled else self.tokens.disable)()

    def _refresh_perms(self) -> None:
        perms = {}
        for name, user in self.users.items():
            merged = []
            for role_name in user.roles:
                role = self.roles.get(role_name)
                if role is not None:
                    merged.extend(role.keyPermission)
            perms[name] = UnifiedPermissions(merged)
        self._perms = perms

    # --- persistence helpers (caller holds the batch tx) ----------------------------------------
    def _commit_revision(self) -> None:
        self.revision += 1
        self._tx.unsafe_put(AUTH, REVISION_KEY, _U64.pack(self.revision))

    def _put_user(self, user: auth_pb2.User) -> None:
        self._tx.unsafe_put(AUTH_USERS, bytes(user.name), user.SerializeToString())
        self.users[user.name.decode("utf-8", "surrogateescape")] = user

    def _put_role(self, role: auth_pb2.Role) -> None:
        self._tx.unsafe_put(AUTH_ROLES, bytes(role.name), role.SerializeToString())
        self.roles[role.name.decode("utf-8", "surrogateescape")] = role

    def _changed(self) -> None:
        self._commit_revision()
        self._refresh_perms()

    # --- mutations (applied from the raft log, inside the applier's batch tx) -------------------
    def auth_enable(self) -> None:
        if self.enabled:
            return
        user = self.users.get(ROOT_USER)
        if user is None:
            raise E.ErrRootUserNotExist()
        if ROOT_ROLE not in user.roles:
            raise E.ErrRootRoleNotExist()
        with self._tx:
            self._tx.unsafe_put(AUTH, ENABLED_KEY, b"\x01")
        self.enabled = True
        self.tokens.enable()
        self._refresh_perms()

    def auth_disable(self) -> None:
        if not self.enabled:
            return
        with self._tx:
            self._tx.unsafe_put(AUTH, ENABLED_KEY, b"\x00")
            self._commit_revision()
        self.enabled = False
        self.tokens.disable()

    def user_add(self, r) -> None:
        """r: AuthUserAddRequest whose hashedPassword holds the bcrypt hash (empty if no_password)."""
        if not r.name:
            raise E.ErrUserEmpty()
        if r.name in self.users:
            raise E.ErrUserAlreadyExist()
        user = auth_pb2.User(name=r.name.encode(), options=auth_pb2.UserAddOptions(
            no_password=r.options.no_password))
        if not r.options.no_password:
            user.password = r.hashedPassword.encode()
        with self._tx:
            self._put_user(user)
            self._changed()

    def user_delete(self, r) -> None:
        if self.enabled and r.name == ROOT_USER:
            raise E.ErrInvalidAuthMgmt()
        if r.name not in self.users:
            raise E.ErrUserNotFound()
        with self._tx:
            self._tx.unsafe_delete(AUTH_USERS, r.name.encode())
            del self.users[r.name]
            self._changed()
        self.tokens.invalidate_user(r.name)

    def user_change_password(self, r) -> None:
        """r: AuthUserChangePasswordRequest whose hashedPassword holds the new bcrypt hash."""
        old = self.users.get(r.name)
        if old is None:
            raise E.ErrUserNotFound()
        user = auth_pb2.User()
        user.CopyFrom(old)
        user.password = r.hashedPassword.encode()
        with self._tx:
            self._put_user(user)
            self._changed()
        self.tokens.invalidate_user(r.name)

    def user_grant_role(self, r) -> None:
        old = self.users.get(r.user)
        if old is None:
            raise E.ErrUserNotFound()
        if r.role != ROOT_ROLE and r.role not in self.roles:
            raise E.ErrRoleNotFound()
        if r.role in old.roles:
            return  # already granted: nothing changes, the revision stays
        user = auth_pb2.User()
        user.CopyFrom(old)
        roles = sorted([*old.roles, r.role])
        del user.roles[:]
        user.roles.extend(roles)
        with self._tx:
            self._put_user(user)
            self._changed()

    def user_revoke_role(self, r) -> None:
        if self.enabled and r.name == ROOT_USER and r.role == ROOT_ROLE:
            raise E.ErrInvalidAuthMgmt()
        old = self.users.get(r.name)
        if old is None:
            raise E.ErrUserNotFound()
        if r.role not in old.roles:
            raise E.ErrRoleNotGranted()
        user = auth_pb2.User()
        user.CopyFrom(old)
        del user.roles[:]
        user.roles.extend(x for x in old.roles if x != r.role)
        with self._tx:
            self._put_user(user)
            self._changed()

    def role_add(self, r) -> None:
        if not r.name:
            raise E.ErrRoleEmpty()
        if r.name in self.roles:
            raise E.ErrRoleAlreadyExist()
        with self._tx:
            self._put_role(auth_pb2.Role(name=r.name.encode()))
            self._changed()

    def role_delete(self, r) -> None:
        if self.enabled and r.role == ROOT_ROLE:
            raise E.ErrInvalidAuthMgmt()
        if r.role not in self.roles:
            raise E.ErrRoleNotFound()
        with self._tx:
            self._tx.unsafe_delete(AUTH_ROLES, r.role.encode())
            del self.roles[r.role]
            for old in list(self.users.values()):  # the role disappears from every user holding it
                if r.role in old.roles:
                    user = auth_pb2.User()
                    user.CopyFrom(old)
                    del user.roles[:]
                    user.roles.extend(x for x in old.roles if x != r.role)
                    self._put_user(user)
            self._changed()

    def role_grant_permission(self, r) -> None:
        old = self.roles.get(r.name)
        if old is None:
            raise E.ErrRoleNotFound()
        role = auth_pb2.Role()
        role.CopyFrom(old)
        for p in role.keyPermission:  # the same key and range: only the type changes
            if p.key == r.perm.key and p.range_end == r.perm.range_end:
                p.permType = r.perm.permType
                break
        else:
            perms = [*role.keyPermission, auth_pb2.Permission(key=r.perm.key, range_end=r.perm.range_end,
                                                              permType=r.perm.permType)]
            perms.sort(key=lambda p: bytes(p.key))
            del role.keyPermission[:]
            role.keyPermission.extend(perms)
        with self._tx:
            self._put_role(role)
            self._changed()

    def role_revoke_permission(self, r) -> None:
        old = self.roles.get(r.role)
        if old is None:
            raise E.ErrRoleNotFound()
        keep = [p for p in old.keyPermission if p.key != r.key or p.range_end != r.range_end]
        if len(keep) == len(old.keyPermission):
            raise E.ErrPermissionNotGranted()
        role = auth_pb2.Role(name=old.name)
        role.keyPermission.extend(keep)
        with self._tx:
            self._put_role(role)
            self._changed()

    # --- reads ----------------------------------------------------------------------------------
    def user_get(self, name: str) -> rpc_pb2.AuthUserGetResponse:
        user = self.users.get(name)
        if user is None:
            raise E.ErrUserNotFound()
        return rpc_pb2.AuthUserGetResponse(roles=list(user.roles))

    def user_list(self) -> rpc_pb2.AuthUserListResponse:
        return rpc_pb2.AuthUserListResponse(users=sorted(self.users, key=str.encode))

    def role_get(self, name: str) -> rpc_pb2.AuthRoleGetResponse:
        role = self.roles.get(name)
        if role is None:
            raise E.ErrRoleNotFound()
        return rpc_pb2.AuthRoleGetResponse(perm=list(role.keyPermission))

    def role_list(self) -> rpc_pb2.AuthRoleListResponse:
        return rpc_pb2.AuthRoleListResponse(roles=sorted(self.roles, key=str.encode))

    def has_role(self, username: str, role: str) -> bool:
        user = self.users.get(username)
        return user is not None and role in user.roles

    def password_hash(self, username: str) -> tuple[bytes, int]:
        """-> (bcrypt hash, auth revision) for an Authenticate; raises etcd's errors."""
        if not self.enabled:
            raise E.ErrAuthNotEnabled()
        user = self.users.get(username)
        if user is None:
            raise E.ErrAuthFailed()
        if user.options.no_password:
            raise E.ErrNoPasswordUser()
        return bytes(user.password), self.revision

    # --- permission checks ------------------------------------------------------------------------
    def _check_op(self, ai: AuthInfo | None, key: bytes, range_end: bytes, write: bool) -> None:
        if not self.enabled:
            return
        if ai is None or ai.revision == 0:
            raise E.ErrUserEmpty()
        if ai.revision < self.revision:
            raise E.ErrAuthOldRevision()
        user = self.users.get(ai.username)
        if user is None:
            raise E.ErrPermissionDenied()
        if ROOT_ROLE in user.roles:
            return
        perms = self._perms.get(ai.username)
        if perms is None or not perms.permits(key, range_end, write):
            raise E.ErrPermissionDenied()

    def check_range(self, ai: AuthInfo | None, key: bytes, range_end: bytes = b"") -> None:
        self._check_op(ai, key, range_end, False)

    def check_put(self, ai: AuthInfo | None, key: bytes) -> None:
        self._check_op(ai, key, b"", True)

    def check_delete_range(self, ai: AuthInfo | None, key: bytes, range_end: bytes = b"") -> None:
        self._check_op(ai, key, range_end, True)

    def check_admin(self, ai: AuthInfo | None) -> None:
        if not self.enabled:
            return
        if ai is None or not ai.username:
            raise E.ErrUserEmpty()
        user = self.users.get(ai.username)
        if user is None:
            raise E.ErrUserNotFound()
        if ROOT_ROLE not in user.roles:
            raise E.ErrPermissionDenied()
