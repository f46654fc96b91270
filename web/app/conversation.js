// One conversation on screen: its context banner, the request banner, the
// messages (day separators, delivery states, redaction placeholders, links
// as plain text while it is a request, older pages on scrolling up), who is
// typing, and the composer with the server's reasons when it cannot send.

import { h, fill, timeOfDay, dayHeading, dayKey, toast } from './dom.js';
import * as actions from './actions.js';

const PAGE = 50;
const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+/g;

export class ConversationView {
  /** @param app the chat app (client, me, conversations, presence, …) */
  constructor(app, conversation) {
    this.app = app;
    this.id = conversation.id;
    this.messages = new Map(); // seq -> stored message
    this.local = new Map(); // clientMessageId -> outbox entry not yet stored
    this.typing = new Map(); // userId -> timer
    this.hasMore = false;
    this.loadingOlder = false;
    this.element = h('section', { class: 'conversation', 'aria-labelledby': 'conversation-title' });
    this.list = h('ol', { class: 'messages', role: 'log', 'aria-live': 'polite', 'aria-label': 'Messages' });
    this.list.addEventListener('scroll', () => this.onScroll());
    this.typingLine = h('p', { class: 'typing', 'aria-live': 'polite' });
    this.composer = h('div', { class: 'composer-slot' });
    this.header = h('header', { class: 'conversation-header' });
    this.banners = h('div', { class: 'banners' });
    fill(this.element, this.header, this.banners, this.list, this.typingLine, this.composer);
  }

  get conversation() {
    return this.app.conversations.get(this.id);
  }

  /** Loads the latest page and starts following. */
  async load() {
    const page = await this.app.client.open(this.id);
    for (const message of page.items) this.messages.set(message.seq, message);
    this.hasMore = page.hasMore;
    for (const entry of this.app.outbox.values()) {
      if (entry.conversationId === this.id && entry.status !== 'sent') this.local.set(entry.clientMessageId, entry);
    }
    this.render();
    this.list.scrollTop = this.list.scrollHeight;
    this.markRead();
  }

  render() {
    this.renderHeader();
    this.renderBanners();
    this.renderMessages();
    this.renderComposer();
  }

  // ---- header and banners ---------------------------------------------------

  renderHeader() {
    const c = this.conversation;
    const other = c.otherParticipant;
    const blocked = other && this.app.blocked.has(other.id);
    const button = (label, onclick, extra = {}) => h('button', { type: 'button', class: 'secondary', onclick, ...extra }, label);
    fill(this.header,
      h('a', { href: '#/', class: 'back', 'aria-label': 'Back to conversations' }, '←'),
      other ? this.app.presenceDot(other.id) : null,
      h('div', { class: 'who' },
        h('h2', { id: 'conversation-title' }, actions.titleOf(c)),
        h('span', { class: 'muted' }, other ? trust(other) : `${c.memberCount} members`)),
      h('div', { class: 'tools', role: 'toolbar', 'aria-label': 'Conversation actions' },
        button(c.muted ? 'Unmute' : 'Mute', () => this.after(actions.setMuted(this.app, c, !c.muted))),
        button(c.archived ? 'Unarchive' : 'Archive', () => this.after(actions.setArchived(this.app, c, !c.archived))),
        other ? button(blocked ? 'Unblock' : 'Block', () =>
          this.after(blocked ? actions.unblock(this.app, other) : actions.block(this.app, other))) : null,
        other ? button('Report', () => this.after(actions.report(this.app, c, other))) : null));
  }

  renderBanners() {
    const c = this.conversation;
    const banners = [];
    if (c.context) {
      banners.push(h('div', { class: 'banner context', role: 'note', 'aria-label': 'About' },
        h('span', { class: 'context-type' }, c.context.type),
        h('strong', {}, c.context.title ?? c.context.id),
        c.context.subtitle ? h('span', { class: 'muted' }, c.context.subtitle) : null));
    }
    if (c.requestState === 'pending' && c.otherParticipant) {
      const other = c.otherParticipant;
      banners.push(h('div', { class: 'banner request', role: 'region', 'aria-label': 'Message request' },
        h('p', {}, `${other.name} wants to message you. They won't know you've seen this until you accept or reply.`),
        h('div', { class: 'row' }, requestButtons(this.app, c, () => this.refresh()))));
    }
    fill(this.banners, banners);
  }

  // ---- messages -------------------------------------------------------------

