// Command goload is one worker process of `fastkv bench --generator go`: its share of the
// clients, connections and requests of a put, range or txn-put run, sent through etcd 3.4's own
// Go client (go.etcd.io/etcd/clientv3 on grpc-go), the client etcd's tools/benchmark uses.
//
// fastkv/bench/_goload.py builds it in GOPATH mode from Debian's golang-etcd-server-dev and
// drives it. Protocol, one JSON object per line:
//
//	stdin:  the worker's parameters (the dict fastkv.bench._loadgen.plan makes for one worker),
//	        then, once this worker has said it is ready, the line "go".
//	stdout: {"kind":"ready"} after every connection is up and the range key space is filled;
//	        {"kind":"progress","done":N} about every 100 ms during the run;
//	        {"kind":"result",...} with the same fields as a Python worker's result (lat is the
//	        base64 of little-endian float64 latencies in seconds, as array("d").tobytes());
//	        {"kind":"error","message":...} instead, when the worker cannot run.
//
// Each client is a goroutine with one request in flight at a time; the connections are
// clientv3.Client instances that the clients share round-robin (client c uses connection
// c mod conns), as in etcd's tools/benchmark.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	"go.etcd.io/etcd/pkg/transport"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	timelineS      = 0.1 // width of one throughput-over-time bucket, as TIMELINE_S in Python
	connectTimeout = 15 * time.Second
	prefillWorkers = 32
)

type tlsFiles struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

type params struct {
	Workload    string    `json:"workload"`
	Endpoints   []string  `json:"endpoints"`
	Worker      int       `json:"worker"`
	Procs       int       `json:"procs"`
	Conns       int       `json:"conns"`
	Clients     int       `json:"clients"`
	Total       int       `json:"total"`
	Rate        float64   `json:"rate"`
	KeySize     int       `json:"key_size"`
	ValSize     int       `json:"val_size"`
	KeySpace    int       `json:"key_space"`
	Sequential  bool      `json:"sequential"`
	Seed        int64     `json:"seed"`
	Timeout     float64   `json:"timeout"`
	Consistency string    `json:"consistency"`
	TxnOps      int       `json:"txn_ops"`
	Prefill     bool      `json:"prefill"`
	User        string    `json:"user"`
	TLS         *tlsFiles `json:"tls"`
}

var out = json.NewEncoder(os.Stdout)
var outMu sync.Mutex

func emit(v map[string]interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	if err := out.Encode(v); err != nil {
		os.Exit(3) // the parent has gone; nothing left to report to
	}
}

func fail(format string, args ...interface{}) {
	emit(map[string]interface{}{"kind": "error", "message": fmt.Sprintf(format, args...)})
	os.Exit(1)
}

// monotonic reads CLOCK_MONOTONIC, the clock behind Python's time.monotonic(), so that t0/t_end
// of Go and Python workers and of the parent are on one time line.
func monotonic() float64 {
	var ts syscall.Timespec
	const clockMonotonic = 1
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockMonotonic, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		fail("clock_gettime(CLOCK_MONOTONIC): %v", e)
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

// cpuSeconds is user+sys CPU of this whole process (every goroutine and thread).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		fail("getrusage: %v", err)
	}
	return float64(ru.Utime.Sec) + float64(ru.Utime.Usec)/1e6 + float64(ru.Stime.Sec) + float64(ru.Stime.Usec)/1e6
}

// key is key number idx as a zero-padded decimal of exactly size bytes (fastkv.bench key_bytes).
func key(idx, size int) string {
	return fmt.Sprintf("%0*d", size, idx)
}

// codeName spells a gRPC code as Python's grpc.StatusCode names do (UNAVAILABLE, DEADLINE_EXCEEDED),
// so errors from both generators fall into the same buckets.
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	s := strings.ToUpper(b.String())
	if s == "CANCELED" {
		return "CANCELLED"
	}
	return s
}

func classify(err error) (string, string) {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return codeName(ee.Code()), ee.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "DEADLINE_EXCEEDED", err.Error()
	}
	if s, ok := status.FromError(err); ok {
		return codeName(s.Code()), s.Message()
	}
	return "CLIENT_" + fmt.Sprintf("%T", err), err.Error()
}

// recorder holds one client's tallies; they are merged after the run so the request path takes no lock.
type recorder struct {
	lat      []float64
	timeline []int64
	errors   map[string]int
	samples  map[string]string
}

