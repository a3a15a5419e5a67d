"""The generated etcd stubs import as a package and keep etcd's wire numbering.

Field numbers are the contract with every etcd client; these spot checks pin the ones a typo would
most likely break (the reserved jump to 64 in Compare, events at 11 in WatchResponse, the enums).
The live round trip against a real etcd is in tests/client/test_client_etcd.py.
"""
from fastkv.api.etcdpb import auth_pb2, kv_pb2, rpc_pb2, rpc_pb2_grpc


def _num(msg, field):
    return msg.DESCRIPTOR.fields_by_name[field].number


def test_wire_numbers_match_etcd():
    assert _num(rpc_pb2.Compare, "range_end") == 64
    assert _num(rpc_pb2.Compare, "lease") == 8
    assert _num(rpc_pb2.WatchResponse, "events") == 11
    assert _num(rpc_pb2.RangeRequest, "max_create_revision") == 13
    assert _num(rpc_pb2.StatusResponse, "isLearner") == 10
    assert _num(kv_pb2.KeyValue, "lease") == 6
    assert _num(auth_pb2.Permission, "range_end") == 3
    assert rpc_pb2.Compare.NOT_EQUAL == 3 and rpc_pb2.Compare.LEASE == 4
    assert rpc_pb2.RangeRequest.DESCEND == 2 and rpc_pb2.RangeRequest.VALUE == 4
    assert kv_pb2.Event.DELETE == 1
    assert rpc_pb2.NOSPACE == 1 and rpc_pb2.CORRUPT == 2


def test_services_and_methods_are_etcds():
    services = rpc_pb2.DESCRIPTOR.services_by_name
    assert set(services) == {"KV", "Watch", "Lease", "Cluster", "Maintenance", "Auth"}
    assert [m.name for m in services["KV"].methods] == ["Range", "Put", "DeleteRange", "Txn", "Compact"]
    watch = services["Watch"].methods_by_name["Watch"]
    assert watch.client_streaming and watch.server_streaming
    assert services["Maintenance"].methods_by_name["Snapshot"].server_streaming
    assert hasattr(rpc_pb2_grpc, "KVStub") and hasattr(rpc_pb2_grpc, "add_KVServicer_to_server")


def test_encoding_is_canonical_protobuf():
    # field 1 (key) then field 2 (value), length-delimited: what etcd's gogoproto decoder expects.
    assert rpc_pb2.PutRequest(key=b"a", value=b"bc").SerializeToString() == b"\x0a\x01a\x12\x02bc"
