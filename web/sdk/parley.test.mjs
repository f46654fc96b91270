// Unit tests of the SDK against fake transports: `node --test web/sdk/`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Backoff, MemoryStore, ParleyClient, SEND_ATTEMPTS, SeqTracker } from './parley.js';

/** A fake server: REST answers by route, and the sockets the client opened. */
function fakeEnv({ routes = {}, failWebSocket = false } = {}) {
  const calls = [];
  const sockets = [];
  const timers = [];
  class FakeSocket {
    constructor(url) {
      this.url = url;
      this.sent = [];
      this.readyState = 0;
      sockets.push(this);
      queueMicrotask(() => {
        if (failWebSocket) {
          this.onclose?.({ code: 1006 });
        } else {
          this.readyState = 1;
          this.onopen?.();
        }
      });
    }
    send(text) {
      this.sent.push(JSON.parse(text));
    }
    close() {
      this.readyState = 3;
    }
    push(envelope) {
      this.onmessage?.({ data: JSON.stringify(envelope) });
    }
  }
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      sockets.push(this);
      queueMicrotask(() => this.onopen?.());
    }
    close() {}
    push(envelope) {
      this.onmessage?.({ data: JSON.stringify(envelope) });
    }
  }
  const fetch = async (url, init = {}) => {
    const path = url.replace('http://parley.test', '');
    calls.push({ method: init.method ?? 'GET', path, body: init.body && JSON.parse(init.body) });
    const key = `${init.method ?? 'GET'} ${path.split('?')[0]}`;
    const route = routes[key] ?? routes[`${init.method ?? 'GET'} *`];
    let answer = route ? await route(path, init.body && JSON.parse(init.body)) : [200, {}];
    if (answer instanceof Error) throw answer;
    const [status, body] = answer;
    return {
      status,
      ok: status < 400,
      headers: { get: () => null },
      text: async () => JSON.stringify(body),
      json: async () => body,
    };
  };
  const env = {
    fetch,
    WebSocket: FakeSocket,
    EventSource: FakeEventSource,
    setTimeout: (fn, ms) => {
      timers.push({ fn, ms });
      return timers.length;
    },
    clearTimeout: () => {},
    random: () => 0.5,
    store: new MemoryStore(),
  };
  const runTimers = async () => {
    for (const { fn, ms } of timers.splice(0)) if (ms < 20_000) await fn();
  };
  return { env, calls, sockets, runTimers };
}

const settle = () => new Promise((r) => setTimeout(r, 5));

const baseRoutes = (extra = {}) => ({
  'POST /realtime/ticket': () => [200, { ticket: 't-1' }],
  'GET /chat/sync': () => [200, { items: [], removed: [], cursor: 't9', hasMore: false }],
  ...extra,
});

function client(env) {
  return new ParleyClient({ baseUrl: 'http://parley.test', getToken: async () => 'jwt', env });
}

const message = (seq, extra = {}) => ({
  id: `m${seq}`,
  conversationId: 'c1',
  seq,
  senderId: 'bob',
  body: `#${seq}`,
  clientMessageId: `bob-${seq}`,
  ...extra,
});

function collect(target, type) {
  const seen = [];
  target.addEventListener(type, (e) => seen.push(e.detail));
  return seen;
}

test('backoff grows exponentially with full jitter and a cap', () => {
  const b = new Backoff({ base: 100, cap: 1000, random: () => 0.999 });
  const delays = Array.from({ length: 6 }, () => b.next());
  assert.deepEqual(delays, [99, 199, 399, 799, 999, 999]);
  b.reset();
  assert.equal(new Backoff({ random: () => 0 }).next(), 0, 'full jitter reaches zero');
});

test('seq tracking applies the next, ignores duplicates and flags gaps', () => {
  const t = new SeqTracker();
  assert.equal(t.classify(message(1)), 'apply');
  t.settle('c1', 1);
  assert.equal(t.classify(message(1)), 'duplicate');
  assert.equal(t.classify(message(3)), 'gap');
});