  renderMessages() {
    const c = this.conversation;
    const stored = [...this.messages.values()].sort((a, b) => a.seq - b.seq);
    const waiting = [...this.local.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    const items = [];
    if (this.hasMore) items.push(h('li', { class: 'older' }, h('button', { type: 'button', class: 'link', onclick: () => this.loadOlder() }, 'Show earlier messages')));
    if (!stored.length && !waiting.length) items.push(h('li', { class: 'empty muted' }, 'No messages yet. Say hello!'));
    let day = null;
    for (const item of [...stored, ...waiting]) {
      const when = item.createdAt;
      if (dayKey(when) !== day) {
        day = dayKey(when);
        items.push(h('li', { class: 'day', role: 'separator' }, h('span', {}, dayHeading(when))));
      }
      items.push('seq' in item && item.id ? this.storedMessage(item, c) : this.localMessage(item));
    }
    const nearBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 80;
    fill(this.list, items);
    if (nearBottom) this.list.scrollTop = this.list.scrollHeight;
  }

  storedMessage(m, c) {
    const mine = m.senderId === this.app.me.id;
    if (m.kind === 'system') {
      return h('li', { class: 'message system', 'data-seq': m.seq }, h('p', {}, m.body));
    }
    const body = m.redacted
      ? h('p', { class: 'body redacted' }, 'This message was removed.')
      : h('p', { class: 'body' }, textWithLinks(m.body, m.links?.live !== false && c.requestState !== 'pending'));
    const readByOther = mine && c.otherLastReadSeq != null && c.otherLastReadSeq >= m.seq;
    const sender = !mine && c.kind === 'group' ? h('span', { class: 'sender' }, this.app.nameOf(m.senderId)) : null;
    return h('li', { class: `message ${mine ? 'mine' : 'theirs'}`, 'data-seq': m.seq, 'data-client-id': m.clientMessageId },
      sender,
      body,
      (m.attachments ?? []).map((a) => attachment(this.app, a)),
      h('p', { class: 'meta' },
        h('time', { datetime: m.createdAt, title: new Date(m.createdAt).toLocaleString() }, timeOfDay(m.createdAt)),
        mine ? h('span', { class: 'state', 'data-state': readByOther ? 'read' : 'sent' }, readByOther ? 'Read' : 'Sent') : null,
        !mine && !m.redacted && c.otherParticipant
          ? h('button', { type: 'button', class: 'link small', onclick: () => actions.report(this.app, c, c.otherParticipant, m) }, 'Report')
          : null));
  }

  localMessage(entry) {
    const failed = entry.status === 'failed';
    const waiting = entry.error?.code === 'rate_limited' && !failed;
    const state = failed ? `Not sent: ${entry.error?.message ?? 'failed'}` : waiting ? 'Waiting to send…' : 'Sending…';
    return h('li', { class: `message mine ${failed ? 'failed' : 'pending'}`, 'data-client-id': entry.clientMessageId },
      h('p', { class: 'body' }, entry.body),
      h('p', { class: 'meta' },
        h('span', { class: 'state', 'data-state': failed ? 'failed' : 'sending', role: failed ? 'alert' : null }, state),
        failed ? h('button', { type: 'button', class: 'link small', onclick: () => this.app.client.retry(entry.clientMessageId) }, 'Retry') : null,
        failed ? h('button', { type: 'button', class: 'link small', onclick: () => this.discard(entry) }, 'Discard') : null));
  }

  discard(entry) {
    this.app.client.discard(entry.clientMessageId);
    this.app.outbox.delete(entry.clientMessageId);
    this.local.delete(entry.clientMessageId);
    this.renderMessages();
  }

  async loadOlder() {
    if (this.loadingOlder || !this.hasMore) return;
    this.loadingOlder = true;
    try {
      const oldest = Math.min(...this.messages.keys());
      const page = await this.app.client.request('GET', `/chat/conversations/${this.id}/messages?before=${oldest}&limit=${PAGE}`);
      const before = this.list.scrollHeight - this.list.scrollTop;
      for (const message of page.items) this.messages.set(message.seq, message);
      this.hasMore = page.hasMore;
      this.renderMessages();
      this.list.scrollTop = this.list.scrollHeight - before;
    } catch (e) {
      toast(e.message);
    } finally {
      this.loadingOlder = false;
    }
  }

  onScroll() {
    if (this.list.scrollTop < 40) this.loadOlder();
    this.markRead();
  }

  /** A message of this conversation arrived (or one of ours was stored). */
  received(message) {
    this.messages.set(message.seq, message);
    this.local.delete(message.clientMessageId);
    this.stopTyping(message.senderId);
    this.renderMessages();
    this.markRead();
  }

  outboxChanged(entry) {
    if (entry.status === 'sent') this.local.delete(entry.clientMessageId);
    else this.local.set(entry.clientMessageId, entry);
    this.renderMessages();
    if (entry.error?.code === 'rate_limited' && entry.error.retryAfter) {
      this.app.holdComposer(`You are sending too fast. Try again in ${entry.error.retryAfter} s.`, entry.error.retryAfter);
    }
    if (entry.status === 'failed') this.app.learnRefusal(this.conversation, entry.error);
  }

  updated(message) {
    if (this.messages.has(message.seq)) this.received(message);
  }

  /** Reads up to the newest message while the page is visible and at the bottom. */
  markRead() {
    if (document.visibilityState !== 'visible' || !this.messages.size) return;
    const atBottom = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 80;
    if (!atBottom) return;
    const newest = Math.max(...this.messages.keys());
    if (newest > (this.conversation.lastReadSeq ?? 0)) this.app.client.markRead(this.id, newest);
  }

  // ---- typing ---------------------------------------------------------------

  startTyping(userId) {
    clearTimeout(this.typing.get(userId));
    // The server refreshes every 2 s while they type; silence means they stopped.
    this.typing.set(userId, setTimeout(() => this.stopTyping(userId), 6000));
    this.renderTyping();
  }

  stopTyping(userId) {
    clearTimeout(this.typing.get(userId));
    if (this.typing.delete(userId)) this.renderTyping();
  }

  renderTyping() {
    const names = [...this.typing.keys()].map((id) => this.app.nameOf(id));
    fill(this.typingLine, names.length ? `${names.join(', ')} ${names.length > 1 ? 'are' : 'is'} typing…` : '');
  }

  // ---- composer -------------------------------------------------------------

  renderComposer() {
    const reason = this.app.composerBlock(this.conversation);
    if (reason) {
      fill(this.composer, h('div', { class: 'composer disabled', role: 'status' },
        h('p', {}, reason.text), reason.action ?? null));
      return;
    }
    const existing = this.composer.querySelector('form');
    if (existing) return;
    const input = h('textarea', {
      name: 'body', rows: 1, maxlength: 4000, required: true,
      'aria-label': 'Message', placeholder: 'Write a message',
    });
    const form = h('form', { class: 'composer' }, input, h('button', { type: 'submit', class: 'primary' }, 'Send'));
    input.addEventListener('input', () => {
      if (input.value.trim()) this.app.client.typing(this.id);
      else this.app.client.stopTyping(this.id);
    });
    input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const body = input.value.trim();
      if (!body) return;
      input.value = '';
      this.app.client.stopTyping(this.id);
      const entry = await this.app.client.send(this.id, body);
      this.app.outbox.set(entry.clientMessageId, entry);
      this.local.set(entry.clientMessageId, entry);
      this.renderMessages();
      this.list.scrollTop = this.list.scrollHeight;
    });
    fill(this.composer, form);
  }

  /** After an action: the server's view of the conversation, then a redraw. */
  async after(action) {
    if (await action) await this.refresh();
  }

  async refresh() {
    await this.app.refreshConversation(this.id);
    if (this.app.conversations.has(this.id)) this.render();
  }

  close() {
    for (const timer of this.typing.values()) clearTimeout(timer);
    this.app.client.stopTyping(this.id);
  }
}

