// The chat app: the inbox (filters, search, live unread badges, requests
// with their trust indicators), routing between it and a conversation, and
// the wiring of the SDK's events to both. `mount()` is what a host platform
// that serves its own page calls; `/app/` calls it through main.js.

import { ParleyClient } from '/sdk/parley.js';
import { h, fill, localiseTimes, shortWhen, toast } from './dom.js';
import * as actions from './actions.js';
import { ConversationView, requestButtons, trust } from './conversation.js';

const FILTERS = [
  ['inbox', 'All'],
  ['unread', 'Unread'],
  ['requests', 'Requests'],
  ['archived', 'Archived'],
];

/** Which conversations each filter shows (the server's rules, applied to what is loaded). */
const SHOWN = {
  inbox: (c) => !c.archived && c.requestState !== 'pending' && c.requestState !== 'declined',
  unread: (c) => SHOWN.inbox(c) && c.unreadCount > 0,
  requests: (c) => c.requestState === 'pending' && !c.archived,
  archived: (c) => c.archived,
};

const EMPTY = {
  inbox: 'No conversations yet. They appear here when someone writes to you or you open one from a job, an application or a booking.',
  unread: 'You are all caught up.',
  requests: 'No message requests.',
  archived: 'Nothing archived.',
};

/**
 * Shows Parley in `root` for `user`, with tokens from `getToken`.
 * @param {HTMLElement} root
 * @param {{ baseUrl?: string, user: {id: string, name: string, role: string}, getToken: () => Promise<string>, signOut?: () => void }} options
 */
export async function mount(root, { baseUrl = location.origin, user, getToken, signOut }) {
  const app = new ChatApp(root, new ParleyClient({ baseUrl, getToken }), user, signOut);
  await app.start();
  return app;
}

class ChatApp {
  constructor(root, client, me, signOut) {
    Object.assign(this, { root, client, me, signOut });
    this.conversations = new Map();
    this.outbox = new Map();
    this.presence = new Map();
    this.names = new Map([[me.id, me.name]]);
    this.blocked = new Set();
    this.settings = { readReceipts: false };
    this.filter = 'inbox';
    this.query = '';
    this.view = null;
    this.suspended = null; // the server's words, once it says this user may not send
    this.hold = null; // { text, until } while rate limited
  }

  async start() {
    this.renderShell();
    const [settings, blocks] = await Promise.all([
      this.client.request('GET', '/users/me/settings'),
      this.client.request('GET', '/chat/blocks'),
      ...FILTERS.filter(([f]) => f !== 'unread').map(([f]) => this.loadList(f)),
    ]);
    this.settings = settings;
    for (const b of blocks.items) this.blocked.add(b.user.id);
    this.listen();
    await this.client.start();
    this.renderSettings();
    this.renderInbox();
    window.addEventListener('hashchange', () => this.route());
    document.addEventListener('visibilitychange', () => this.view?.markRead());
    await this.route();
    this.root.classList.remove('loading');
    this.root.removeAttribute('aria-busy');
  }

  async loadList(filter) {
    const page = await this.client.request('GET', `/chat/conversations?filter=${filter}&limit=100`);
    for (const c of page.items) this.upsert(c);
  }

  upsert(conversation) {
    this.conversations.set(conversation.id, conversation);
    const other = conversation.otherParticipant;
    if (other && !this.names.has(other.id)) {
      this.names.set(other.id, other.name);
      if (this.client.status === 'open') this.watchPresence(); // someone new to follow
    }
  }

  async refreshConversation(id) {
    try {
      this.upsert(await this.client.request('GET', `/chat/conversations/${id}`));
    } catch (e) {
      if (e.status === 404) this.conversations.delete(id);
      else throw e;
    }
    this.renderInbox();
  }

  nameOf(userId) {
    return this.names.get(userId) ?? userId;
  }

  // ---- events ---------------------------------------------------------------

