// One fixed sequence of etcd v3 calls made through the `etcd3` npm client (built on @grpc/grpc-js),
// printed as JSON on stdout. tests/frontend/test_grpc_js_client.py runs it against fastkv and real
// etcd and compares the two outputs, so everything that legitimately differs between two servers
// (cluster/member ids, raft terms, lease ids) is normalised here, and every revision is printed
// relative to the first write's revision.
//
// usage: node sequence.js http://127.0.0.1:PORT   (NODE_PATH must reach the etcd3 package)
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { Etcd3 } = require('etcd3');

const endpoint = process.argv[2];
const client = new Etcd3({ hosts: endpoint, dialTimeout: 10000 });

let base = null; // header revision of the first write
const leaseIds = new Map(); // lease id (decimal string) -> stable name

const REVISION_FIELDS = new Set(['revision', 'create_revision', 'mod_revision', 'compact_revision']);
const DROPPED_FIELDS = new Set(['cluster_id', 'member_id', 'raft_term']);

// 0 means "none" in etcd (a deleted key's create_revision), so it stays distinct from the first write.
function rel(rev) {
  return String(rev) === '0' ? null : Number(BigInt(rev) - BigInt(base));
}

function leaseName(id) {
  const key = String(id);
  if (key === '0') return 0;
  if (!leaseIds.has(key)) leaseIds.set(key, `lease${leaseIds.size + 1}`);
  return leaseIds.get(key);
}

// Recursively turn a decoded protobuf message (proto-loader: keepCase, longs as strings, bytes as
// Buffer, defaults filled in) into comparable JSON.
function norm(value, field) {
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  if (Array.isArray(value)) return value.map((v) => norm(v, field));
  if (value !== null && typeof value === 'object') {
    const out = {};
    for (const k of Object.keys(value).sort()) {
      if (DROPPED_FIELDS.has(k)) continue;
      out[k] = norm(value[k], k);
    }
    return out;
  }
  if (REVISION_FIELDS.has(field) && value !== undefined) {
    return rel(value);
  }
  if (field === 'lease' || field === 'ID') return leaseName(value);
  return value;
}

function errorResult(err) {
  // A grpc-js ServiceError carries the gRPC status code and the server's text in `details`.
  if (err.details !== undefined) return { error: { code: err.code, details: err.details } };
  return { error: { code: null, details: String(err.message) } };
}

async function step(out, name, fn) {
  try {
    out.push([name, norm(await fn())]);
  } catch (err) {
    out.push([name, errorResult(err)]);
  }
}