test('connects with a ticket, syncs, and fills a gap from history', async () => {
  const { env, calls, sockets } = fakeEnv({
    routes: baseRoutes({
      'GET /chat/conversations/c1/messages': (path) =>
        path.includes('after=1')
          ? [200, { items: [message(2), message(3)], hasMore: false }]
          : [200, { items: [message(1)], hasMore: false }],
    }),
  });
  const c = client(env);
  const shown = collect(c, 'message');
  await c.start();
  await settle();
  assert.match(sockets[0].url, /^ws:\/\/parley\.test\/ws\?ticket=t-1$/);
  assert.ok(calls.some((x) => x.path === '/chat/sync'), 'synced on connect');
  await c.open('c1');
  sockets[0].push({ type: 'message.created', data: message(3) });
  await settle();
  sockets[0].push({ type: 'message.created', data: message(3) });
  sockets[0].push({ type: 'message.created', data: message(2) });
  await settle();
  assert.deepEqual(shown.map((m) => m.seq), [2, 3], 'the gap filled, each once, in order');
});

test('the answer and the message.created of a send arrive in either order: shown once', async () => {
  for (const eventFirst of [true, false]) {
    let release;
    const answered = new Promise((r) => (release = r));
    const { env, sockets } = fakeEnv({
      routes: baseRoutes({
        'POST /chat/conversations/c1/messages': async (_, body) => {
          await answered;
          return [201, message(1, { senderId: 'me', clientMessageId: body.clientMessageId })];
        },
        'GET /chat/conversations/c1/messages': () => [200, { items: [], hasMore: false }],
      }),
    });
    const c = client(env);
    const shown = collect(c, 'message');
    await c.start();
    await settle();
    await c.open('c1');
    const entry = await c.send('c1', 'hello');
    const created = message(1, { senderId: 'me', clientMessageId: entry.clientMessageId });
    if (eventFirst) {
      sockets[0].push({ type: 'message.created', data: created });
      release();
    } else {
      release();
      await settle();
      sockets[0].push({ type: 'message.created', data: created });
    }
    await settle();
    assert.equal(shown.length, 1, `shown once (event first: ${eventFirst})`);
    assert.equal(c.pending.size, 0);
    assert.equal((await env.store.all()).length, 0, 'out of the outbox');
  }
});

test('a send that keeps failing is tried 3 times, then marked failed, and retried on demand', async () => {
  let tries = 0;
  const { env, runTimers } = fakeEnv({
    routes: baseRoutes({
      'POST /chat/conversations/c1/messages': () => {
        tries += 1;
        return [503, { error: { code: 'unavailable', message: 'try again' } }];
      },
    }),
  });
  const c = client(env);
  const states = collect(c, 'outbox');
  await c.start();
  await settle();
  const entry = await c.send('c1', 'hello');
  for (let i = 0; i < SEND_ATTEMPTS; i++) {
    await settle();
    await runTimers();
  }
  await settle();
  assert.equal(tries, SEND_ATTEMPTS);
  assert.equal(states.at(-1).status, 'failed');
  const kept = await env.store.all();
  assert.equal(kept[0].clientMessageId, entry.clientMessageId, 'kept across reloads');
  c.retry(entry.clientMessageId);
  await settle();
  assert.equal(tries, SEND_ATTEMPTS + 1, 'retried with the same clientMessageId');
});

test('unsent messages survive a reload and go out with their original clientMessageId', async () => {
  const store = new MemoryStore();
  await store.put({ clientMessageId: 'keep-1', conversationId: 'c1', body: 'typed offline', attempts: 0, status: 'sending' });
  const sent = [];
  const { env } = fakeEnv({
    routes: baseRoutes({
      'POST /chat/conversations/c1/messages': (_, body) => {
        sent.push(body.clientMessageId);
        return [201, message(1, { clientMessageId: body.clientMessageId })];
      },
    }),
  });
  env.store = store;
  const c = client(env);
  await c.start();
  await settle();
  assert.deepEqual(sent.slice(0, 1), ['keep-1']);
  assert.equal((await store.all()).length, 0);
});