  listen() {
    const on = (type, handler) => this.client.addEventListener(type, (e) => handler(e.detail));
    on('message', (m) => this.onMessage(m));
    on('message.updated', (m) => {
      this.view?.id === m.conversationId && this.view.updated(m);
      this.touch(m.conversationId, (c) => c.lastMessage?.id === m.id && (c.lastMessage = m));
    });
    on('outbox', (entry) => {
      if (entry.status === 'sent') this.outbox.delete(entry.clientMessageId);
      else this.outbox.set(entry.clientMessageId, entry);
      if (this.view?.id === entry.conversationId) this.view.outboxChanged(entry);
    });
    on('conversation', (c) => {
      this.upsert(c);
      this.renderInbox();
      if (this.view?.id === c.id) this.view.render();
    });
    on('removed', ({ conversationId }) => this.forget(conversationId));
    on('conversation.updated', (u) => {
      if (u.removed) return this.forget(u.conversationId);
      this.touch(u.conversationId, (c) => Object.assign(c, { unreadCount: u.unreadCount, lastReadSeq: u.lastReadSeq }));
    });
    for (const type of ['conversation.requested', 'conversation.accepted', 'conversation.declined']) {
      on(type, async (e) => {
        await this.refreshConversation(e.conversationId);
        if (this.view?.id === e.conversationId) this.view.render();
      });
    }
    on('read.receipt', (r) => this.touch(r.conversationId, (c) => {
      if (c.otherParticipant?.id === r.userId) c.otherLastReadSeq = Math.max(c.otherLastReadSeq ?? 0, r.seq);
    }));
    on('typing.started', (t) => this.view?.id === t.conversationId && this.view.startTyping(t.userId));
    on('typing.stopped', (t) => this.view?.id === t.conversationId && this.view.stopTyping(t.userId));
    on('presence.updated', (p) => {
      this.presence.set(p.userId, p.status);
      for (const dot of this.root.querySelectorAll(`[data-presence="${CSS.escape(p.userId)}"]`)) paintDot(dot, p.status);
    });
    on('block.created', ({ userId }) => this.blockChanged(userId, true));
    on('block.removed', ({ userId }) => this.blockChanged(userId, false));
    on('system.notice', (n) => {
      if (n.code === 'messaging_suspended') {
        this.suspended = localiseTimes(n.message);
        this.view?.renderComposer();
      }
      if (n.code !== 'resync_required') toast(localiseTimes(n.message));
    });
    on('status', ({ status, transport }) => {
      const line = this.root.querySelector('.connection');
      if (!line) return;
      line.dataset.status = status;
      line.dataset.transport = transport;
      fill(line, status === 'open' ? 'Connected' : status === 'refused' ? 'Signed out' : 'Reconnecting…');
    });
    on('resynced', () => this.watchPresence());
  }

  onMessage(m) {
    if (!this.conversations.has(m.conversationId)) {
      this.refreshConversation(m.conversationId);
      return;
    }
    const viewing = this.view?.id === m.conversationId;
    if (viewing) this.view.received(m);
    // The first message of a conversation may have made it a request.
    if (m.seq === 1 && m.senderId === this.me.id) {
      this.refreshConversation(m.conversationId).then(() => this.view?.id === m.conversationId && this.view.render());
    }
    this.touch(m.conversationId, (c) => {
      if (m.seq >= (c.lastMessage?.seq ?? 0)) {
        c.lastMessage = m;
        c.lastMessageAt = m.createdAt;
        c.lastSeq = Math.max(c.lastSeq, m.seq);
      }
    });
  }

  /** Changes a loaded conversation and redraws what shows it. */
  touch(id, change) {
    const c = this.conversations.get(id);
    if (!c) return;
    change(c);
    this.renderInbox();
    if (this.view?.id === id) this.view.renderMessages();
  }

  forget(id) {
    this.conversations.delete(id);
    if (this.view?.id === id) location.hash = '#/';
    this.renderInbox();
  }

  blockChanged(userId, blocked) {
    if (blocked) this.blocked.add(userId);
    else this.blocked.delete(userId);
    if (this.view?.conversation?.otherParticipant?.id === userId) this.view.render();
  }

  watchPresence() {
    const ids = [...new Set([...this.conversations.values()].map((c) => c.otherParticipant?.id).filter(Boolean))];
    this.client.subscribePresence(ids);
  }

  presenceDot(userId) {
    const dot = h('span', { class: 'dot', 'data-presence': userId, role: 'img' });
    paintDot(dot, this.presence.get(userId) ?? 'offline');
    return dot;
  }

  // ---- what may be sent -------------------------------------------------------

