"""`fastkv serve`: run one member, with etcd's command-line flags and defaults."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

DESCRIPTION = """Run a fastkv member that speaks etcd's v3 gRPC API (etcdctl and etcd clients work
against it). Flags and defaults follow etcd's: with no flags it serves clients on 127.0.0.1:2379 and
keeps its data in ./default.fastkv. Restarting with the same --data-dir resumes; SIGTERM or Ctrl-C
shuts down cleanly; nothing acknowledged is lost on SIGKILL. A cluster of 3 or 5 members starts
with etcd's clustering flags (--initial-cluster, --listen-peer-urls, --initial-advertise-peer-urls,
--initial-cluster-token); peer traffic runs over TLS with etcd's --peer-* flags, client traffic on
https:// client URLs with etcd's --cert-file, --key-file, --trusted-ca-file, --client-cert-auth and
--auto-tls (http:// and https:// listeners can be given side by side)."""


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


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _duration(s: str) -> float:
    """A Go duration as etcd's flags take it ("1m30s", "500ms", "0s") -> seconds."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", s)
    if s == "0" or (parts and "".join(a + b for a, b in parts) == s):
        return sum(float(a) * _DURATION_UNITS[b] for a, b in parts)
    raise argparse.ArgumentTypeError(f"expected a duration such as 30s, 5m or 1h30m, got {s!r}")


def _non_negative(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


from fastkv.transport.tls import add_client_tls_arguments, add_peer_tls_arguments  # noqa: E402


def _bool(text: str) -> bool:
    """etcd's boolean flags are Go flags: "--pre-vote" alone means true and "--pre-vote=false" turns
    one off (hence nargs="?", const=True on each); "--pre-vote false" is accepted too."""
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
    p.add_argument("--strict-reconfig-check", type=_bool, nargs="?", const=True, metavar="true|false", default=True,
                   help="reject reconfiguration requests that would cause quorum loss")
    p.add_argument("--pre-vote", type=_bool, nargs="?", const=True, metavar="true|false", default=False,
                   help="run raft's pre-vote phase before an election (keeps a rejoining member "
                        "from disrupting the cluster)")
    p.add_argument("--force-new-cluster", type=_bool, nargs="?", const=True, metavar="true|false", default=False,
                   help="disaster recovery: restart this member from its data dir as a cluster of one (every "
                        "other member removed, committed data kept); then add members back with member add")
    p.add_argument("--max-snapshots", type=_non_negative, default=5,
                   help="maximum snapshot files to retain (0 is unlimited)")
    p.add_argument("--max-wals", type=_non_negative, default=5,
                   help="maximum WAL files to retain once a snapshot covers them (0 is unlimited)")
    p.add_argument("--experimental-initial-corrupt-check", type=_bool, nargs="?", const=True, metavar="true|false", default=False,
                   help="before serving clients, compare this member's HashKV with every peer's and refuse "
                        "to start on a mismatch")
    p.add_argument("--experimental-corrupt-check-time", type=_duration, default=0.0,
                   help="how often the leader compares its HashKV with the followers' and raises the CORRUPT "
                        "alarm on a mismatch (a duration such as 30s or 5m; 0s disables it)")
    add_client_tls_arguments(p)
    add_peer_tls_arguments(p)
    p.add_argument("--auth-token", default="simple",
                   help="auth token type: 'simple' (random tokens kept by the member) or "
                        "'jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256[,ttl=5m]' (signed, RS*/PS*/ES*/HS*)")
    p.add_argument("--auth-token-ttl", type=_positive, default=300,
                   help="seconds a simple auth token lives after its last use")
    p.add_argument("--bcrypt-cost", type=int, default=10,
                   help="bcrypt cost for hashing user passwords (4..31; out of range falls back to 10)")
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
                        "listen-client-urls, initial-cluster, client-transport-security and "
                        "peer-transport-security: {cert-file, ...}); "
                        "as in etcd, when given, the other flags are ignored")
    p.set_defaults(func=run, _parser=p)


def config_from_args(args):
    from fastkv.server.config import ServerConfig

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
    client_tls = _client_tls(args)  # last: --auto-tls writes its certificate into the data dir
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
        max_snapshots=args.max_snapshots, max_wals=args.max_wals, force_new_cluster=args.force_new_cluster,
        experimental_initial_corrupt_check=args.experimental_initial_corrupt_check,
        experimental_corrupt_check_time=args.experimental_corrupt_check_time,
        peer_tls=_peer_tls(args),
        auth_token=args.auth_token, auth_token_ttl=args.auth_token_ttl, bcrypt_cost=args.bcrypt_cost,
        client_cert_auth=client_tls is not None and client_tls.client_cert_auth, client_tls=client_tls,
        client_frontend=args.client_frontend, max_concurrent_streams=args.max_concurrent_streams)


def _client_tls(args):
    """The client port's TLSInfo (None: no https:// client URL), checked the way etcd's
    configureClientListeners does: an https:// URL needs a certificate (or --auto-tls); certificate
    flags with only http:// URLs are ignored with a warning; a bad --cipher-suites is an error."""
    from fastkv.server.config import host_port
    from fastkv.transport.tls import TLSConfigError, client_tls_from_args, parse_cipher_suites

    log = logging.getLogger("fastkv.serve")
    try:
        parse_cipher_suites(args.cipher_suites)
    except TLSConfigError as exc:
        _usage_error(str(exc))
    secure = [u for u in list(args.listen_client_urls) + list(args.listen_metrics_urls)
              if u.startswith(("https://", "unixs://"))]
    for u in args.listen_client_urls:
        if u in secure:
            continue
        if args.cert_file or args.key_file:
            log.warning("client URL %s is http://: --cert-file/--key-file are not used for it", u)
        if args.client_cert_auth:
            log.warning("client URL %s is http://: --client-cert-auth does not apply to it", u)
    if not secure:
        return None
    data_dir = args.data_dir or f"{args.name}.fastkv"
    try:
        info = client_tls_from_args(args, data_dir, [host_port(u) for u in args.listen_client_urls])
        if info is None:
            which = "client" if secure[0] in args.listen_client_urls else "metrics"
            raise TLSConfigError(f"TLS key/cert (--cert-file, --key-file) must be provided for {which} url "
                                 f"{secure[0]} with HTTPS scheme (or give --auto-tls for a self-signed certificate)")
        info.server_context()  # unreadable files, a key that does not match: say so before starting
    except TLSConfigError as exc:
        _usage_error(str(exc))
    if args.client_frontend == "grpcio" and info.checks_peers():
        _usage_error("--client-crl-file and --client-cert-allowed-hostname need the native client front end "
                     "(the default; grpcio's TLS has no hook for them): drop --client-frontend grpcio")
    wanted = info.grpc_cipher_env()
    if args.client_frontend == "grpcio" and wanted and os.environ.get("GRPC_SSL_CIPHER_SUITES") != wanted:
        # grpcio reads its cipher list from the environment once, when it is imported (before the
        # flags are parsed); refusing beats serving suites the operator excluded
        _usage_error(f"--cipher-suites on the grpcio client front end needs GRPC_SSL_CIPHER_SUITES={wanted} "
                     "in the environment (grpcio reads it at start-up); or use --client-frontend native")
    return info


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
# etcd's client-transport-security keys -> fastkv serve's flags
_CLIENT_SECURITY = {"cert-file": "--cert-file", "key-file": "--key-file", "trusted-ca-file": "--trusted-ca-file",
                    "client-cert-auth": "--client-cert-auth", "auto-tls": "--auto-tls"}


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
        if key in ("peer-transport-security", "client-transport-security") and isinstance(value, dict):
            keys = _PEER_SECURITY if key.startswith("peer") else _CLIENT_SECURITY
            for k, v in value.items():
                if k not in keys:
                    _usage_error(f"--config-file {path}: unknown {key} key {k!r} (known: {', '.join(keys)})")
                flag(keys[k], v)
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
    from fastkv.server.corrupt import DataInconsistency
    from fastkv.server.runner import serve
    from fastkv.wal.errors import SnapshotError, WALError

    try:
        if uvloop is not None:
            uvloop.run(serve(cfg))
        else:
            asyncio.run(serve(cfg))
    except (ValueError, OSError, WALError, SnapshotError, DataInconsistency) as exc:
        # an unusable data dir (locked by another member, corrupt WAL) is an operator's problem to
        # fix: say what and where, without a traceback
        print(f"fastkv serve: {exc}", file=sys.stderr)
        return 1
    return 0