func newRecorder(n int) *recorder {
	return &recorder{lat: make([]float64, 0, n), errors: map[string]int{}, samples: map[string]string{}}
}

func (r *recorder) success(t0, start, end float64) {
	r.lat = append(r.lat, end-start)
	b := int((end - t0) / timelineS)
	for len(r.timeline) <= b {
		r.timeline = append(r.timeline, 0)
	}
	r.timeline[b]++
}

func (r *recorder) failure(err error) {
	code, detail := classify(err)
	r.errors[code]++
	if _, ok := r.samples[code]; !ok {
		if len(detail) > 200 {
			detail = detail[:200]
		}
		r.samples[code] = detail
	}
}

func connect(p *params) []*clientv3.Client {
	var tlsConfig *tls.Config
	if p.TLS != nil {
		info := transport.TLSInfo{TrustedCAFile: p.TLS.CA, CertFile: p.TLS.Cert, KeyFile: p.TLS.Key}
		c, err := info.ClientConfig()
		if err != nil {
			fail("TLS files: %v", err)
		}
		tlsConfig = c
	}
	name, password := "", ""
	if p.User != "" {
		i := strings.IndexByte(p.User, ':')
		if i < 0 {
			fail("user must be NAME:PASSWORD")
		}
		name, password = p.User[:i], p.User[i+1:]
	}
	conns := make([]*clientv3.Client, p.Conns)
	for j := range conns {
		ep := p.Endpoints[(p.Worker*p.Conns+j)%len(p.Endpoints)]
		c, err := clientv3.New(clientv3.Config{
			Endpoints: []string{ep}, DialTimeout: connectTimeout, TLS: tlsConfig,
			Username: name, Password: password,
			DialOptions: []grpc.DialOption{grpc.WithBlock()},
		})
		if err != nil {
			fail("could not connect to %s within %v (is an etcd v3 server listening there?): %v", ep, connectTimeout, err)
		}
		conns[j] = c
	}
	return conns
}

func prefill(p *params, conn *clientv3.Client) {
	value := strings.Repeat("v", p.ValSize)
	idxs := make(chan int)
	errc := make(chan error, prefillWorkers)
	var wg sync.WaitGroup
	for w := 0; w < prefillWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for idx := range idxs {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(p.Timeout*float64(time.Second)))
				_, err := conn.Put(ctx, key(idx, p.KeySize), value)
				cancel()
				if err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	for idx := p.Worker; idx < p.KeySpace; idx += p.Procs {
		idxs <- idx
	}
	close(idxs)
	wg.Wait()
	select {
	case err := <-errc:
		fail("prefill of the range key space failed: %v", err)
	default:
	}
}

// requestOp builds the i-th request of this worker; keys are chosen before the run starts.
func requestOps(p *params) func(i int) clientv3.Op {
	rng := rand.New(rand.NewSource(p.Seed*7919 + int64(p.Worker)))
	idx := make([]int, p.Total)
	for i := range idx {
		if p.Sequential {
			idx[i] = (p.Worker + i*p.Procs) % p.KeySpace
		} else {
			idx[i] = rng.Intn(p.KeySpace)
		}
	}
	raw := make([]byte, p.ValSize/2+1)
	rng.Read(raw)
	value := hex.EncodeToString(raw)[:p.ValSize]
	switch p.Workload {
	case "put":
		return func(i int) clientv3.Op { return clientv3.OpPut(key(idx[i], p.KeySize), value) }
	case "range":
		var opts []clientv3.OpOption
		if p.Consistency == "s" {
			opts = append(opts, clientv3.WithSerializable())
		}
		return func(i int) clientv3.Op { return clientv3.OpGet(key(idx[i], p.KeySize), opts...) }
	case "txn-put":
		return func(i int) clientv3.Op {
			ops := make([]clientv3.Op, p.TxnOps)
			for j := range ops {
				ops[j] = clientv3.OpPut(key((idx[i]+j)%p.KeySpace, p.KeySize), value)
			}
			return clientv3.OpTxn(nil, ops, nil)
		}
	}
	fail("the Go generator runs put, range and txn-put, not %q", p.Workload)
	return nil
}