test('a blocked WebSocket falls back to Server-Sent Events', async () => {
  const { env, sockets } = fakeEnv({ routes: baseRoutes(), failWebSocket: true });
  const c = client(env);
  const statuses = collect(c, 'status');
  await c.start();
  await settle();
  await settle();
  assert.match(sockets.at(-1).url, /^http:\/\/parley\.test\/events\?ticket=/);
  assert.equal(statuses.at(-1).status, 'open');
  assert.equal(statuses.at(-1).transport, 'sse');
});

test('read pointers are debounced and only move forward', async () => {
  const reads = [];
  const { env, runTimers } = fakeEnv({
    routes: baseRoutes({
      'POST /chat/conversations/c1/read': (_, body) => {
        reads.push(body.seq);
        return [200, {}];
      },
    }),
  });
  const c = client(env);
  c.markRead('c1', 3);
  c.markRead('c1', 5);
  c.markRead('c1', 4);
  await runTimers();
  await settle();
  assert.deepEqual(reads, [5]);
});

test('typing starts once per refresh window and stops by itself', async () => {
  const { env, sockets, runTimers } = fakeEnv({ routes: baseRoutes() });
  const c = client(env);
  await c.start();
  await settle();
  c.typing('c1');
  c.typing('c1');
  const typed = () => sockets[0].sent.filter((f) => f.type.startsWith('typing'));
  assert.deepEqual(typed().map((f) => f.type), ['typing.started']);
  await runTimers();
  assert.deepEqual(typed().map((f) => f.type), ['typing.started', 'typing.stopped']);
});

test('offline: nothing is tried, the outbox keeps what is written, and it goes out once back online', async () => {
  const window = new EventTarget();
  window.navigator = { onLine: true };
  let stored = 0;
  const { env, calls, sockets } = fakeEnv({
    routes: baseRoutes({
      'POST /chat/conversations/c1/messages': (_, body) => {
        stored += 1;
        return [201, message(1, { senderId: 'me', clientMessageId: body.clientMessageId })];
      },
    }),
  });
  const c = client({ ...env, window });
  const statuses = collect(c, 'status');
  await c.start();
  await settle();
  window.dispatchEvent(new Event('offline'));
  assert.equal(c.status, 'offline');
  const before = calls.length;
  const entry = await c.send('c1', 'written offline');
  c.typing('c1');
  await settle();
  assert.equal(calls.length, before, 'no request while offline');
  assert.equal(entry.status, 'sending', 'kept, not failed');
  window.dispatchEvent(new Event('online'));
  await settle();
  await settle();
  assert.equal(sockets.length, 2, 'reconnected at once');
  assert.equal(stored, 1, 'sent once');
  assert.equal(c.pending.size, 0);
  assert.deepEqual(statuses.map((s) => s.status).slice(-3), ['offline', 'connecting', 'open']);
});

test('messages of a conversation are sent one at a time, in the order written', async () => {
  const arrived = [];
  const releases = [];
  const { env } = fakeEnv({
    routes: baseRoutes({
      'POST /chat/conversations/c1/messages': async (_, body) => {
        arrived.push(body.body);
        await new Promise((r) => releases.push(r));
        return [201, message(arrived.length, { senderId: 'me', clientMessageId: body.clientMessageId })];
      },
    }),
  });
  const c = client(env);
  await c.start();
  await settle();
  for (const body of ['one', 'two', 'three']) await c.send('c1', body);
  await settle();
  assert.deepEqual(arrived, ['one'], 'the next waits for the one before');
  releases.shift()();
  await settle();
  assert.deepEqual(arrived, ['one', 'two']);
  releases.shift()();
  await settle();
  releases.shift()();
  await settle();
  assert.deepEqual(arrived, ['one', 'two', 'three']);
  assert.equal(c.pending.size, 0);
});
