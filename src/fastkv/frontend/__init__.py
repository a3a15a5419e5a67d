"""The native client front end: gRPC over HTTP/2 (libnghttp2, through fastkv._native.h2grpc) and
HTTP/1.1 on one listener, serving an EtcdServer without grpcio.

  methods     etcd's RPCs as a transport-neutral table (what each calls on the server)
  status      gRPC status codes by name, EtcdError -> code
  calls       unary calls driven step-wise from callbacks (no asyncio Task per call)
  streams     Watch, LeaseKeepAlive, Snapshot: one Task per stream, with backpressure
  connection  the asyncio Protocol per client connection (sniffs HTTP/2 vs HTTP/1.1)
  http1       /metrics, /health, /version and the gateway's entry on HTTP/1.1
  gateway     etcd's JSON gateway (/v3/..., /v3beta/...)
  listener    start/stop for `fastkv serve --client-frontend native` (plaintext or an SSLContext)
  nullserver  the front end with nothing behind it, for `fastkv bench ... --null-server native`
"""
