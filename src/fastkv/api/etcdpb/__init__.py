"""Generated etcd v3 API stubs (regenerate with fastkv/api/proto/generate.py; do not edit).

Use: `from fastkv.api.etcdpb import rpc_pb2, rpc_pb2_grpc, kv_pb2, auth_pb2, lease_pb2`.
"""
from fastkv.api.etcdpb.authpb import auth_pb2
from fastkv.api.etcdpb.leasepb import lease_pb2
from fastkv.api.etcdpb.mvccpb import kv_pb2
from fastkv.api.etcdpb.etcdserverpb import rpc_pb2, rpc_pb2_grpc

__all__ = ["auth_pb2", "kv_pb2", "lease_pb2", "rpc_pb2", "rpc_pb2_grpc"]
