// What a user can do to a conversation or a person, from any screen: answer
// a request, mute, archive, block, report. Each calls the server and lets
// the caller refresh; failures are announced, never swallowed.

import { h, dialog, field, toast } from './dom.js';

export const REPORT_CATEGORIES = [
  ['spam', 'Spam'],
  ['harassment', 'Harassment'],
  ['scam', 'Scam or fraud'],
  ['inappropriate', 'Inappropriate content'],
  ['other', 'Something else'],
];

/** Runs a server call, announcing `done` or the server's refusal. */
export async function attempt(call, done) {
  try {
    const answer = await call();
    if (done) toast(done);
    return answer ?? true;
  } catch (e) {
    toast(e.message || 'Something went wrong.');
    return null;
  }
}

/** Who a conversation is with, as its title. */
export function titleOf(conversation) {
  if (conversation.kind === 'group') return conversation.context?.title ?? 'Group conversation';
  return conversation.otherParticipant?.name ?? 'Conversation';
}

export const accept = (app, conversation) =>
  attempt(() => app.client.request('POST', `/chat/conversations/${conversation.id}/accept`), 'Request accepted.');

export const decline = (app, conversation) =>
  attempt(() => app.client.request('POST', `/chat/conversations/${conversation.id}/decline`), 'Request declined.');

export function setMuted(app, conversation, muted) {
  return attempt(
    () => app.client.request(muted ? 'POST' : 'DELETE', `/chat/conversations/${conversation.id}/mute`),
    muted ? 'Notifications muted.' : 'Notifications on.',
  );
}

export function setArchived(app, conversation, archived) {
  return attempt(
    () => app.client.request(archived ? 'POST' : 'DELETE', `/chat/conversations/${conversation.id}/archive`),
    archived ? 'Conversation archived.' : 'Conversation back in the inbox.',
  );
}

export async function block(app, user) {
  const confirmed = await dialog(`Block ${user.name}?`,
    h('p', {}, `${user.name} will not be able to message you, and you will not see each other's typing, presence or read receipts. They are not told.`),
    'Block');
  if (!confirmed) return null;
  const done = await attempt(() => app.client.request('POST', '/chat/blocks', { userId: user.id }), `${user.name} is blocked.`);
  if (done) app.blocked.add(user.id);
  return done;
}

export async function unblock(app, user) {
  const done = await attempt(() => app.client.request('DELETE', `/chat/blocks/${encodeURIComponent(user.id)}`), `${user.name} is unblocked.`);
  if (done) app.blocked.delete(user.id);
  return done;
}

/** The report form: a category, a description, and whether to block too. */
export async function report(app, conversation, user, message) {
  const values = await dialog(`Report ${user.name}`, [
    message ? h('blockquote', { class: 'quoted' }, message.body) : null,
    field('What is wrong?', h('select', { name: 'category', required: true },
      REPORT_CATEGORIES.map(([value, label]) => h('option', { value }, label)))),
    field('Tell us more (optional)', h('textarea', { name: 'description', rows: 4, maxlength: 2000 })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'block' }), `Also block ${user.name}`),
  ], 'Send report');
  if (!values) return null;
  const body = {
    reportedUserId: user.id,
    conversationId: conversation?.id,
    messageId: message?.id,
    category: values.category,
    description: values.description || undefined,
    block: values.block === 'on',
  };
  const done = await attempt(() => app.client.request('POST', '/chat/reports', body),
    'Thank you. A moderator will look at your report.');
  if (done && body.block) app.blocked.add(user.id);
  return done;
}