  /** Why the composer cannot send in `c` now (`{text, action?}`), or null. */
  composerBlock(c) {
    if (!c) return null;
    const other = c.otherParticipant;
    if (this.suspended) return { text: this.suspended };
    if (this.hold && this.hold.until > Date.now()) return { text: this.hold.text };
    if (other && this.blocked.has(other.id)) {
      return {
        text: `You blocked ${other.name}. Unblock them to send messages.`,
        action: h('button', { type: 'button', class: 'secondary', onclick: async () => {
          await actions.unblock(this, other);
          this.view?.render();
        } }, 'Unblock'),
      };
    }
    if (c.requestState === 'declined') return { text: 'You declined this request. Accept it to reply.', action: requestButtons(this, c, () => this.view?.refresh())[0] };
    if (c.otherRequestState === 'pending') return { text: 'You can send more once they accept.' };
    if (c.otherRequestState === 'declined') return { text: 'Your message request was declined.' };
    return null;
  }

  /** A send was refused: what the refusal says about later sends. */
  learnRefusal(conversation, error) {
    if (!error) return;
    if (error.code === 'messaging_suspended') this.suspended = localiseTimes(error.message);
    if (error.code === 'request_pending' || error.code === 'request_declined') {
      this.refreshConversation(conversation.id).then(() => this.view?.render());
      return;
    }
    this.view?.renderComposer();
  }

  /** Disables the composer for `seconds` with `text` (rate limits). */
  holdComposer(text, seconds) {
    this.hold = { text, until: Date.now() + seconds * 1000 };
    this.view?.renderComposer();
    clearTimeout(this.holdTimer);
    this.holdTimer = setTimeout(() => {
      this.hold = null;
      this.view?.renderComposer();
    }, seconds * 1000);
  }

  // ---- screens ----------------------------------------------------------------

  renderShell() {
    this.inboxList = h('ul', { class: 'inbox-list', 'aria-label': 'Conversations' });
    this.tabs = h('div', { class: 'tabs', role: 'tablist', 'aria-label': 'Show' });
    this.search = h('input', { type: 'search', 'aria-label': 'Search conversations', placeholder: 'Search by name or context' });
    this.search.addEventListener('input', () => {
      this.query = this.search.value.trim().toLowerCase();
      this.renderInbox();
    });
    this.main = h('main', { class: 'pane', id: 'main' });
    this.settingsSlot = h('div', { class: 'me' });
    fill(this.root,
      h('a', { href: '#main', class: 'skip' }, 'Skip to conversation'),
      h('div', { class: 'app' },
        h('header', { class: 'topbar' },
          h('h1', {}, 'Parley', h('span', { class: 'total-badge', 'aria-live': 'polite' })),
          h('span', { class: 'connection', role: 'status' }, 'Connecting…'),
          this.settingsSlot),
        h('aside', { class: 'inbox', 'aria-label': 'Inbox' }, this.tabs, this.search, this.inboxList),
        this.main));
    this.showPlaceholder();
  }

  renderSettings() {
    const receipts = h('input', { type: 'checkbox', checked: this.settings.readReceipts });
    receipts.addEventListener('change', async () => {
      const done = await actions.attempt(
        () => this.client.request('PATCH', '/users/me/settings', { readReceipts: receipts.checked }),
        receipts.checked ? 'Read receipts on: you see when they read yours, and they see when you read theirs.' : 'Read receipts off.',
      );
      if (done) this.settings = done;
      else receipts.checked = !receipts.checked;
    });
    fill(this.settingsSlot,
      h('span', { class: 'signed-in' }, `${this.me.name} (${this.me.role})`),
      h('label', { class: 'check' }, receipts, 'Share read receipts'),
      this.me.role === 'admin' ? h('a', { href: '/app/admin/' }, 'Moderation') : null,
      this.signOut ? h('button', { type: 'button', class: 'link', onclick: () => this.signOut() }, 'Sign out') : null);
  }

  renderInbox() {
    const all = [...this.conversations.values()];
    const requests = all.filter(SHOWN.requests).length;
    const unread = all.filter(SHOWN.inbox).reduce((n, c) => n + c.unreadCount, 0);
    fill(this.tabs, FILTERS.map(([filter, label]) => h('button', {
      type: 'button', role: 'tab', 'aria-selected': String(this.filter === filter), 'data-filter': filter,
      onclick: () => {
        this.filter = filter;
        this.renderInbox();
      },
    }, label, filter === 'requests' && requests ? h('span', { class: 'badge', 'aria-label': `${requests} waiting` }, requests) : null)));
    const badge = this.root.querySelector('.total-badge');
    fill(badge, unread ? h('span', { class: 'badge', 'aria-label': `${unread} unread` }, unread) : '');
    document.title = unread ? `(${unread}) Parley` : 'Parley';

    const shown = all
      .filter(SHOWN[this.filter])
      .filter((c) => !this.query || [actions.titleOf(c), c.context?.title, c.context?.subtitle, c.context?.id]
        .some((s) => s?.toLowerCase().includes(this.query)))
      .sort((a, b) => (b.lastMessageAt ?? b.createdAt).localeCompare(a.lastMessageAt ?? a.createdAt));
    if (!shown.length) {
      fill(this.inboxList, h('li', { class: 'empty muted' }, this.query ? 'No conversation matches.' : EMPTY[this.filter]));
      return;
    }
    fill(this.inboxList, shown.map((c) => this.inboxRow(c)));
  }

