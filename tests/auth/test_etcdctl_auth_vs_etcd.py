"""The same etcdctl session of users, roles, permissions and auth changes against real etcd 3.4 and
fastkv, compared step by step (exit code, stdout and stderr after tests/compat/ctl.py's
normalisation): allowed requests, refused ones and every error text.
"""
from __future__ import annotations

import pytest

from tests.compat.ctl import Pair

pytestmark = [pytest.mark.etcd, pytest.mark.usefixtures("client_frontend")]

ROOT = ("--user", "root:rootpw")
U1 = ("--user", "u1:p1")
U2 = ("--user", "u2:p2")


@pytest.fixture
def pair(endpoints):
    return Pair(*endpoints)


def test_session_users_roles_permissions(pair):
    b = pair.both
    # before auth: user and role management is open, errors are etcd's
    b("user", "add", "root:rootpw")
    b("user", "add", "root:again", expect_rc=1)              # user name already exists
    b("user", "list")
    b("role", "list")
    b("user", "get", "nobody", expect_rc=1)                  # user name not found
    b("user", "grant-role", "root", "nope", expect_rc=1)     # role name not found
    b("--user", "root:rootpw", "get", "x", expect_rc=0)      # auth not enabled: the user is ignored
    b("auth", "enable")                                      # etcdctl adds the root role itself
    b("auth", "enable", expect_rc=1)                         # now it needs root: user name is empty
    b("user", "list", expect_rc=1)
    b("get", "foo", expect_rc=1)                             # no token: user name is empty
    b("put", "foo", "bar", expect_rc=1)
    b("--user", "root:wrong", "get", "foo", expect_rc=2)     # authentication failed
    b("--user", "nobody:pw", "get", "foo", expect_rc=2)
    b(*ROOT, "put", "foo", "bar")
    b(*ROOT, "get", "foo", "-w", "json", json_out=True)

    # roles and permissions
    b(*ROOT, "role", "add", "r1")
    b(*ROOT, "role", "add", "r1", expect_rc=1)               # role name already exists
    b(*ROOT, "role", "grant-permission", "r1", "read", "a", "m")
    b(*ROOT, "role", "grant-permission", "r1", "readwrite", "p/", "--prefix")
    b(*ROOT, "role", "grant-permission", "r1", "write", "w")
    b(*ROOT, "role", "grant-permission", "r1", "readwrite", "m", "t")   # adjoins [a, m): [a, t) readable
    b(*ROOT, "role", "grant-permission", "r1", "read", "a", "m")        # same range again: type kept
    b(*ROOT, "role", "grant-permission", "r1", "read", "y", "--from-key")
    b(*ROOT, "role", "get", "r1")
    b(*ROOT, "role", "get", "r1", "-w", "json", json_out=True)
    b(*ROOT, "role", "grant-permission", "nope", "read", "a", expect_rc=1)
    b(*ROOT, "user", "add", "u1:p1")
    b(*ROOT, "user", "grant-role", "u1", "r1")
    b(*ROOT, "user", "grant-role", "u1", "r1")               # granted twice: no change, no error
    b(*ROOT, "user", "get", "u1")
    b(*ROOT, "user", "get", "u1", "--detail")
    b(*ROOT, "user", "list")
    b(*ROOT, "role", "list")
    for key in ("a", "b", "c", "p/1", "w", "x"):
        b(*ROOT, "put", key, "v-" + key)

    # what u1 may do
    b(*U1, "get", "b")
    b(*U1, "get", "a", "m")
    b(*U1, "get", "a", "t")                                  # covered by two adjoining ranges
    b(*U1, "get", "a", "z", expect_rc=1)                     # not covered: permission denied
    b(*U1, "get", "x", expect_rc=1)
    b(*U1, "get", "yz")                                      # --from-key permission
    b(*U1, "get", "p/", "--prefix")
    b(*U1, "get", "", "--prefix", expect_rc=1)
    b(*U1, "put", "b", "nope", expect_rc=1)
    b(*U1, "put", "p/2", "ok")
    b(*U1, "put", "w", "ok")
    b(*U1, "get", "w", expect_rc=1)                          # write-only
    b(*U1, "put", "p/3", "ok", "--prev-kv")
    b(*U1, "put", "w", "again", "--prev-kv", expect_rc=1)    # prev_kv needs read too
    b(*U1, "del", "p/2")
    b(*U1, "del", "b", expect_rc=1)
    b(*U1, "del", "p/", "--prefix", "--prev-kv")
    b(*U1, "compaction", "2")                                # etcd 3.4 checks no permission here
    # reading your own user and the roles you hold is allowed; anything else is root's
    b(*U1, "user", "get", "u1")
    b(*U1, "role", "get", "r1")
    b(*U1, "role", "get", "root", expect_rc=1)
    b(*U1, "user", "get", "root", expect_rc=1)
    b(*U1, "user", "list", expect_rc=1)
    b(*U1, "role", "add", "r2", expect_rc=1)
    b(*U1, "auth", "disable", expect_rc=1)
    b(*U1, "defrag", expect_rc=1)
    b(*U1, "endpoint", "hashkv", expect_rc=1)
    b(*U1, "member", "remove", "1234", expect_rc=1)          # membership changes are root's
    b("member", "remove", "1234", expect_rc=1)
    b(*U1, "alarm", "list")                                  # etcd 3.4 checks no permission here
    b("alarm", "disarm")

    # txn: every compare and every op is checked
    b(*U1, "txn", stdin='value("a") = "v-a"\n\nput p/t1 yes\n\nput p/t2 no\n\n')
    b(*U1, "txn", stdin='value("a") = "v-a"\n\nput p/t1 yes\n\nput x no\n\n', expect_rc=1)  # failure op
    b(*U1, "txn", stdin='value("x") = "v-x"\n\nput p/t1 yes\n\n\n', expect_rc=1)           # compare
    b(*U1, "txn", stdin='\nget a m\nget p/ --prefix\n\n\n')
    b(*U1, "txn", stdin='\nget x\n\n\n', expect_rc=1)

    # revoking: permissions, roles, users, passwords
    b(*ROOT, "role", "revoke-permission", "r1", "a", "m")
    b(*ROOT, "role", "revoke-permission", "r1", "a", "m", expect_rc=1)   # not granted (any more)
    b(*U1, "get", "b", expect_rc=1)
    b(*U1, "get", "m")
    b(*ROOT, "user", "add", "u2:p2")
    b(*ROOT, "user", "grant-role", "u2", "r1")
    b(*ROOT, "user", "revoke-role", "u2", "r1")
    b(*ROOT, "user", "revoke-role", "u2", "r1", expect_rc=1)              # role is not granted
    b(*U2, "get", "m", expect_rc=1)
    b(*ROOT, "user", "passwd", "u2", "--interactive=false", stdin="p2new\n")
    b(*U2, "get", "m", expect_rc=2)                                       # old password
    b("--user", "u2:p2new", "user", "get", "u2")
    b(*ROOT, "user", "delete", "u2")
    b(*ROOT, "user", "delete", "u2", expect_rc=1)
    b("--user", "u2:p2new", "get", "m", expect_rc=2)
    b(*ROOT, "user", "add", "np", "--no-password")
    b(*ROOT, "user", "grant-role", "np", "r1")
    b("--user", "np:any", "get", "m", expect_rc=2)           # a no-password user cannot log in
    b(*ROOT, "role", "delete", "r1")
    b(*ROOT, "user", "get", "u1")                            # the role is gone from u1 too
    b(*U1, "get", "m", expect_rc=1)
    # root stays root while auth is on
    b(*ROOT, "user", "delete", "root", expect_rc=1)
    b(*ROOT, "role", "delete", "root", expect_rc=1)
    b(*ROOT, "user", "revoke-role", "root", "root", expect_rc=1)
    b(*ROOT, "auth", "disable")
    b("get", "", "--prefix", "-w", "json", json_out=True)    # everything readable again, same revision
    b("user", "list")
    b("role", "list")
    b("auth", "enable")
    b(*ROOT, "get", "foo")
