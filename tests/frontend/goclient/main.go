// Command goclient makes one fixed sequence of etcd v3 calls through etcd 3.4's own Go client
// (go.etcd.io/etcd/clientv3, on grpc-go) and prints the results as JSON on stdout.
// tests/frontend/test_go_clientv3.py builds it from Debian's golang-etcd-server-dev in GOPATH
// mode, runs it against fastkv and real etcd, and compares the two outputs. Everything that
// legitimately differs between two servers (cluster/member ids, raft terms, lease ids) is
// normalised here, and every revision is printed relative to the first write's revision.
//
// usage: goclient http://127.0.0.1:PORT
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"go.etcd.io/etcd/mvcc/mvccpb"
)

type obj = map[string]interface{}

type recorder struct {
	base   int64 // header revision of the first write
	leases map[clientv3.LeaseID]string
	steps  []interface{}
}

// rel prints a revision relative to the first write; 0 means "none" in etcd (a deleted key's
// create_revision) and stays distinct from the first write.
func (r *recorder) rel(rev int64) interface{} {
	if rev == 0 {
		return nil
	}
	return rev - r.base
}

func (r *recorder) lease(id int64) interface{} {
	if id == 0 {
		return 0
	}
	lid := clientv3.LeaseID(id)
	if name, ok := r.leases[lid]; ok {
		return name
	}
	name := fmt.Sprintf("lease%d", len(r.leases)+1)
	r.leases[lid] = name
	return name
}

func (r *recorder) header(h *pb.ResponseHeader) obj {
	if h == nil {
		return nil
	}
	return obj{"revision": r.rel(h.Revision)}
}

func (r *recorder) kv(kv *mvccpb.KeyValue) interface{} {
	if kv == nil {
		return nil
	}
	return obj{"key": string(kv.Key), "value": string(kv.Value), "create_revision": r.rel(kv.CreateRevision),
		"mod_revision": r.rel(kv.ModRevision), "version": kv.Version, "lease": r.lease(kv.Lease)}
}

func (r *recorder) kvs(kvs []*mvccpb.KeyValue) []interface{} {
	out := []interface{}{}
	for _, kv := range kvs {
		out = append(out, r.kv(kv))
	}
	return out
}

func (r *recorder) put(res *pb.PutResponse) obj {
	return obj{"header": r.header(res.Header), "prev_kv": r.kv(res.PrevKv)}
}

func (r *recorder) rangeResp(res *pb.RangeResponse) obj {
	return obj{"header": r.header(res.Header), "kvs": r.kvs(res.Kvs), "count": res.Count, "more": res.More}
}

func (r *recorder) deleteResp(res *pb.DeleteRangeResponse) obj {
	return obj{"header": r.header(res.Header), "deleted": res.Deleted, "prev_kvs": r.kvs(res.PrevKvs)}
}

func (r *recorder) txn(res *clientv3.TxnResponse) obj {
	responses := []interface{}{}
	for _, op := range res.Responses {
		switch {
		case op.GetResponsePut() != nil:
			responses = append(responses, obj{"put": r.put(op.GetResponsePut())})
		case op.GetResponseRange() != nil:
			responses = append(responses, obj{"range": r.rangeResp(op.GetResponseRange())})
		case op.GetResponseDeleteRange() != nil:
			responses = append(responses, obj{"delete": r.deleteResp(op.GetResponseDeleteRange())})
		default:
			responses = append(responses, obj{"other": fmt.Sprintf("%T", op.Response)})
		}
	}
	return obj{"header": r.header(res.Header), "succeeded": res.Succeeded, "responses": responses}
}

// step records the result of one call, or the gRPC code and etcd's text of its error.
func (r *recorder) step(name string, result func() (interface{}, error)) {
	value, err := result()
	if err != nil {
		if ee, ok := err.(rpctypes.EtcdError); ok {
			value = obj{"error": obj{"code": int(ee.Code()), "details": ee.Error()}}
		} else {
			value = obj{"error": obj{"code": nil, "details": err.Error()}}
		}
	}
	r.steps = append(r.steps, []interface{}{name, value})
}

// ctx gives each call its own deadline, so a server that never answers fails the run instead
// of hanging it.
func ctx() context.Context {
	c, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	cancels = append(cancels, cancel)
	return c
}

var cancels []context.CancelFunc

