"""The native client front end: gRPC over HTTP/2 (libnghttp2, through fastkv._native.h2grpc) and
HTTP/1.1 on one listener, serving an EtcdServer without grpcio.

`methods` is the transport-neutral table of etcd's RPCs (what each calls on the server, how its
errors map to gRPC status codes); `connection` is the asyncio Protocol per client connection;
`listener` starts and stops the listeners for `fastkv serve --client-frontend native`.
"""