  inboxRow(c) {
    const other = c.otherParticipant;
    const preview = c.lastMessage
      ? (c.lastMessage.redacted ? 'This message was removed.' : `${c.lastMessage.senderId === this.me.id ? 'You: ' : ''}${c.lastMessage.body}`)
      : 'No messages yet';
    const current = this.view?.id === c.id;
    return h('li', { class: `inbox-row${c.unreadCount ? ' unread' : ''}`, 'data-conversation': c.id },
      h('a', { href: `#/c/${c.id}`, 'aria-current': current ? 'page' : null },
        other ? this.presenceDot(other.id) : h('span', { class: 'dot group', 'aria-hidden': 'true' }),
        h('span', { class: 'row-main' },
          h('span', { class: 'row-title' }, h('strong', {}, actions.titleOf(c)), c.muted ? h('span', { class: 'muted small' }, ' · muted') : null),
          c.context && c.kind !== 'group' ? h('span', { class: 'row-context small' }, c.context.title ?? c.context.id) : null,
          this.filter === 'requests' && other ? h('span', { class: 'row-trust small' }, trust(other)) : null,
          h('span', { class: 'row-preview muted' }, preview)),
        h('span', { class: 'row-side' },
          h('time', { class: 'small muted', datetime: c.lastMessageAt ?? c.createdAt }, shortWhen(c.lastMessageAt ?? c.createdAt)),
          c.unreadCount ? h('span', { class: 'badge', 'aria-label': `${c.unreadCount} unread` }, c.unreadCount) : null)),
      this.filter === 'requests' ? h('div', { class: 'row request-actions' }, requestButtons(this, c, () => this.refreshConversation(c.id))) : null);
  }

  showPlaceholder() {
    this.view?.close();
    this.view = null;
    this.root.querySelector('.app')?.classList.remove('showing-conversation');
    fill(this.main, h('div', { class: 'placeholder muted' }, h('p', {}, 'Choose a conversation.')));
  }

  /** `#/c/<id>`, `#/open?with=<userId>&context=<type>:<id>` (or a thread's context alone), else the inbox. */
  async route() {
    const hash = location.hash.slice(1);
    if (hash.startsWith('/c/')) return this.show(hash.slice(3));
    if (hash.startsWith('/open?')) return this.openFromContext(new URLSearchParams(hash.slice(6)));
    this.showPlaceholder();
    this.renderInbox();
  }

  async openFromContext(params) {
    const [type, ...rest] = (params.get('context') ?? '').split(':');
    const body = {};
    if (type && rest.length) body.context = { type, id: rest.join(':') };
    if (params.get('with')) body.participantId = params.get('with');
    try {
      const c = await this.client.request('POST', '/chat/conversations', body);
      this.upsert(c);
      location.replace(`#/c/${c.id}`);
    } catch (e) {
      fill(this.main, h('div', { class: 'placeholder', role: 'alert' }, h('p', {}, e.message)));
    }
  }

  async show(id) {
    if (this.view?.id === id) return;
    if (!this.conversations.has(id)) await this.refreshConversation(id).catch(() => {});
    const c = this.conversations.get(id);
    if (!c) {
      fill(this.main, h('div', { class: 'placeholder', role: 'alert' }, h('p', {}, 'This conversation does not exist or is not yours.')));
      return;
    }
    this.view?.close();
    this.view = new ConversationView(this, c);
    this.root.querySelector('.app').classList.add('showing-conversation');
    fill(this.main, this.view.element);
    this.renderInbox();
    await this.view.load();
    this.view.element.querySelector('textarea')?.focus();
  }
}

function paintDot(dot, status) {
  dot.dataset.status = status;
  dot.setAttribute('aria-label', status);
  dot.title = status;
}
