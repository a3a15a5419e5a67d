"""Auth tokens: etcd's simple tokens and JWTs, chosen by --auth-token.

simple   "<16 random letters>.<raft index of the Authenticate entry>": an opaque handle kept in
         memory on the member, mapped to its user, valid until unused for --auth-token-ttl seconds
         (each use restarts the clock), dropped when its user is deleted or changes password and
         when auth is disabled. Lost on restart (clients authenticate again), as in etcd.
jwt      "jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256|ES256|...[,ttl=5m]": a signed token
         carrying {username, revision, exp}; any member with the public key verifies it, nothing is
         kept. A JWT is tied to the auth revision it was issued at: after any user/role change, a
         request made with it is refused with "revision of auth store is old" and the client
         authenticates again.

A provider's info() returns (username, revision) or None for a token it does not accept.
"""
from __future__ import annotations

import re
import secrets
import string
import time

from fastkv.errors import EtcdError

SIMPLE_TOKEN_LETTERS = string.ascii_letters
SIMPLE_TOKEN_PREFIX_LEN = 16
DEFAULT_SIMPLE_TTL = 300.0
DEFAULT_JWT_TTL = 300.0


class InvalidAuthOptions(ValueError):
    """--auth-token could not be used; the message says what to fix."""


class SimpleTokens:
    kind = "simple"

    def __init__(self, ttl: float = DEFAULT_SIMPLE_TTL, clock=time.monotonic):
        self.ttl = ttl if ttl > 0 else DEFAULT_SIMPLE_TTL
        self._clock = clock
        self._enabled = False
        self._tokens: dict[str, list] = {}  # token -> [username, expiry]
        self._assigned = 0

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False
        self._tokens = {}  # every token dies with auth

    def gen_prefix(self) -> str:
        return "".join(secrets.choice(SIMPLE_TOKEN_LETTERS) for _ in range(SIMPLE_TOKEN_PREFIX_LEN))

    def assign(self, username: str, revision: int, *, prefix: str, index: int) -> str:
        token = f"{prefix}.{index}"
        if self._enabled:
            self._tokens[token] = [username, self._clock() + self.ttl]
            self._assigned += 1
            if self._assigned % 256 == 0:  # expired tokens never used again are dropped here
                self.purge_expired()
        return token

    def info(self, token: str, revision: int):
        entry = self._tokens.get(token)
        if entry is None:
            return None
        now = self._clock()
        if now > entry[1]:
            del self._tokens[token]
            return None
        entry[1] = now + self.ttl  # a used token lives another TTL
        return entry[0], revision

    def invalidate_user(self, username: str) -> None:
        self._tokens = {t: e for t, e in self._tokens.items() if e[0] != username}

    def purge_expired(self) -> None:
        now = self._clock()
        self._tokens = {t: e for t, e in self._tokens.items() if e[1] >= now}


class JWTTokens:
    kind = "jwt"

    def __init__(self, sign_method: str, private_key=None, public_key=None, ttl: float = DEFAULT_JWT_TTL):
        self.sign_method = sign_method
        self.private_key = private_key
        self.public_key = public_key
        self.ttl = ttl

    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass

    def gen_prefix(self) -> str:
        return ""

    def invalidate_user(self, username: str) -> None:
        pass  # a JWT is self-contained: the auth revision bump refuses the old ones

    def purge_expired(self) -> None:
        pass

    def assign(self, username: str, revision: int, *, prefix: str = "", index: int = 0) -> str:
        import jwt

        if self.private_key is None:
            raise EtcdError("auth: token signing attempted with verify-only key", "UNKNOWN")
        claims = {"username": username, "revision": revision, "exp": int(time.time() + self.ttl)}
        return jwt.encode(claims, self.private_key, algorithm=self.sign_method)

    def info(self, token: str, revision: int):
        import jwt

        try:
            # only the configured algorithm: a token naming another one (or "none") is refused
            claims = jwt.decode(token, self.public_key, algorithms=[self.sign_method],
                                options={"require": ["exp"]})
        except jwt.PyJWTError:
            return None
        username, rev = claims.get("username"), claims.get("revision")
        if not isinstance(username, str) or not isinstance(rev, (int, float)) or isinstance(rev, bool):
            return None
        return username, int(rev)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """'5m', '1h30m', '90s' (Go's time.ParseDuration, as etcd's ttl= option takes) -> seconds."""
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise InvalidAuthOptions(f"ttl={text!r} is not a duration such as 5m, 300s or 1h")
    return total


def provider_from_option(option: str, simple_ttl: float = DEFAULT_SIMPLE_TTL):
    """--auth-token's value -> a token provider. Raises InvalidAuthOptions with what to fix."""
    parts = option.split(",")
    kind, opts = parts[0], {}
    for part in parts[1:]:
        if part.count("=") != 1:
            raise InvalidAuthOptions(f"--auth-token option {part!r} is not NAME=VALUE")
        k, v = part.split("=")
        if k in opts:
            raise InvalidAuthOptions(f"--auth-token option {k!r} is given twice")
        opts[k] = v
    if kind == "simple":
        return SimpleTokens(simple_ttl)
    if kind == "jwt":
        return _jwt_provider(opts)
    raise InvalidAuthOptions(f"--auth-token type {kind!r} is unknown: use 'simple' or "
                             "'jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256'")


def _jwt_provider(opts: dict) -> JWTTokens:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    method = opts.get("sign-method", "")
    try:
        alg = jwt.get_algorithm_by_name(method)
    except (NotImplementedError, KeyError):
        raise InvalidAuthOptions(f"--auth-token sign-method {method!r} is not a JWT signing method "
                                 "(RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, "
                                 "HS256, HS384, HS512)") from None
    ttl = parse_go_duration(opts["ttl"]) if opts.get("ttl") else DEFAULT_JWT_TTL
    priv_pem = _read(opts.get("priv-key"))
    pub_pem = _read(opts.get("pub-key"))
    if method.startswith("HS"):
        if not priv_pem:
            raise InvalidAuthOptions("--auth-token jwt with an HS* sign-method needs priv-key=PATH (the secret)")
        return JWTTokens(method, priv_pem, priv_pem, ttl)
    want = rsa if method[:2] in ("RS", "PS") else ec
    priv = pub = None
    try:
        if priv_pem:
            priv = serialization.load_pem_private_key(priv_pem, password=None)
        if pub_pem:
            pub = serialization.load_pem_public_key(pub_pem)
    except ValueError as exc:
        raise InvalidAuthOptions(f"--auth-token: cannot read the key: {exc}") from None
    for k in (priv, pub):
        if k is not None and not isinstance(k, (want.RSAPrivateKey, want.RSAPublicKey) if want is rsa
                                            else (want.EllipticCurvePrivateKey, want.EllipticCurvePublicKey)):
            raise InvalidAuthOptions(f"--auth-token: the key does not suit sign-method {method}")
    if priv is None and pub is None:
        raise InvalidAuthOptions("--auth-token jwt needs priv-key=PATH (to sign) and/or pub-key=PATH (to verify)")
    if priv is not None and pub is not None and priv.public_key().public_numbers() != pub.public_numbers():
        raise InvalidAuthOptions("--auth-token: pub-key and priv-key are not a pair")
    _ = alg
    return JWTTokens(method, priv, pub if pub is not None else priv.public_key(), ttl)


def _read(path):
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise InvalidAuthOptions(f"--auth-token: cannot read {path}: {exc.strerror}") from None
