// Parley's browser SDK: one ES module, no dependencies.
//
// It implements the README's "how a client stays exactly right" once, so that
// no integrator has to:
//   * connect (WebSocket, else Server-Sent Events, else long-poll) with a
//     short-lived connect ticket, exponential backoff and full jitter, and
//     climb back to WebSocket later;
//   * per-conversation `seq` tracking: duplicates ignored, gaps filled from
//     `messages?after=`, `/chat/sync` on every (re)connect, on 4000/1001
//     closes, on `resync_required` and when the tab becomes visible;
//   * an outbox (IndexedDB when available) that keeps unsent messages across
//     reloads and sends them with their original `clientMessageId`, 3 tries
//     with backoff, then `failed` until `retry()`; the answer to a send and the
//     message's own `message.created` may arrive in either order and are
//     reconciled by `clientMessageId`, so a message never shows twice;
//   * heartbeats and visibility-driven `away`, typing with the server's
//     throttle, presence subscriptions, read pointers debounced.
//
// Events come out of the client (an EventTarget) as CustomEvents whose
// `detail` is the server's `data`, plus `message` (a message to show, sent
// or received, once), `outbox` (a local message's state changed), `status`
// (the connection's state) and `resynced`.

/** Close codes the server uses (README: WebSocket close codes). */
export const CLOSE = Object.freeze({
  GOING_AWAY: 1001,
  RESYNC: 4000,
  UNAUTHORISED: 4001,
  TOKEN_EXPIRED: 4002,
  FORBIDDEN_ORIGIN: 4003,
  TOO_MANY: 4008,
});

/** Full-jitter exponential backoff: a random delay in [0, min(cap, base·2^n)). */
export class Backoff {
  constructor({ base = 500, cap = 30_000, random = Math.random } = {}) {
    Object.assign(this, { base, cap, random, attempt: 0 });
  }
  next() {
    const ceiling = Math.min(this.cap, this.base * 2 ** this.attempt);
    this.attempt += 1;
    return Math.floor(this.random() * ceiling);
  }
  reset() {
    this.attempt = 0;
  }
}

/**
 * What each conversation's highest applied `seq` is, and what a new message
 * means: `apply` (the next one), `duplicate` (seen), `gap` (something was
 * missed: fetch `after` the held seq first). In a thread where the viewer
 * blocks a member, `seq`s have holes that a fetch confirms: `settle` records
 * the highest seq a fetch returned, whatever came before it.
 */
export class SeqTracker {
  constructor() {
    this.held = new Map();
  }
  get(conversationId) {
    return this.held.get(conversationId) ?? 0;
  }
  classify(message) {
    const held = this.get(message.conversationId);
    if (message.seq <= held) return 'duplicate';
    return message.seq === held + 1 ? 'apply' : 'gap';
  }
  settle(conversationId, seq) {
    if (seq > this.get(conversationId)) this.held.set(conversationId, seq);
  }
}

/** Outbox storage in memory (tests, and browsers without IndexedDB). */
export class MemoryStore {
  constructor() {
    this.rows = new Map();
  }
  async all() {
    return [...this.rows.values()];
  }
  async put(entry) {
    this.rows.set(entry.clientMessageId, { ...entry });
  }
  async delete(clientMessageId) {
    this.rows.delete(clientMessageId);
  }
}

