"""etcd's authentication: users, roles, key-range permissions, tokens (simple and JWT).

store.AuthStore keeps users and roles in the backend's auth buckets and answers permission checks;
tokens.py issues and verifies tokens; identity.py turns a request's metadata (or its client
certificate's common name) into the AuthInfo a check needs. Nothing here imports grpc.
"""
from fastkv.auth.store import AuthInfo, AuthStore  # noqa: F401
