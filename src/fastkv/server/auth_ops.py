"""The Auth API's operations on a member (etcd's Authenticator): each becomes a raft proposal.

Passwords are hashed here, in a worker thread, before the proposal (bcrypt at --bcrypt-cost is
slow on purpose: the event loop never waits on it), and Authenticate's password check runs in a
worker thread too. The proposal then carries only the hash.
"""
from __future__ import annotations

import asyncio

from fastkv.api.etcdpb import rpc_pb2
from fastkv.auth.errors import ErrAuthFailed
from fastkv.server import request as rq


def _bcrypt():
    import bcrypt

    return bcrypt


class AuthOperations:
    def __init__(self, server):
        self.s = server

    @property
    def store(self):
        return self.s.auth_store

    async def _hash(self, password: str) -> str:
        bcrypt = _bcrypt()
        cost = self.store.bcrypt_cost
        hashed = await asyncio.get_running_loop().run_in_executor(
            None, lambda: bcrypt.hashpw(_bcrypt_input(password), bcrypt.gensalt(cost)))
        return hashed.decode()

    async def _propose(self, kind, req, ai):
        return self.s.fill(await self.s.propose(kind, req, auth=ai))

    async def authenticate(self, req, ai=None):
        await self.s.linearizable_barrier()
        loop = asyncio.get_running_loop()
        bcrypt = _bcrypt()
        while True:
            hashed, checked_revision = self.store.password_hash(req.name)
            ok = await loop.run_in_executor(None, _check_password, bcrypt, req.password, hashed)
            if not ok:
                raise ErrAuthFailed()
            internal = rpc_pb2.AuthenticateRequest(name=req.name, password=self.store.tokens.gen_prefix())
            resp = await self._propose(rq.AUTHENTICATE, internal, ai)
            # the password was checked at one auth revision: if users changed meanwhile (a new
            # password, say), check again, as etcd does
            if checked_revision == self.store.revision:
                return resp

    async def auth_enable(self, req, ai=None):
        return await self._propose(rq.AUTH_ENABLE, req, ai)

    async def auth_disable(self, req, ai=None):
        return await self._propose(rq.AUTH_DISABLE, req, ai)

    async def user_add(self, req, ai=None):
        r = rpc_pb2.AuthUserAddRequest()
        r.CopyFrom(req)
        if not r.options.no_password and r.name:
            if not (r.hashedPassword and not r.password):  # a 3.5 client may send the hash itself
                r.hashedPassword = await self._hash(r.password)
        else:
            r.hashedPassword = ""
        r.password = ""  # never into the log
        return await self._propose(rq.USER_ADD, r, ai)

    async def user_change_password(self, req, ai=None):
        r = rpc_pb2.AuthUserChangePasswordRequest()
        r.CopyFrom(req)
        if not (r.hashedPassword and not r.password):
            r.hashedPassword = await self._hash(r.password)
        r.password = ""
        return await self._propose(rq.USER_CHANGE_PASSWORD, r, ai)

    async def user_delete(self, req, ai=None):
        return await self._propose(rq.USER_DELETE, req, ai)

    async def user_get(self, req, ai=None):
        return await self._propose(rq.USER_GET, req, ai)

    async def user_list(self, req, ai=None):
        return await self._propose(rq.USER_LIST, req, ai)

    async def user_grant_role(self, req, ai=None):
        return await self._propose(rq.USER_GRANT_ROLE, req, ai)

    async def user_revoke_role(self, req, ai=None):
        return await self._propose(rq.USER_REVOKE_ROLE, req, ai)

    async def role_add(self, req, ai=None):
        return await self._propose(rq.ROLE_ADD, req, ai)

    async def role_get(self, req, ai=None):
        return await self._propose(rq.ROLE_GET, req, ai)

    async def role_list(self, req, ai=None):
        return await self._propose(rq.ROLE_LIST, req, ai)

    async def role_delete(self, req, ai=None):
        return await self._propose(rq.ROLE_DELETE, req, ai)

    async def role_grant_permission(self, req, ai=None):
        return await self._propose(rq.ROLE_GRANT_PERMISSION, req, ai)

    async def role_revoke_permission(self, req, ai=None):
        return await self._propose(rq.ROLE_REVOKE_PERMISSION, req, ai)


def _bcrypt_input(password: str) -> bytes:
    # bcrypt reads at most 72 bytes of a password (the bcrypt package refuses longer input rather
    # than ignore the rest): hash and check the same first 72 bytes, as classic bcrypt does
    return password.encode()[:72]


def _check_password(bcrypt, password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(_bcrypt_input(password), hashed)
    except ValueError:  # a stored hash bcrypt cannot read: no password matches it
        return False