func run(cli *clientv3.Client) (*recorder, error) {
	r := &recorder{leases: map[clientv3.LeaseID]string{}}
	first, err := cli.Put(ctx(), "a/1", "v1")
	if err != nil {
		return nil, fmt.Errorf("first put: %w", err)
	}
	r.base = first.Header.Revision
	r.steps = append(r.steps, []interface{}{"put a/1", r.put((*pb.PutResponse)(first))})
	r.step("put a/2", func() (interface{}, error) {
		res, err := cli.Put(ctx(), "a/2", "v2")
		if err != nil {
			return nil, err
		}
		return r.put((*pb.PutResponse)(res)), nil
	})
	r.step("put b/1", func() (interface{}, error) {
		res, err := cli.Put(ctx(), "b/1", "x")
		if err != nil {
			return nil, err
		}
		return r.put((*pb.PutResponse)(res)), nil
	})
	get := func(key string, opts ...clientv3.OpOption) func() (interface{}, error) {
		return func() (interface{}, error) {
			res, err := cli.Get(ctx(), key, opts...)
			if err != nil {
				return nil, err
			}
			return r.rangeResp((*pb.RangeResponse)(res)), nil
		}
	}
	r.step("get prefix a/", get("a/", clientv3.WithPrefix()))
	r.step("get a/1 only", get("a/1"))
	r.step("get missing", get("zz"))
	r.step("count prefix a/", get("a/", clientv3.WithPrefix(), clientv3.WithCountOnly()))
	r.step("get prefix a/ limit 1", get("a/", clientv3.WithPrefix(), clientv3.WithLimit(1)))
	r.step("put a/1 again, previous value", func() (interface{}, error) {
		res, err := cli.Put(ctx(), "a/1", "v1b", clientv3.WithPrevKV())
		if err != nil {
			return nil, err
		}
		return r.put((*pb.PutResponse)(res)), nil
	})
	del := func(key string, opts ...clientv3.OpOption) func() (interface{}, error) {
		return func() (interface{}, error) {
			res, err := cli.Delete(ctx(), key, opts...)
			if err != nil {
				return nil, err
			}
			return r.deleteResp((*pb.DeleteRangeResponse)(res)), nil
		}
	}
	r.step("delete a/2", del("a/2", clientv3.WithPrevKV()))
	r.step("delete missing", del("nope"))
	r.step("txn value compare true", func() (interface{}, error) {
		res, err := cli.Txn(ctx()).
			If(clientv3.Compare(clientv3.Value("a/1"), "=", "v1b")).
			Then(clientv3.OpPut("a/3", "t"), clientv3.OpGet("a/", clientv3.WithPrefix())).
			Else(clientv3.OpGet("b/1")).
			Commit()
		if err != nil {
			return nil, err
		}
		return r.txn(res), nil
	})
	r.step("txn version compare false", func() (interface{}, error) {
		res, err := cli.Txn(ctx()).
			If(clientv3.Compare(clientv3.Version("a/1"), ">", 5), clientv3.Compare(clientv3.CreateRevision("b/1"), ">", 0)).
			Then(clientv3.OpPut("never", "1")).
			Else(clientv3.OpGet("b/1"), clientv3.OpDelete("b/1", clientv3.WithPrevKV())).
			Commit()
		if err != nil {
			return nil, err
		}
		return r.txn(res), nil
	})
	r.step("get after txns", get("", clientv3.WithFromKey()))

	var leaseID clientv3.LeaseID
	r.step("lease grant", func() (interface{}, error) {
		res, err := cli.Grant(ctx(), 60)
		if err != nil {
			return nil, err
		}
		leaseID = res.ID
		return obj{"ID": r.lease(int64(res.ID)), "TTL": res.TTL, "header": r.header(res.ResponseHeader)}, nil
	})
	r.step("put with lease", func() (interface{}, error) {
		res, err := cli.Put(ctx(), "l/1", "leased", clientv3.WithLease(leaseID))
		if err != nil {
			return nil, err
		}
		return r.put((*pb.PutResponse)(res)), nil
	})
	r.step("get leased key", get("l/1"))
	r.step("lease keepalive once", func() (interface{}, error) {
		res, err := cli.KeepAliveOnce(ctx(), leaseID)
		if err != nil {
			return nil, err
		}
		return obj{"ID": r.lease(int64(res.ID)), "TTL": res.TTL, "header": r.header(res.ResponseHeader)}, nil
	})
	r.step("lease time to live", func() (interface{}, error) {
		res, err := cli.TimeToLive(ctx(), leaseID, clientv3.WithAttachedKeys())
		if err != nil {
			return nil, err
		}
		keys := []string{}
		for _, k := range res.Keys {
			keys = append(keys, string(k))
		}
		// the remaining TTL ticks down in real time: only check that it is in range
		return obj{"ID": r.lease(int64(res.ID)), "grantedTTL": res.GrantedTTL, "ttl_in_range": res.TTL > 0 && res.TTL <= 60,
			"keys": keys, "header": r.header(res.ResponseHeader)}, nil
	})
	r.step("lease list", func() (interface{}, error) {
		res, err := cli.Leases(ctx())
		if err != nil {
			return nil, err
		}
		ids := []interface{}{}
		for _, l := range res.Leases {
			ids = append(ids, r.lease(int64(l.ID)))
		}
		return obj{"leases": ids, "header": r.header(res.ResponseHeader)}, nil
	})
	r.step("lease revoke", func() (interface{}, error) {
		res, err := cli.Revoke(ctx(), leaseID)
		if err != nil {
			return nil, err
		}
		return obj{"header": r.header(res.Header)}, nil
	})
	r.step("get leased key after revoke", get("l/1"))
	r.step("revoke unknown lease", func() (interface{}, error) {
		res, err := cli.Revoke(ctx(), clientv3.LeaseID(12345))
		if err != nil {
			return nil, err
		}
		return obj{"header": r.header(res.Header)}, nil
	})
	r.step("time to live of revoked lease", func() (interface{}, error) {
		res, err := cli.TimeToLive(ctx(), leaseID)
		if err != nil {
			return nil, err
		}
		return obj{"ID": r.lease(int64(res.ID)), "TTL": res.TTL, "grantedTTL": res.GrantedTTL}, nil
	})

	// A watch from the next revision on the prefix w/ with previous values: the events of three
	// writes must arrive, in order, with the same revisions.
	r.step("watch", func() (interface{}, error) {
		now, err := cli.Get(ctx(), "w/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return nil, err
		}
		wctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		wch := cli.Watch(wctx, "w/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(now.Header.Revision+1))
		for _, op := range []clientv3.Op{clientv3.OpPut("w/1", "one"), clientv3.OpPut("w/1", "two"),
			clientv3.OpPut("other", "not watched"), clientv3.OpDelete("w/1")} {
			if _, err := cli.Do(ctx(), op); err != nil {
				return nil, err
			}
		}
		events := []interface{}{}
		for len(events) < 3 {
			res, ok := <-wch
			if !ok {
				return nil, fmt.Errorf("watch channel closed after %d of 3 events", len(events))
			}
			if err := res.Err(); err != nil {
				return nil, err
			}
			for _, ev := range res.Events {
				events = append(events, obj{"type": ev.Type.String(), "kv": r.kv(ev.Kv), "prev_kv": r.kv(ev.PrevKv)})
			}
		}
		return obj{"events": events}, nil
	})

	r.step("compact", func() (interface{}, error) {
		res, err := cli.Compact(ctx(), r.base+3, clientv3.WithCompactPhysical())
		if err != nil {
			return nil, err
		}
		return obj{"header": r.header(res.Header)}, nil
	})
	r.step("get compacted revision", get("a/1", clientv3.WithRev(r.base)))
	r.step("get future revision", get("a/1", clientv3.WithRev(1000)))
	r.step("put empty key", func() (interface{}, error) {
		res, err := cli.Put(ctx(), "", "x")
		if err != nil {
			return nil, err
		}
		return r.put((*pb.PutResponse)(res)), nil
	})
	r.step("txn duplicate key", func() (interface{}, error) {
		res, err := cli.Txn(ctx()).Then(clientv3.OpPut("d", "1"), clientv3.OpPut("d", "2")).Commit()
		if err != nil {
			return nil, err
		}
		return r.txn(res), nil
	})
	r.step("watch compacted revision", func() (interface{}, error) {
		wctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		res, ok := <-cli.Watch(wctx, "a/", clientv3.WithPrefix(), clientv3.WithRev(r.base))
		if !ok {
			return nil, fmt.Errorf("watch channel closed without a response")
		}
		return obj{"canceled": res.Canceled, "compact_revision": r.rel(res.CompactRevision), "err": fmt.Sprint(res.Err())}, nil
	})
	r.step("get final", get("", clientv3.WithFromKey()))
	return r, nil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: goclient http://127.0.0.1:PORT")
		os.Exit(2)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, DialTimeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	defer cli.Close()
	r, err := run(cli)
	for _, cancel := range cancels {
		cancel()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sequence failed:", err)
		os.Exit(1)
	}
	out, err := json.MarshalIndent(r.steps, "", " ")
	if err != nil {
		fmt.Fprintln(os.Stderr, "encode:", err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
