"""Who is making a request: the front-end-neutral part of authentication.

A front end (grpcio today, the native HTTP/2 one and its JSON gateway tomorrow) hands over the
request's metadata as a mapping of lower-case header name -> value, and the verified client
certificate's common name (None without client TLS). The token comes from the "token" metadata
(gRPC clients) or the "authorization" header (etcd's JSON gateway), as etcd takes it.
"""
from __future__ import annotations

from fastkv.auth.errors import ErrInvalidAuthToken
from fastkv.auth.store import AuthInfo

TOKEN_FIELD_GRPC = "token"
TOKEN_FIELD_GATEWAY = "authorization"
GATEWAY_MARKER = "grpcgateway-accept"  # a gateway-proxied call: the proxy's certificate is not the user's


def auth_info_from_request(store, metadata, cert_cn: str | None = None, client_cert_auth: bool = False):
    """-> AuthInfo, or None for an anonymous request. Raises ErrInvalidAuthToken for a token that
    is unknown, expired, tampered with or wrongly signed.

    With --client-cert-auth, a request carrying no token is made as the user named by its verified
    client certificate's CN, at the store's current auth revision (etcd's rule)."""
    token = None
    if metadata:
        token = metadata.get(TOKEN_FIELD_GRPC) or metadata.get(TOKEN_FIELD_GATEWAY)
    if token:
        if isinstance(token, bytes):
            token = token.decode("latin-1")
        found = store.tokens.info(token, store.revision)
        if found is None:
            raise ErrInvalidAuthToken()
        return AuthInfo(found[0], found[1])
    if client_cert_auth and cert_cn and not (metadata and metadata.get(GATEWAY_MARKER)):
        return AuthInfo(cert_cn, store.revision)
    return None
