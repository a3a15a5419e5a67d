"""A small etcd v3 client over fastkv's own stubs (fastkv.api.etcdpb); works against etcd and fastkv.

    from fastkv.client import EtcdClient, AsyncEtcdClient, ops

    with EtcdClient("http://127.0.0.1:2379") as c:
        c.put(b"k", b"v")
        kvs = c.get(b"k", prefix=True).kvs
        c.txn(compare=[ops.cmp_version(b"k", "=", 1)], success=[ops.put(b"k", b"w")])

Errors are grpc.RpcError with etcd's status code and message (e.Code(), e.details()).
"""
from fastkv.client import ops
from fastkv.client._channel import parse_endpoint, prefix_range_end
from fastkv.client.aio import AsyncEtcdClient
from fastkv.client.sync import EtcdClient

__all__ = ["AsyncEtcdClient", "EtcdClient", "ops", "parse_endpoint", "prefix_range_end"]