/** Outbox storage in IndexedDB: unsent messages survive a reload. */
export class IndexedDbStore {
  constructor(name = 'parley-outbox') {
    this.ready = new Promise((resolve, reject) => {
      const open = indexedDB.open(name, 1);
      open.onupgradeneeded = () =>
        open.result.createObjectStore('outbox', { keyPath: 'clientMessageId' });
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
  }
  async run(mode, act) {
    const db = await this.ready;
    return new Promise((resolve, reject) => {
      const request = act(db.transaction('outbox', mode).objectStore('outbox'));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }
  all() {
    return this.run('readonly', (s) => s.getAll());
  }
  put(entry) {
    return this.run('readwrite', (s) => s.put(entry));
  }
  delete(clientMessageId) {
    return this.run('readwrite', (s) => s.delete(clientMessageId));
  }
}

/** Sends allowed per unsent message before it is marked failed. */
export const SEND_ATTEMPTS = 3;
/** The server relays one `typing.started` per 2 s; refresh a little slower. */
export const TYPING_REFRESH_MS = 2500;
/** Typing stops this long after the last keystroke. */
export const TYPING_IDLE_MS = 4000;
/** Presence heartbeat (the server forgets a silent connection after 90 s). */
export const HEARTBEAT_MS = 25_000;
/** Read pointers are sent at most this often per conversation. */
export const READ_DEBOUNCE_MS = 400;

/** An error answered by the server: `status` and the contract's `code`. */
export class ParleyError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    Object.assign(this, { status, code, retryAfter });
  }
  /** Worth trying again (network trouble, 5xx, 429); a 4xx refusal is not. */
  get transient() {
    return this.status === 0 || this.status >= 500 || this.status === 429;
  }
}

const newClientMessageId = () =>
  globalThis.crypto?.randomUUID?.() ?? `c-${Date.now()}-${Math.random().toString(36).slice(2)}`;

export class ParleyClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string} options.baseUrl where Parley answers (e.g. `https://chat.example.com`)
   * @param {() => Promise<string>} options.getToken a fresh bearer token (called
   *   again whenever the server says the token is no longer good)
   * @param {object} [options.env] what the environment provides (tests pass fakes):
   *   `fetch`, `WebSocket`, `EventSource`, `setTimeout`, `clearTimeout`, `random`,
   *   `document` (visibility), `store` (the outbox's storage)
   * @param {('auto'|'ws'|'sse'|'poll')} [options.transport]
   */
  constructor({ baseUrl, getToken, env = {}, transport = 'auto' }) {
    super();
    this.baseUrl = baseUrl.replace(/\/$/, '');
    this.getToken = getToken;
    this.env = {
      fetch: env.fetch ?? globalThis.fetch.bind(globalThis),
      WebSocket: env.WebSocket ?? globalThis.WebSocket,
      EventSource: env.EventSource ?? globalThis.EventSource,
      setTimeout: env.setTimeout ?? globalThis.setTimeout.bind(globalThis),
      clearTimeout: env.clearTimeout ?? globalThis.clearTimeout.bind(globalThis),
      random: env.random ?? Math.random,
      document: env.document ?? globalThis.document,
      window: env.window ?? globalThis.window,
      store:
        env.store ?? (globalThis.indexedDB ? new IndexedDbStore() : new MemoryStore()),
    };
    this.transports = transport === 'auto' ? ['ws', 'sse', 'poll'] : [transport];
    this.transportIndex = 0;
    this.backoff = new Backoff({ random: this.env.random });
    this.seqs = new SeqTracker();
    this.cursor = null;
    this.token = null;
    this.status = 'idle';
    this.pending = new Map(); // clientMessageId -> outbox entry
    this.typingState = new Map(); // conversationId -> { lastSent, idleTimer }
    this.readTimers = new Map();
    this.readWanted = new Map();
    this.unsentReads = new Set();
    this.presenceWatch = [];
    this.shown = new Set(); // ids of messages already emitted
    this.stopped = false;
  }

  // ---- REST ---------------------------------------------------------------

  /** A REST call with the bearer token; renews the token once on 401. */
  async request(method, path, body, { retried = false } = {}) {
    this.token ??= await this.getToken();
    let response;
    try {
      response = await this.env.fetch(`${this.baseUrl}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ParleyError(0, 'network', String(e?.message ?? e));
    }
    if (response.status === 401 && !retried) {
      this.token = await this.getToken();
      return this.request(method, path, body, { retried: true });
    }
    const text = await response.text();
    const json = text ? JSON.parse(text) : null;
    if (!response.ok) {
      const retryAfter = Number(response.headers.get('retry-after')) || undefined;
      throw new ParleyError(
        response.status,
        json?.error?.code ?? 'http_error',
        json?.error?.message ?? `HTTP ${response.status}`,
        retryAfter,
      );
    }
    return json;
  }

  // ---- connection ---------------------------------------------------------

  /** Loads the outbox, connects, and keeps connected until `close()`. */
  async start() {
    this.stopped = false;
    for (const entry of await this.env.store.all()) {
      this.pending.set(entry.clientMessageId, entry);
      if (entry.status !== 'failed') entry.status = 'sending';
      this.emit('outbox', entry);
    }
    this.watchVisibility();
    this.watchNetwork();
    this.connect();
    this.flushOutbox();
  }

  close() {
    this.stopped = true;
    this.env.clearTimeout(this.reconnectTimer);
    this.env.clearTimeout(this.heartbeatTimer);
    this.channel?.close();
    this.channel = null;
    this.setStatus('closed');
  }

  setStatus(status) {
    if (this.status === status) return;
    this.status = status;
    this.emit('status', { status, transport: this.transports[this.transportIndex] });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** A single-use connect ticket (tokens stay out of URLs). */
  async ticket() {
    const { ticket } = await this.request('POST', '/realtime/ticket');
    return ticket;
  }

  async connect() {
    if (this.stopped) return;
    if (this.offline) return this.setStatus('offline'); // the 'online' event connects

    this.setStatus('connecting');
    const kind = this.transports[this.transportIndex];
    let ticket;
    try {
      ticket = await this.ticket();
    } catch (e) {
      return this.scheduleReconnect(e instanceof ParleyError && !e.transient ? 'refused' : 'retry');
    }
    const url = (path) => `${this.baseUrl.replace(/^http/, path === '/ws' ? 'ws' : 'http')}${path}?ticket=${encodeURIComponent(ticket)}`;
    const handlers = {
      open: () => this.opened(),
      event: (envelope) => this.onEnvelope(envelope),
      closed: (code, everOpened) => this.closed(code, everOpened),
    };
    if (kind === 'ws') this.channel = openWebSocket(this.env, url('/ws'), handlers);
    else if (kind === 'sse') this.channel = openEventSource(this.env, url('/events'), handlers);
    else this.channel = openPoll(this, ticket, handlers);
  }

  async opened() {
    this.backoff.reset();
    this.setStatus('open');
    this.heartbeat();
    await this.resync();
    this.flushOutbox();
    for (const id of this.unsentReads) this.scheduleRead(id);
    this.unsentReads.clear();
    if (this.presenceWatch.length) this.subscribePresence(this.presenceWatch);
  }

  closed(code, everOpened) {
    this.env.clearTimeout(this.heartbeatTimer);
    this.channel = null;
    if (this.stopped || this.offline) return;
    // A new token, then a new ticket.
    if (code === CLOSE.UNAUTHORISED || code === CLOSE.TOKEN_EXPIRED) this.token = null;
    if (code === CLOSE.FORBIDDEN_ORIGIN) {
      this.setStatus('refused');
      return;
    }
    // A transport that never opened is blocked here: try the next one.
    if (!everOpened && this.transportIndex < this.transports.length - 1) {
      this.transportIndex += 1;
      return this.connect();
    }
    this.scheduleReconnect('retry');
  }

  scheduleReconnect(why) {
    this.setStatus(why === 'refused' ? 'refused' : 'reconnecting');
    const delay = this.backoff.next();
    this.reconnectTimer = this.env.setTimeout(() => {
      // Climb back to the best transport after a while on a fallback.
      if (this.backoff.attempt > 3) this.transportIndex = 0;
      this.connect();
    }, delay);
  }

  heartbeat() {
    this.env.clearTimeout(this.heartbeatTimer);
    this.sendPresence();
    this.heartbeatTimer = this.env.setTimeout(() => this.heartbeat(), HEARTBEAT_MS);
  }

  get away() {
    return this.env.document?.visibilityState === 'hidden';
  }

  sendPresence() {
    const status = this.away ? 'away' : 'online';
    if (this.channel?.send) this.channel.send({ type: 'presence.ping', data: { status } });
    else this.request('POST', '/users/me/presence', { status }).catch(() => {});
  }

  /**
   * The browser knows when the network is gone: stop trying (no failed
   * requests, the outbox keeps what is written) and reconnect the moment it
   * is back, instead of waiting out a backoff.
   */
  watchNetwork() {
    const win = this.env.window;
    if (!win?.addEventListener || this.watchingNetwork) return;
    this.watchingNetwork = true;
    this.offline = win.navigator?.onLine === false;
    win.addEventListener('offline', () => {
      this.offline = true;
      this.env.clearTimeout(this.reconnectTimer);
      this.env.clearTimeout(this.heartbeatTimer);
      this.channel?.close();
      this.channel = null;
      if (!this.stopped) this.setStatus('offline');
    });
    win.addEventListener('online', () => {
      this.offline = false;
      if (this.stopped || this.channel) return;
      this.env.clearTimeout(this.reconnectTimer);
      this.backoff.reset();
      this.transportIndex = 0;
      this.connect();
    });
  }

  watchVisibility() {
    const doc = this.env.document;
    if (!doc || this.watchingVisibility) return;
    this.watchingVisibility = true;
    doc.addEventListener('visibilitychange', () => {
      this.sendPresence();
      if (!this.away) this.resync();
    });
  }

  // ---- keeping exactly right ---------------------------------------------

  /** `GET /chat/sync` since the cursor, then each changed conversation's gap. */
  async resync() {
    if (this.syncing) return this.syncing;
    this.syncing = (async () => {
      try {
        let more = true;
        while (more) {
          const since = this.cursor ? `?since=${encodeURIComponent(this.cursor)}` : '';
          const page = await this.request('GET', `/chat/sync${since}`);
          for (const conversation of page.items) {
            this.emit('conversation', conversation);
            if (conversation.lastSeq > this.seqs.get(conversation.id) && this.seqs.held.has(conversation.id)) {
              await this.fill(conversation.id);
            }
          }
          for (const id of page.removed ?? []) this.emit('removed', { conversationId: id });
          this.cursor = page.cursor;
          more = page.hasMore;
        }
        this.emit('resynced', { cursor: this.cursor });
      } catch (e) {
        this.emit('error', e);
      } finally {
        this.syncing = null;
      }
    })();
    return this.syncing;
  }

  /** Starts following a conversation from its latest page (returned, oldest first). */
  async open(conversationId) {
    const page = await this.request('GET', `/chat/conversations/${conversationId}/messages`);
    for (const message of page.items) this.seqs.settle(conversationId, message.seq);
    if (!this.seqs.held.has(conversationId)) this.seqs.held.set(conversationId, 0);
    return page;
  }

  /** Fetches and applies everything after the held `seq` (repeating while `hasMore`). */
  async fill(conversationId) {
    let more = true;
    while (more) {
      const after = this.seqs.get(conversationId);
      const page = await this.request(
        'GET',
        `/chat/conversations/${conversationId}/messages?after=${after}&limit=100`,
      );
      for (const message of page.items) this.deliver(message);
      more = page.hasMore && page.items.length > 0;
    }
  }

  /** Applies a message once, whatever path it came by. */
  deliver(message) {
    if (message.seq <= this.seqs.get(message.conversationId)) return;
    this.seqs.settle(message.conversationId, message.seq);
    const local = this.pending.get(message.clientMessageId);
    if (local && local.conversationId === message.conversationId) {
      this.settled(local, message);
      return;
    }
    this.show(message);
  }

  /** Emits `message` for a message not shown before. */
  show(message) {
    if (this.shown.has(message.id)) return;
    if (this.shown.size > 10_000) this.shown.clear();
    this.shown.add(message.id);
    this.emit('message', message);
  }

  onEnvelope({ type, data }) {
    switch (type) {
      case 'message.created': {
        const verdict = this.seqs.classify(data);
        if (verdict === 'apply') this.deliver(data);
        else if (verdict === 'gap' && this.seqs.held.has(data.conversationId)) {
          this.fill(data.conversationId).catch((e) => this.emit('error', e));
        } else if (verdict === 'gap') {
          this.deliver(data); // a conversation not open here: nothing to fill
        }
        break;
      }
      case 'ack':
        if (this.pending.has(data.clientMessageId)) {
          this.settled(this.pending.get(data.clientMessageId), data.message);
        }
        break;
      case 'system.notice':
        if (data.code === 'resync_required') this.resync();
        if (data.code === 'token_expired') this.token = null; // the stream ends next
        break;
      default:
        break;
    }
    this.emit(type, data);
  }

  // ---- sending ------------------------------------------------------------

  /**
   * Queues a message: it is shown at once (`message` with `status:
   * 'sending'`), kept in the outbox until the server stored it, and sent
   * with the same `clientMessageId` however often it takes.
   */
  async send(conversationId, body, { attachmentIds } = {}) {
    const entry = {
      clientMessageId: newClientMessageId(),
      conversationId,
      body,
      attachmentIds,
      attempts: 0,
      status: 'sending',
      createdAt: new Date().toISOString(),
    };
    this.pending.set(entry.clientMessageId, entry);
    await this.env.store.put(entry);
    this.emit('outbox', entry);
    this.pump(conversationId);
    return entry;
  }

  /** Tries a failed message again (3 more attempts). */
  retry(clientMessageId) {
    const entry = this.pending.get(clientMessageId);
    if (!entry || entry.status !== 'failed') return;
    Object.assign(entry, { status: 'sending', attempts: 0, error: undefined });
    this.env.store.put(entry);
    this.emit('outbox', entry);
    this.pump(entry.conversationId);
  }

  /** Gives up on a failed message. */
  discard(clientMessageId) {
    this.pending.delete(clientMessageId);
    this.env.store.delete(clientMessageId);
  }

  flushOutbox() {
    for (const conversationId of new Set([...this.pending.values()].map((e) => e.conversationId))) {
      this.pump(conversationId);
    }
  }

  /**
   * Sends a conversation's next message: one at a time and in the order
   * written, so that messages are stored in the order they were typed (the
   * next waits while the one before is on its way or waits for a retry).
   * Offline, everything waits in the outbox for the 'online' event.
   */
  pump(conversationId) {
    if (this.offline) return;
    const next = [...this.pending.values()].find(
      (e) => e.conversationId === conversationId && e.status === 'sending',
    );
    if (next && !next.inFlight && !next.retrying) this.transmit(next);
  }

  async transmit(entry) {
    entry.inFlight = true;
    entry.attempts += 1;
    try {
      const stored = await this.request(
        'POST',
        `/chat/conversations/${entry.conversationId}/messages`,
        { body: entry.body, clientMessageId: entry.clientMessageId, attachmentIds: entry.attachmentIds },
      );
      entry.inFlight = false;
      this.settled(entry, stored);
      this.pump(entry.conversationId);
    } catch (e) {
      entry.inFlight = false;
      if (!this.pending.has(entry.clientMessageId) || entry.status === 'sent') {
        return this.pump(entry.conversationId);
      }
      const error = { code: e.code, message: e.message, retryAfter: e.retryAfter };
      if (e.transient && entry.attempts < SEND_ATTEMPTS) {
        const wait = e.retryAfter ? e.retryAfter * 1000 : this.backoff.base * 2 ** entry.attempts;
        // Rate limited: still sending, after the server's wait (shown to the writer).
        if (e.code === 'rate_limited') {
          entry.error = error;
          this.emit('outbox', entry);
        }
        entry.retrying = true;
        this.env.setTimeout(() => {
          entry.retrying = false;
          this.pump(entry.conversationId);
        }, wait);
        return;
      }
      // Offline: keep it for when the connection is back, without burning tries.
      if (e.status === 0 && (this.status !== 'open' || this.offline)) {
        entry.attempts = Math.max(0, entry.attempts - 1);
        return;
      }
      Object.assign(entry, { status: 'failed', error });
      await this.env.store.put(stripRuntime(entry));
      this.emit('outbox', entry);
      this.pump(entry.conversationId); // the next is not held up by this one
    }
  }

  /**
   * A local message is stored: shown once, as the server has it. Its `seq`
   * is not taken as held here: messages of others before it may still be on
   * their way, and its own `message.created` then finds it shown.
   */
  settled(entry, message) {
    if (entry.status === 'sent') return;
    entry.status = 'sent';
    this.pending.delete(entry.clientMessageId);
    this.env.store.delete(entry.clientMessageId);
    this.emit('outbox', { ...entry, message });
    this.show(message);
  }

  // ---- typing, reading, presence -------------------------------------------

  /** Call on every keystroke: starts, refreshes (throttled) and stops by itself. */
  typing(conversationId) {
    const now = Date.now();
    const state = this.typingState.get(conversationId) ?? { lastSent: 0 };
    if (now - state.lastSent >= TYPING_REFRESH_MS) {
      state.lastSent = now;
      this.signalTyping(conversationId, 'started');
    }
    this.env.clearTimeout(state.idleTimer);
    state.idleTimer = this.env.setTimeout(() => this.stopTyping(conversationId), TYPING_IDLE_MS);
    this.typingState.set(conversationId, state);
  }

  /** Call when the message is sent or the field cleared. */
  stopTyping(conversationId) {
    const state = this.typingState.get(conversationId);
    if (!state) return;
    this.env.clearTimeout(state.idleTimer);
    this.typingState.delete(conversationId);
    this.signalTyping(conversationId, 'stopped');
  }

  signalTyping(conversationId, state) {
    if (this.offline) return;
    if (this.channel?.send) this.channel.send({ type: `typing.${state}`, data: { conversationId } });
    else this.request('POST', `/chat/conversations/${conversationId}/typing`, { state }).catch(() => {});
  }

  /** Moves the read pointer (forward only; at most every 400 ms per conversation). */
  markRead(conversationId, seq) {
    if ((this.readWanted.get(conversationId) ?? 0) >= seq) return;
    this.readWanted.set(conversationId, seq);
    this.scheduleRead(conversationId);
  }

  scheduleRead(conversationId) {
    if (this.readTimers.has(conversationId)) return;
    this.readTimers.set(
      conversationId,
      this.env.setTimeout(() => {
        this.readTimers.delete(conversationId);
        // Offline: sent once the connection is back (see `opened`).
        if (this.offline) return this.unsentReads.add(conversationId);
        const upTo = this.readWanted.get(conversationId);
        this.request('POST', `/chat/conversations/${conversationId}/read`, { seq: upTo }).catch((e) =>
          this.emit('error', e),
        );
      }, READ_DEBOUNCE_MS),
    );
  }

  /** Follows these users' presence (replaces the previous list; at most 200). */
  subscribePresence(userIds) {
    this.presenceWatch = userIds.slice(0, 200);
    if (this.channel?.send) {
      this.channel.send({ type: 'presence.subscribe', data: { userIds: this.presenceWatch } });
    }
  }
}

/** An outbox entry without what only this page's memory needs. */
function stripRuntime({ inFlight, retrying, ...entry }) {
  return entry;
}

// ---- transports: each reports open, envelopes and its close -----------------

/** A message handler passing each frame's JSON envelope on (others are skipped). */
function envelopes(event) {
  return (m) => {
    try {
      event(JSON.parse(m.data));
    } catch {
      /* not an envelope */
    }
  };
}

function openWebSocket(env, url, { open, event, closed }) {
  const socket = new env.WebSocket(url);
  let everOpened = false;
  socket.onopen = () => {
    everOpened = true;
    open();
  };
  socket.onmessage = envelopes(event);
  socket.onclose = (e) => closed(e.code, everOpened);
  return {
    send: (frame) => socket.readyState === 1 && socket.send(JSON.stringify(frame)),
    close: () => socket.close(1000),
  };
}

function openEventSource(env, url, { open, event, closed }) {
  const source = new env.EventSource(url);
  let everOpened = false;
  source.onopen = () => {
    everOpened = true;
    open();
  };
  source.onmessage = envelopes(event);
  // The browser would reconnect by itself with the spent ticket: close, and
  // reconnect with a new one (the sync fills what was missed).
  source.onerror = () => {
    source.close();
    closed(1006, everOpened);
  };
  return { close: () => source.close() };
}

function openPoll(client, ticket, { open, event, closed }) {
  let stopped = false;
  let cursor = null;
  (async () => {
    let first = true;
    while (!stopped) {
      try {
        // The first poll answers within a second (it opens the connection);
        // later ones wait up to 25 s for events.
        const query = new URLSearchParams({ timeout: first ? '1' : '25' });
        if (cursor) query.set('cursor', cursor);
        if (first) query.set('ticket', ticket);
        const page = first
          ? await (await client.env.fetch(`${client.baseUrl}/events/poll?${query}`)).json()
          : await client.request('GET', `/events/poll?${query}`);
        if (first) {
          first = false;
          open();
        }
        cursor = page.cursor;
        for (const envelope of page.events ?? []) event(envelope);
      } catch {
        if (!stopped) closed(1006, !first);
        return;
      }
    }
  })();
  return { close: () => (stopped = true) };
}
