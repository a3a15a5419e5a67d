"""Server configuration: etcd's flags and defaults, plus fastkv's backend batching knobs."""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from urllib.parse import urlparse


@dataclass
class ServerConfig:
    name: str = "default"
    data_dir: str = ""  # default: "<name>.fastkv"
    listen_client_urls: list = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    advertise_client_urls: list = field(default_factory=lambda: ["http://127.0.0.1:2379"])
    listen_peer_urls: list = field(default_factory=lambda: ["http://127.0.0.1:2380"])
    initial_advertise_peer_urls: list = field(default_factory=lambda: ["http://127.0.0.1:2380"])
    initial_cluster: str = ""  # default: "<name>=<first initial-advertise-peer-url>"
    initial_cluster_state: str = "new"
    initial_cluster_token: str = "etcd-cluster"
    snapshot_count: int = 100000
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    quota_backend_bytes: int = 2 * 1024**3
    max_request_bytes: int = 1572864
    max_txn_ops: int = 128
    auto_compaction_mode: str = "periodic"
    auto_compaction_retention: str = "0"
    listen_metrics_urls: list = field(default_factory=list)
    backend_batch_limit: int = 10000
    backend_batch_interval_ms: int = 100
    grpc_servers: int = 4
    strict_reconfig_check: bool = True
    pre_vote: bool = False  # etcd 3.4's default
    max_snapshots: int = 5  # snapshot files kept (0: all), etcd's --max-snapshots
    max_wals: int = 5       # WAL segments kept once a snapshot covers them (0: all), etcd's --max-wals
    force_new_cluster: bool = False  # restart as a cluster of one, keeping the data (disaster recovery)
    experimental_initial_corrupt_check: bool = False  # compare HashKV with the peers before serving
    experimental_corrupt_check_time: float = 0.0      # seconds between the leader's checks (0: off)
    peer_tls: object = None  # transport.tls.TLSInfo from the --peer-* flags, None = plain TCP
    client_tls: object = None  # transport.tls.TLSInfo for https:// client URLs, None = no certificate
    auth_token: str = "simple"      # "simple" | "jwt,pub-key=...,priv-key=...,sign-method=...[,ttl=...]"
    auth_token_ttl: int = 300       # seconds a simple token lives unused
    bcrypt_cost: int = 10
    client_cert_auth: bool = False  # a request without a token is made as its verified client certificate's CN
    client_frontend: str = "native"  # fastkv.frontend (HTTP/2 over libnghttp2); "grpcio": the reference
    max_concurrent_streams: int = 0xFFFFFFFF  # HTTP/2 setting of the native front end (etcd's flag)

    def __post_init__(self):
        if not self.data_dir:
            self.data_dir = f"{self.name}.fastkv"
        if not self.initial_cluster:
            self.initial_cluster = ",".join(f"{self.name}={u}" for u in self.initial_advertise_peer_urls)

    def cluster_members(self) -> dict:
        """name -> [peer urls] from --initial-cluster."""
        out: dict = {}
        for part in filter(None, (p.strip() for p in self.initial_cluster.split(","))):
            if "=" not in part:
                raise ValueError(f"--initial-cluster entry {part!r} is not NAME=URL")
            name, url = part.split("=", 1)
            out.setdefault(name, []).append(url)
        return out

    def member_id(self) -> int:
        return member_id_for(self.cluster_members().get(self.name, self.initial_advertise_peer_urls),
                             self.initial_cluster_token)

    def cluster_id(self) -> int:
        ids = sorted(member_id_for(urls, self.initial_cluster_token) for urls in self.cluster_members().values())
        h = hashlib.sha1(b"".join(struct.pack(">Q", i) for i in ids)).digest()
        return struct.unpack(">Q", h[:8])[0]


def member_id_for(peer_urls, token: str) -> int:
    """A member's ID from its peer URLs and the cluster token (etcd derives it the same way)."""
    h = hashlib.sha1(("".join(sorted(peer_urls)) + token).encode()).digest()
    return struct.unpack(">Q", h[:8])[0]


def host_port(url: str) -> str:
    """'http://127.0.0.1:2379' -> '127.0.0.1:2379' (for binding)."""
    u = urlparse(url if "://" in url else "http://" + url)
    if u.scheme not in ("http", "https", "unix", "unixs"):
        raise ValueError(f"URL scheme must be http, https, unix, or unixs: {url}")
    try:
        port = u.port
    except ValueError:
        port = None
    if not u.hostname or port is None:  # port 0 is allowed, as etcd: the OS picks one
        raise ValueError(f'URL address does not have the form "host:port": {url}')
    if u.path:
        raise ValueError(f"URL must not contain a path: {url}")
    return f"{u.hostname}:{port}"
