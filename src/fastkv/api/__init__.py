"""etcd v3 gRPC API: the .proto definitions (proto/) and their generated stubs (etcdpb/)."""