func main() {
	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadBytes('\n')
	if err != nil && len(line) == 0 {
		fail("no parameters on stdin: %v", err)
	}
	var p params
	if err := json.Unmarshal(line, &p); err != nil {
		fail("bad parameters: %v", err)
	}
	if p.Conns < 1 || p.Clients < 1 || len(p.Endpoints) == 0 || p.KeySpace < 1 || p.Procs < 1 {
		fail("conns, clients, key_space, procs must be >= 1 and endpoints not empty")
	}
	if p.Workload == "txn-put" && p.TxnOps < 1 {
		p.TxnOps = 1
	}
	makeOp := requestOps(&p)
	conns := connect(&p)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if p.Workload == "range" && p.Prefill {
		prefill(&p, conns[0])
	}
	emit(map[string]interface{}{"kind": "ready"})
	if cmd, err := in.ReadString('\n'); err != nil || strings.TrimSpace(cmd) != "go" {
		fail("expected \"go\" on stdin, got %q (%v)", cmd, err)
	}

	cpu0 := cpuSeconds()
	t0 := monotonic()
	wall0 := time.Now()
	// seconds since t0 on CLOCK_MONOTONIC; Go's time.Since is monotonic and cheaper than a syscall
	now := func() float64 { return t0 + time.Since(wall0).Seconds() }
	timeout := time.Duration(p.Timeout * float64(time.Second))

	type ticket struct {
		i     int
		start float64
	}
	var tickets chan ticket
	var next int64 = -1
	if p.Rate > 0 {
		// open loop: a pacer releases each request at t0 + i/rate; latency counts from that time,
		// so a request that waits for a free client is charged for the wait
		tickets = make(chan ticket, 1<<16)
		go func() {
			for i := 0; i < p.Total; i++ {
				due := float64(i) / p.Rate
				// never release early on the clock that times the requests (end - start >= 0)
				for d := due - time.Since(wall0).Seconds(); d > 0; d = due - time.Since(wall0).Seconds() {
					time.Sleep(time.Duration(d*float64(time.Second)) + time.Microsecond)
				}
				tickets <- ticket{i, t0 + due}
			}
			close(tickets)
		}()
	}
	var done int64
	stopProgress := make(chan struct{})
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopProgress:
				return
			case <-tick.C:
				emit(map[string]interface{}{"kind": "progress", "done": atomic.LoadInt64(&done)})
			}
		}
	}()

	recs := make([]*recorder, p.Clients)
	var wg sync.WaitGroup
	for c := 0; c < p.Clients; c++ {
		rec := newRecorder(p.Total/p.Clients + 1)
		recs[c] = rec
		conn := conns[c%len(conns)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var i int
				var start float64
				if tickets != nil {
					t, ok := <-tickets
					if !ok {
						return
					}
					i, start = t.i, t.start
				} else {
					i = int(atomic.AddInt64(&next, 1))
					if i >= p.Total {
						return
					}
				}
				op := makeOp(i)
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				if tickets == nil {
					start = now()
				}
				_, err := conn.Do(ctx, op)
				end := now()
				cancel()
				if err != nil {
					rec.failure(err)
				} else {
					rec.success(t0, start, end)
				}
				atomic.AddInt64(&done, 1)
			}
		}()
	}
	wg.Wait()
	tEnd := now()
	cpu := cpuSeconds() - cpu0
	close(stopProgress)

	var lat []float64
	var timeline []int64
	errs := map[string]int{}
	samples := map[string]string{}
	for _, r := range recs {
		lat = append(lat, r.lat...)
		for len(timeline) < len(r.timeline) {
			timeline = append(timeline, 0)
		}
		for b, n := range r.timeline {
			timeline[b] += n
		}
		for code, n := range r.errors {
			errs[code] += n
			if _, ok := samples[code]; !ok {
				samples[code] = r.samples[code]
			}
		}
	}
	buf := make([]byte, 8*len(lat))
	for k, v := range lat {
		binary.LittleEndian.PutUint64(buf[8*k:], math.Float64bits(v))
	}
	if timeline == nil {
		timeline = []int64{}
	}
	emit(map[string]interface{}{
		"kind": "result", "lat": base64.StdEncoding.EncodeToString(buf), "errors": errs, "samples": samples,
		"ok": len(lat), "timeline": timeline, "t0": t0, "t_end": tEnd, "cpu_s": cpu,
	})
}
