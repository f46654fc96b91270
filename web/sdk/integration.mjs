// The SDK against the real server (run by tests/api/browser.rs, which starts
// the server and passes PARLEY_URL, ALICE_TOKEN, BOB_TOKEN and CONVERSATION).
// Node has no WebSocket or EventSource of its own here, so the clients use
// the long-poll transport: tickets, the poll loop, sync, sends and the outbox
// are the same code a browser runs.
import assert from 'node:assert/strict';

import { MemoryStore, ParleyClient } from './parley.js';

const { PARLEY_URL, ALICE_TOKEN, BOB_TOKEN, CONVERSATION } = process.env;

/** A fetch that fails while `offline` is set, as a browser's does. */
function network() {
  const state = { offline: false };
  state.fetch = (url, init) =>
    state.offline ? Promise.reject(new TypeError('Failed to fetch')) : fetch(url, init);
  return state;
}

function client(token, net) {
  return new ParleyClient({
    baseUrl: PARLEY_URL,
    getToken: async () => token,
    transport: 'poll',
    env: { fetch: net.fetch, store: new MemoryStore() },
  });
}

/** Resolves once `done()` holds, checking on each event of `type`. */
function until(target, type, done, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), 15_000);
    const check = () => {
      if (done()) {
        clearTimeout(timer);
        target.removeEventListener(type, check);
        resolve();
      }
    };
    target.addEventListener(type, check);
    check();
  });
}

const aliceNet = network();
const alice = client(ALICE_TOKEN, aliceNet);
const bob = client(BOB_TOKEN, network());
const received = [];
bob.addEventListener('message', (e) => received.push(e.detail));
const opened = (c) => until(c, 'status', () => c.status === 'open', 'the connection');
await Promise.all([alice.start(), bob.start()]);
await Promise.all([opened(alice), opened(bob)]);
await bob.open(CONVERSATION);

// Live: three messages, each received once, in order.
for (const text of ['one', 'two', 'three']) await alice.send(CONVERSATION, text);
await until(bob, 'message', () => received.length >= 3, 'three messages');

// Offline: a message written meanwhile waits in the outbox and goes out
// once, with its original clientMessageId, when the network is back.
aliceNet.offline = true;
const offline = await alice.send(CONVERSATION, 'written offline');
await new Promise((r) => setTimeout(r, 300));
assert.equal(offline.status, 'sending', 'kept while offline');
aliceNet.offline = false;
await until(bob, 'message', () => received.some((m) => m.body === 'written offline'), 'the offline message');
await new Promise((r) => setTimeout(r, 500));

const bodies = received.map((m) => m.body);
assert.deepEqual(bodies, ['one', 'two', 'three', 'written offline'], 'each exactly once, in order');
assert.equal(received.at(-1).clientMessageId, offline.clientMessageId);
assert.deepEqual(received.map((m) => m.seq), [1, 2, 3, 4]);
alice.close();
bob.close();
console.log('sdk integration: ok');
process.exit(0);
