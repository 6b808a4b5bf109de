#!/usr/bin/env node
// A third-party LwM2M 1.0 client (npm lwm2m-node-lib 1.4.0) for the interop
// tests: registers with /rd, exposes Objects 3 and 5 (text values only, the
// library has no TLV/SenML and no queue mode), prints one JSON line per
// thing that happens on stdout, and de-registers when stdin closes.
//
// usage: node client.js HOST PORT ENDPOINT [VERSION [NEW_VERSION]] [--update] [--exit]
//   --update  sends one registration update right after registering
//   --exit    de-registers and exits right after that (for recording)

'use strict';

const lwm2m = require('lwm2m-node-lib');
const client = lwm2m.client;
const registry = client.registry;
require('logops').setLevel('FATAL');

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const flags = new Set(process.argv.slice(2).filter((a) => a.startsWith('--')));
const [host, port, endpoint] = args;
const version = args[3] || '1.0.0';
const newVersion = args[4] || version;
if (!host || !port || !endpoint) {
  console.error('usage: node client.js HOST PORT ENDPOINT [VERSION] [--update] [--exit]');
  process.exit(2);
}

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function fail(what, error) {
  emit({ event: 'error', what, error: String(error && (error.message || error.name || error)) });
  process.exit(1);
}

const config = {
  lifetime: '300',
  version: '1.0',
  logLevel: 'FATAL',
  observe: { period: 3000 },
  ipProtocol: 'udp4',
  serverProtocol: 'udp4',
  formats: [{ name: 'lightweightm2m/text', value: 1541 }],
  writeFormat: 'lightweightm2m/text',
};

function setup(callback) {
  const steps = [
    (cb) => registry.create('/3/0', cb),
    (cb) => registry.setResource('/3/0', '0', 'lwm2m-node-lib', cb),
    (cb) => registry.setResource('/3/0', '1', 'interop', cb),
    (cb) => registry.setResource('/3/0', '3', version, cb),
    (cb) => registry.create('/5/0', cb),
    (cb) => registry.setResource('/5/0', '1', '', cb),
    (cb) => registry.setResource('/5/0', '3', '0', cb),
    (cb) => registry.setResource('/5/0', '5', '0', cb),
    (cb) => registry.setResource('/5/0', '9', '0', cb),
  ];
  let i = 0;
  const next = (error) => {
    if (error) return callback(error);
    if (i === steps.length) return callback(null);
    steps[i++](next);
  };
  next(null);
}

client.init({ client: config });
setup((error) => {
  if (error) fail('setup', error);
  client.register(host, port, null, endpoint, (error, device) => {
    if (error) fail('register', error);
    emit({ event: 'registered', location: device.location, port: device.localPort });

    // Object 5 as a state machine on the library's registry (observers of
    // /5/0/3 and /5/0/5 are notified by the library on every change). The
    // library has no Block2 client, so the "download" is only pretended.
    const set = (id, value) => registry.setResource('/5/0', id, String(value), () => {});
    client.setHandler(device.serverInfo, 'write', (objectType, objectId, resourceId, value, cb) => {
      const uri = `/${objectType}/${objectId}/${resourceId}`;
      emit({ event: 'write', uri, value: String(value) });
      cb(null);
      if (uri === '/5/0/1' && String(value) !== '') {
        setTimeout(() => set('3', 1), 100);
        setTimeout(() => set('3', 2), 300);
      }
    });
    client.setHandler(device.serverInfo, 'execute', (objectType, objectId, resourceId, value, cb) => {
      const uri = `/${objectType}/${objectId}/${resourceId}`;
      emit({ event: 'execute', uri });
      cb(null);
      if (uri === '/5/0/2') {
        setTimeout(() => set('3', 3), 100);
        setTimeout(() => {
          registry.setResource('/3/0', '3', newVersion, () => {});
          set('3', 0);
          set('5', 1);
          emit({ event: 'installed', version: newVersion });
        }, 400);
      }
    });
    client.setHandler(device.serverInfo, 'read', (objectType, objectId, resourceId, value, cb) => {
      emit({ event: 'read', uri: `/${objectType}/${objectId}/${resourceId}` });
      cb(null, value);
    });

    const bye = () => {
      client.unregister(device, (error) => {
        emit({ event: error ? 'error' : 'deregistered', what: 'unregister' });
        process.exit(error ? 1 : 0);
      });
    };
    const afterUpdate = () => {
      if (flags.has('--exit')) bye();
      else process.stdin.on('end', bye).resume();
    };
    if (flags.has('--update')) {
      client.update(device, (error) => {
        if (error) fail('update', error);
        emit({ event: 'updated' });
        afterUpdate();
      });
    } else {
      afterUpdate();
    }
  });
});