// etcd3 rewrites gRPC errors into its own classes and drops the status code, so calls whose error
// is under test go through plain grpc-js stubs made from the etcd protos etcd3 ships.
const protoFile = path.join(path.dirname(require.resolve('etcd3/package.json')), 'proto', 'rpc.proto');
const etcdserverpb = grpc.loadPackageDefinition(protoLoader.loadSync(protoFile, {
  keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
})).etcdserverpb;
const target = endpoint.replace(/^https?:\/\//, '');
const rawKvStub = new etcdserverpb.KV(target, grpc.credentials.createInsecure());
const rawLeaseStub = new etcdserverpb.Lease(target, grpc.credentials.createInsecure());

function unary(stub, method, request) {
  return new Promise((resolve, reject) => {
    stub[method](request, { deadline: Date.now() + 15000 }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

async function main() {
  const out = [];
  const first = await client.put('a/1').value('v1').exec();
  base = first.header.revision;
  out.push(['put a/1', norm(first)]);
  await step(out, 'put a/2', () => client.put('a/2').value('v2').exec());
  await step(out, 'put b/1', () => client.put('b/1').value('x').exec());
  await step(out, 'get prefix a/', () => client.getAll().prefix('a/').exec());
  await step(out, 'get a/1 only', () => client.get('a/1').exec());
  await step(out, 'get missing', () => client.get('zz').exec());
  await step(out, 'put a/1 again, previous value', () => client.put('a/1').value('v1b').getPrevious());
  await step(out, 'delete a/2', () => client.delete().key('a/2').exec());
  await step(out, 'delete missing', () => client.delete().key('nope').exec());
  await step(out, 'txn value compare true', () =>
    client.if('a/1', 'Value', '==', 'v1b')
      .then(client.put('a/3').value('t'), client.getAll().prefix('a/'))
      .else(client.get('b/1'))
      .commit());
  await step(out, 'txn version compare false', () =>
    client.if('a/1', 'Version', '>', 5)
      .then(client.put('never').value('1'))
      .else(client.get('b/1'), client.delete().key('b/1'))
      .commit());
  await step(out, 'get after txns', () => client.getAll().prefix('').exec());

  const lease = client.lease(60, { autoKeepAlive: false });
  await step(out, 'lease grant', async () => ({ ID: await lease.grant() }));
  await step(out, 'put with lease', () => lease.put('l/1').value('leased').exec());
  await step(out, 'get leased key', () => client.get('l/1').exec());
  await step(out, 'lease keepalive once', async () => {
    const res = await lease.keepaliveOnce();
    return { ID: res.ID, TTL: res.TTL, header: res.header };
  });
  await step(out, 'lease time to live', async () => {
    const res = await client.leaseClient.leaseTimeToLive({ ID: await lease.grant(), keys: true });
    // the remaining TTL ticks down in real time: only check that it is in range
    return { ID: res.ID, grantedTTL: res.grantedTTL, ttl_in_range: Number(res.TTL) > 0 && Number(res.TTL) <= 60,
      keys: res.keys, header: res.header };
  });
  await step(out, 'lease revoke', async () => { await lease.revoke(); return { revoked: true }; });
  await step(out, 'get leased key after revoke', () => client.get('l/1').exec());
  await step(out, 'revoke unknown lease', () => unary(rawLeaseStub, 'LeaseRevoke', { ID: '12345' }));

  // A watch from the next revision on the prefix w/ with previous values; the events of three
  // writes must arrive, in order, with the same revisions.
  await step(out, 'watch', async () => {
    const events = [];
    const watcher = await client.watch().prefix('w/').withPreviousKV().create();
    const done = new Promise((resolve, reject) => {
      watcher.on('data', (res) => {
        for (const ev of res.events) events.push(ev);
        if (events.length >= 3) resolve();
      });
      watcher.on('error', reject);
      setTimeout(() => reject(new Error(`watch saw ${events.length} of 3 events in 20 s`)), 20000);
    });
    await client.put('w/1').value('one').exec();
    await client.put('w/1').value('two').exec();
    await client.put('other').value('not watched').exec();
    await client.delete().key('w/1').exec();
    await done;
    await watcher.cancel();
    return { events };
  });

  await step(out, 'compact', () => unary(rawKvStub, 'Compact', { revision: String(BigInt(base) + 3n), physical: true }));
  await step(out, 'get compacted revision', () => unary(rawKvStub, 'Range', { key: Buffer.from('a/1'), revision: base }));
  await step(out, 'get future revision', () => unary(rawKvStub, 'Range', { key: Buffer.from('a/1'), revision: '1000' }));
  await step(out, 'put empty key', () => unary(rawKvStub, 'Put', { key: Buffer.alloc(0), value: Buffer.from('x') }));
  await step(out, 'txn duplicate key', () => unary(rawKvStub, 'Txn', {
    success: [
      { request_put: { key: Buffer.from('d'), value: Buffer.from('1') } },
      { request_put: { key: Buffer.from('d'), value: Buffer.from('2') } },
    ],
  }));
  await step(out, 'get final', () => client.getAll().prefix('').exec());

  process.stdout.write(JSON.stringify(out, null, 1) + '\n');
}

main().then(
  () => { client.close(); process.exit(0); },
  (err) => {
    process.stderr.write(`sequence failed: ${(err && err.stack) || err}\n`);
    process.exit(1);
  },
);
