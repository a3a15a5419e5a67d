"""`fastkv serve`: run one member, with etcd's command-line flags and defaults."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

DESCRIPTION = """Run a fastkv member that speaks etcd's v3 gRPC API (etcdctl and etcd clients work
against it). Flags and defaults follow etcd's: with no flags it serves clients on 127.0.0.1:2379 and
keeps its data in ./default.fastkv. Restarting with the same --data-dir resumes; SIGTERM or Ctrl-C
shuts down cleanly; nothing acknowledged is lost on SIGKILL. A cluster of 3 or 5 members starts
with etcd's clustering flags (--initial-cluster, --listen-peer-urls, --initial-advertise-peer-urls,
--initial-cluster-token); peer traffic runs over TLS with etcd's --peer-* flags."""


def _urls(s: str) -> list:
    urls = [u.strip() for u in s.split(",") if u.strip()]
    if not urls:
        raise argparse.ArgumentTypeError("expected one or more comma-separated URLs")
    from fastkv.server.config import host_port

    for u in urls:
        try:
            host_port(u)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return urls


def _positive(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {v}")
    return v


from fastkv.transport.tls import add_peer_tls_arguments  # noqa: E402


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="run a member (etcd-compatible server)", description=DESCRIPTION,
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--name", default="default", help="human-readable name for this member")
    p.add_argument("--data-dir", default="", help="path to the data directory (default: <name>.fastkv)")
    p.add_argument("--listen-client-urls", type=_urls, default=["http://127.0.0.1:2379"],
                   help="comma-separated URLs to serve clients (gRPC) on")
    p.add_argument("--advertise-client-urls", type=_urls, default=["http://127.0.0.1:2379"],
                   help="client URLs advertised to the rest of the cluster and clients")
    p.add_argument("--listen-peer-urls", type=_urls, default=["http://127.0.0.1:2380"],
                   help="URLs to listen on for peer traffic")
    p.add_argument("--initial-advertise-peer-urls", type=_urls, default=["http://127.0.0.1:2380"],
                   help="this member's peer URLs to advertise to the rest of the cluster")
    p.add_argument("--initial-cluster", default="", help="initial cluster configuration: name=peer-url,... "
                   "(default: <name>=<initial-advertise-peer-urls>)")
    p.add_argument("--initial-cluster-state", default="new", choices=["new", "existing"],
                   help="new for a new cluster, existing to join one")
    p.add_argument("--initial-cluster-token", default="etcd-cluster", help="token distinguishing clusters")
    p.add_argument("--snapshot-count", type=_positive, default=100000,
                   help="committed entries between raft snapshots (which let the WAL be released)")
    p.add_argument("--heartbeat-interval", type=_positive, default=100, help="heartbeat interval in ms")
    p.add_argument("--election-timeout", type=_positive, default=1000, help="election timeout in ms")
    p.add_argument("--quota-backend-bytes", type=int, default=2 * 1024**3,
                   help="raise a NOSPACE alarm and refuse writes when the backend exceeds this (0 = 2 GiB; "
                        "negative = no quota, as etcd, up to an 8 GiB backend)")
    p.add_argument("--max-request-bytes", type=_positive, default=1572864, help="maximum client request size")
    p.add_argument("--max-txn-ops", type=_positive, default=128, help="maximum operations in one txn")
    p.add_argument("--auto-compaction-mode", default="periodic", choices=["periodic", "revision"],
                   help="interpret --auto-compaction-retention as a duration or a revision count")
    p.add_argument("--auto-compaction-retention", default="0",
                   help="periodic: keep this much history ('1h', '30m', or hours); revision: this many "
                        "revisions; 0 disables auto compaction")
    p.add_argument("--listen-metrics-urls", type=_urls, default=[],
                   help="extra URLs serving /metrics, /health and /version over HTTP")
    p.add_argument("--backend-batch-limit", type=_positive, default=10000,
                   help="fastkv: commit the backend after this many pending writes")
    p.add_argument("--backend-batch-interval", type=_positive, default=100,
                   help="fastkv: commit the backend at least this often (ms)")
    p.add_argument("--grpc-servers", type=_positive, default=4,
                   help="fastkv, --client-frontend grpcio only: internal gRPC servers the client port "
                        "spreads connections over (grpcio accepts one call at a time per server; more "
                        "servers serve more client connections in parallel, one connection always uses one "
                        "server)")
    p.add_argument("--strict-reconfig-check", type=_bool, default=True,
                   help="reject reconfiguration requests that would cause quorum loss")
    p.add_argument("--pre-vote", type=_bool, default=False,
                   help="run raft's pre-vote phase before an election (keeps a rejoining member "
                        "from disrupting the cluster)")
    add_peer_tls_arguments(p)
    p.add_argument("--auth-token", default="simple",
                   help="auth token type: 'simple' (random tokens kept by the member) or "
                        "'jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256[,ttl=5m]' (signed, RS*/PS*/ES*/HS*)")
    p.add_argument("--auth-token-ttl", type=_positive, default=300,
                   help="seconds a simple auth token lives after its last use")
    p.add_argument("--bcrypt-cost", type=int, default=10,
                   help="bcrypt cost for hashing user passwords (4..31; out of range falls back to 10)")
    p.add_argument("--client-cert-auth", action="store_true",
                   help="with auth enabled, a request without a token is made as the user named by its "
                        "verified client certificate's common name")
    p.add_argument("--client-frontend", default=os.environ.get("FASTKV_CLIENT_FRONTEND", "native"),
                   choices=["grpcio", "native"],
                   help="fastkv: what serves the client port: native (the default: HTTP/2 over libnghttp2, "
                        "gRPC, etcd's JSON gateway and /metrics on one listener) or grpcio (the reference "
                        "front end, for comparison; takes --grpc-servers); the FASTKV_CLIENT_FRONTEND "
                        "environment variable overrides the default")
    p.add_argument("--max-concurrent-streams", type=_positive, default=0xFFFFFFFF,
                   help="maximum concurrent streams per client connection (HTTP/2 setting; native front end)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="logging verbosity")
    p.add_argument("--config-file", default="",
                   help="etcd's YAML configuration file (keys are the flag names: name, data-dir, "
                        "listen-client-urls, initial-cluster, peer-transport-security: {cert-file, ...}); "
                        "as in etcd, when given, the other flags are ignored")
    p.set_defaults(func=run, _parser=p)


def config_from_args(args):
    from fastkv.server.config import ServerConfig

    for u in list(args.listen_client_urls) + list(args.advertise_client_urls):
        if u.startswith("https://"):
            _usage_error(f"client URL {u}: client TLS is not supported yet (peer TLS is); use http://")
    if args.client_frontend not in ("grpcio", "native"):  # a FASTKV_CLIENT_FRONTEND argparse did not check
        _usage_error(f"--client-frontend must be grpcio or native (got {args.client_frontend!r}; check "
                     "FASTKV_CLIENT_FRONTEND)")
    if args.election_timeout < 5 * args.heartbeat_interval:
        _usage_error("--election-timeout must be at least 5 times --heartbeat-interval "
                     f"(got {args.election_timeout} and {args.heartbeat_interval})")
    from fastkv.server.etcdserver import parse_retention

    try:
        retention = parse_retention(args.auto_compaction_mode, args.auto_compaction_retention)
    except ValueError:
        retention = -1
    if retention < 0:
        _usage_error(f"--auto-compaction-retention {args.auto_compaction_retention!r} is not valid for "
                     f"--auto-compaction-mode {args.auto_compaction_mode} (periodic: a duration such as "
                     "'1h', '30m', '90s' or a number of hours; revision: a revision count)")
    from fastkv.auth.tokens import InvalidAuthOptions, provider_from_option

    try:
        provider_from_option(args.auth_token)  # refuse a bad --auth-token before anything starts
    except InvalidAuthOptions as exc:
        _usage_error(str(exc))
    quota = args.quota_backend_bytes or 2 * 1024**3
    if quota < 0:  # etcd: a negative quota disables it; keep etcd's suggested maximum as the map size
        quota = 8 * 1024**3
    return ServerConfig(
        name=args.name, data_dir=args.data_dir, listen_client_urls=args.listen_client_urls,
        advertise_client_urls=args.advertise_client_urls, listen_peer_urls=args.listen_peer_urls,
        initial_advertise_peer_urls=args.initial_advertise_peer_urls, initial_cluster=args.initial_cluster,
        initial_cluster_state=args.initial_cluster_state, initial_cluster_token=args.initial_cluster_token,
        snapshot_count=args.snapshot_count, heartbeat_interval_ms=args.heartbeat_interval,
        election_timeout_ms=args.election_timeout, quota_backend_bytes=quota,
        max_request_bytes=args.max_request_bytes, max_txn_ops=args.max_txn_ops,
        auto_compaction_mode=args.auto_compaction_mode, auto_compaction_retention=args.auto_compaction_retention,
        listen_metrics_urls=args.listen_metrics_urls, backend_batch_limit=args.backend_batch_limit,
        backend_batch_interval_ms=args.backend_batch_interval, grpc_servers=args.grpc_servers,
        strict_reconfig_check=args.strict_reconfig_check, pre_vote=args.pre_vote,
        peer_tls=_peer_tls(args),
        auth_token=args.auth_token, auth_token_ttl=args.auth_token_ttl, bcrypt_cost=args.bcrypt_cost,
        client_cert_auth=args.client_cert_auth,
        client_frontend=args.client_frontend, max_concurrent_streams=args.max_concurrent_streams)


def _peer_tls(args):
    from fastkv.server.config import host_port
    from fastkv.transport.tls import TLSConfigError, peer_tls_from_args

    data_dir = args.data_dir or f"{args.name}.fastkv"
    try:
        return peer_tls_from_args(args, data_dir, [host_port(u).rsplit(":", 1)[0] for u in args.listen_peer_urls])
    except TLSConfigError as exc:
        _usage_error(str(exc))


def _usage_error(message: str) -> None:
    """A bad flag value found after parsing: argparse's style and exit code 2."""
    print(f"fastkv serve: error: {message}", file=sys.stderr)
    raise SystemExit(2)


# etcd's peer-transport-security keys -> fastkv serve's flags
_PEER_SECURITY = {"cert-file": "--peer-cert-file", "key-file": "--peer-key-file",
                  "trusted-ca-file": "--peer-trusted-ca-file", "client-cert-auth": "--peer-client-cert-auth",
                  "auto-tls": "--peer-auto-tls", "allowed-cn": "--peer-cert-allowed-cn"}


def config_file_argv(path: str, parser) -> list:
    """The flags an etcd YAML config file stands for (etcd's embed.ConfigFromFile, for the keys
    fastkv serve knows); unknown keys are a usage error, so a typo does not pass silently."""
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as exc:
        _usage_error(f"cannot read --config-file {path}: {exc}")
    if not isinstance(data, dict):
        _usage_error(f"--config-file {path}: expected a YAML mapping of flag names to values")
    known = {a.dest: a for a in parser._actions}
    argv: list = []

    def flag(name: str, value) -> None:
        action = known.get(name.lstrip("-").replace("-", "_"))
        if action is None:
            _usage_error(f"--config-file {path}: unknown key {name!r} (fastkv serve --help lists the flags)")
        opt = action.option_strings[0]
        if isinstance(action, argparse._StoreTrueAction):
            if value:
                argv.append(opt)
        elif isinstance(value, bool):
            argv.extend([opt, "true" if value else "false"])
        elif isinstance(value, list):
            argv.extend([opt, ",".join(str(v) for v in value)])
        elif value is not None:
            argv.extend([opt, str(value)])

    for key, value in data.items():
        if key == "peer-transport-security" and isinstance(value, dict):
            for k, v in value.items():
                if k not in _PEER_SECURITY:
                    _usage_error(f"--config-file {path}: unknown peer-transport-security key {k!r}")
                flag(_PEER_SECURITY[k], v)
        elif key != "config-file":
            flag(key, value)
    return argv


def run(args) -> int:
    if args.config_file:
        args = args._parser.parse_args(config_file_argv(args.config_file, args._parser))
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    cfg = config_from_args(args)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep serving without it
        uvloop = None
    from fastkv.server.runner import serve
    from fastkv.wal.errors import SnapshotError, WALError

    try:
        if uvloop is not None:
            uvloop.run(serve(cfg))
        else:
            asyncio.run(serve(cfg))
    except (ValueError, OSError, WALError, SnapshotError) as exc:
        # an unusable data dir (locked by another member, corrupt WAL) is an operator's problem to
        # fix: say what and where, without a traceback
        print(f"fastkv serve: {exc}", file=sys.stderr)
        return 1
    return 0