/** Role and, when the platform vouches for them, "verified". */
export function trust(user) {
  return [user.role, user.verified ? '✓ verified' : 'not verified'].join(' · ');
}

/** Accept, decline, block and report for a request made to the viewer. */
export function requestButtons(app, conversation, done) {
  const other = conversation.otherParticipant;
  const run = (action) => async () => {
    if (await action()) await done();
  };
  return [
    h('button', { type: 'button', class: 'primary', onclick: run(() => actions.accept(app, conversation)) }, 'Accept'),
    h('button', { type: 'button', class: 'secondary', onclick: run(() => actions.decline(app, conversation)) }, 'Decline'),
    h('button', { type: 'button', class: 'secondary', onclick: run(() => actions.block(app, other)) }, 'Block'),
    h('button', { type: 'button', class: 'secondary', onclick: run(() => actions.report(app, conversation, other)) }, 'Report'),
  ];
}

/** A body with its links: anchors when they may be followed, else text. */
function textWithLinks(body, live) {
  if (!live) return body;
  const parts = [];
  let last = 0;
  for (const match of body.matchAll(URL_PATTERN)) {
    parts.push(body.slice(last, match.index));
    parts.push(h('a', { href: match[0], rel: 'noopener noreferrer nofollow', target: '_blank' }, match[0]));
    last = match.index + match[0].length;
  }
  parts.push(body.slice(last));
  return parts;
}

function attachment(app, a) {
  const name = a.filename ?? 'attachment';
  if (a.status !== 'available') {
    return h('p', { class: 'attachment muted' }, `${name} (${a.status === 'blocked' ? 'blocked: failed the virus scan' : 'being checked…'})`);
  }
  const open = async () => {
    try {
      const { url } = await app.client.request('GET', `/chat/attachments/${a.id}/download-url`);
      window.open(url, '_blank', 'noopener');
    } catch (e) {
      toast(e.message);
    }
  };
  return h('p', { class: 'attachment' }, h('button', { type: 'button', class: 'link', onclick: open }, `📎 ${name}`));
}
