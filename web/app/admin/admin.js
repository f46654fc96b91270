// The moderation console (/app/admin/, role admin): the reports queue with
// its filters, one report with its frozen evidence bundle, the actions
// (warn, suspend for a duration, ban, dismiss, redact a message), and the
// audit log with its filters. Every call is the REST API's admin surface;
// the server refuses anyone who is not an admin.

import { ParleyClient } from '/sdk/parley.js';
import { h, fill, dateTime, dialog, field, toast } from '../dom.js';
import { signIn } from '../session.js';
import { attempt } from '../actions.js';

const root = document.getElementById('root');
const session = await signIn(root);
const client = new ParleyClient({ baseUrl: location.origin, getToken: session.getToken });
const api = (method, path, body) => client.request(method, path, body);

const queue = h('section', { 'aria-labelledby': 'queue-title' });
const detail = h('section', { 'aria-labelledby': 'report-title', hidden: true });
const audit = h('section', { 'aria-labelledby': 'audit-title' });
const state = { status: 'open', auditFilter: {} };

fill(root, h('div', { class: 'console' },
  h('header', { class: 'row' },
    h('h1', {}, 'Moderation'),
    h('span', { class: 'muted' }, `${session.user.name} (${session.user.role})`),
    h('a', { href: '/app/' }, 'Back to chat'),
    session.signOut ? h('button', { type: 'button', class: 'link', onclick: session.signOut }, 'Sign out') : null),
  h('main', { id: 'main', class: 'console-main' }, queue, detail, audit)));
root.classList.remove('loading');
root.removeAttribute('aria-busy');

if (session.user.role !== 'admin') {
  fill(queue, h('p', { role: 'alert' }, 'The moderation console is for administrators.'));
  audit.hidden = true;
} else {
  await Promise.all([loadQueue(), loadAudit()]);
}

// ---- the queue ----------------------------------------------------------------

async function loadQueue(cursor) {
  const status = h('select', { name: 'status', 'aria-label': 'Status' },
    ['open', 'actioned', 'dismissed'].map((s) => h('option', { value: s, selected: s === state.status }, s)));
  status.addEventListener('change', () => {
    state.status = status.value;
    loadQueue();
  });
  const query = new URLSearchParams({ status: state.status, limit: '50' });
  if (cursor) query.set('cursor', cursor);
  const page = await api('GET', `/admin/chat/reports?${query}`);
  const rows = page.items.map((r) => h('tr', { 'data-report': r.id },
    h('td', {}, h('time', { datetime: r.createdAt }, dateTime(r.createdAt))),
    h('td', {}, r.reportedUserId),
    h('td', {}, r.source === 'automated' ? `automated: ${r.signal}` : r.category),
    h('td', {}, r.reporterId ?? '—'),
    h('td', { class: 'muted' }, r.description),
    h('td', {}, h('button', { type: 'button', class: 'secondary', onclick: () => openReport(r.id) }, 'Open'))));
  fill(queue,
    h('h2', { id: 'queue-title' }, 'Reports'),
    h('div', { class: 'filters' }, field('Status', status)),
    rows.length
      ? h('table', {}, h('thead', {}, h('tr', {}, ['Filed', 'Reported user', 'Why', 'Reporter', 'Description', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))
      : h('p', { class: 'muted' }, `No ${state.status} reports.`),
    page.nextCursor ? h('button', { type: 'button', class: 'link', onclick: () => loadQueue(page.nextCursor) }, 'Next page') : null);
}

// ---- one report -------------------------------------------------------------------

async function openReport(id) {
  const report = await api('GET', `/admin/chat/reports/${id}`);
  const evidence = report.evidence ?? {};
  const names = new Map((evidence.participants ?? []).map((p) => [p.id, p.name]));
  const act = (action) => async () => {
    let body = { action };
    if (action === 'suspend') {
      const values = await dialog(`Suspend ${report.reportedUserId}`, [
        field('For how many hours (1–8760)?', h('input', { name: 'hours', type: 'number', min: 1, max: 8760, value: 24, required: true })),
        field('Note (sent to the audit log)', h('textarea', { name: 'note', rows: 2, maxlength: 1000 })),
      ], 'Suspend');
      if (!values) return;
      body = { action, durationHours: Number(values.hours), note: values.note };
    } else if (action === 'warn' || action === 'ban') {
      const values = await dialog(action === 'warn' ? `Warn ${report.reportedUserId}` : `Ban ${report.reportedUserId}`,
        field(action === 'warn' ? 'Message to the user (optional)' : 'Note (optional)', h('textarea', { name: 'note', rows: 3, maxlength: 1000 })),
        action === 'warn' ? 'Warn' : 'Ban');
      if (!values) return;
      body = { action, note: values.note };
    }
    if (await attempt(() => api('POST', `/admin/chat/reports/${id}/action`, body), `Done: ${action}.`)) {
      await Promise.all([openReport(id), loadQueue(), loadAudit()]);
    }
  };
  const redact = (message) => async () => {
    const values = await dialog('Remove this message for its participants', [
      h('blockquote', { class: 'quoted' }, message.body),
      field('Reason', h('input', { name: 'reason', required: true, maxlength: 1000 })),
    ], 'Remove');
    if (!values) return;
    if (await attempt(() => api('POST', `/admin/chat/messages/${message.id}/redact`, { reason: values.reason }), 'Message removed.')) {
      await loadAudit();
    }
  };
  const conversation = evidence.conversation;
  detail.hidden = false;
  fill(detail,
    h('h2', { id: 'report-title', tabindex: -1 }, `Report on ${report.reportedUserId}`),
    h('dl', {},
      h('dt', {}, 'Status'), h('dd', { 'data-status': report.status }, report.status),
      h('dt', {}, 'Why'), h('dd', {}, report.source === 'automated' ? `automated signal: ${report.signal}` : report.category),
      h('dt', {}, 'Reporter'), h('dd', {}, report.reporterId ?? 'Parley'),
      h('dt', {}, 'Description'), h('dd', {}, report.description || '—'),
      h('dt', {}, 'Evidence captured'), h('dd', {}, dateTime(evidence.capturedAt)),
      conversation ? [h('dt', {}, 'Conversation'), h('dd', {}, `${conversation.id}${conversation.contextTitle ? ` · ${conversation.contextTitle}` : ''}`)] : null,
      h('dt', {}, 'Participants'),
      h('dd', {}, (evidence.participants ?? []).map((p) => `${p.name} (${p.id}, ${p.role})`).join(', ') || '—')),
    h('h3', {}, 'Messages, as they were when reported'),
    (evidence.messages ?? []).length
      ? h('ol', { class: 'evidence', 'aria-label': 'Evidence' }, evidence.messages.map((m) =>
        h('li', { class: m.id === evidence.reportedMessageId ? 'reported' : null, 'data-message': m.id },
          h('p', { class: 'small muted' }, `${names.get(m.senderId) ?? m.senderId} · ${dateTime(m.createdAt)}${m.redactedAt ? ' · removed later' : ''}${m.id === evidence.reportedMessageId ? ' · reported' : ''}`),
          h('p', { class: 'body' }, m.body),
          h('button', { type: 'button', class: 'link small', onclick: redact(m) }, 'Remove message'))))
      : h('p', { class: 'muted' }, 'No messages.'),
    report.status === 'open'
      ? h('div', { class: 'row', role: 'toolbar', 'aria-label': 'Act on the report' },
        h('button', { type: 'button', class: 'secondary', onclick: act('warn') }, 'Warn'),
        h('button', { type: 'button', class: 'secondary', onclick: act('suspend') }, 'Suspend'),
        h('button', { type: 'button', class: 'secondary', onclick: act('ban') }, 'Ban'),
        h('button', { type: 'button', class: 'secondary', onclick: act('dismiss') }, 'Dismiss'))
      : h('p', { class: 'muted' }, `This report is ${report.status}.`));
  detail.querySelector('h2').focus();
}

// ---- the audit log ------------------------------------------------------------------

async function loadAudit(cursor) {
  const filters = h('form', { class: 'filters', 'aria-label': 'Filter the audit log' },
    ['actor', 'target', 'action'].map((name) =>
      field(name[0].toUpperCase() + name.slice(1), h('input', { name, value: state.auditFilter[name] ?? '' }))),
    h('button', { type: 'submit', class: 'secondary' }, 'Filter'));
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    state.auditFilter = Object.fromEntries([...new FormData(filters)].filter(([, v]) => v));
    loadAudit().catch((error) => toast(error.message));
  });
  const query = new URLSearchParams({ ...state.auditFilter, limit: '50' });
  if (cursor) query.set('cursor', cursor);
  const page = await api('GET', `/admin/chat/audit?${query}`);
  fill(audit,
    h('h2', { id: 'audit-title' }, 'Audit log'),
    filters,
    page.items.length
      ? h('table', {}, h('thead', {}, h('tr', {}, ['When', 'Who', 'Action', 'Target', 'Details'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, page.items.map((row) => h('tr', { 'data-action': row.action },
          h('td', {}, h('time', { datetime: row.at }, dateTime(row.at))),
          h('td', {}, row.actorId ?? 'Parley'),
          h('td', {}, row.action),
          h('td', {}, [row.targetType, row.targetId].filter(Boolean).join(' ')),
          h('td', {}, h('pre', { class: 'details' }, JSON.stringify(row.details)))))))
      : h('p', { class: 'muted' }, 'Nothing recorded matches.'),
    page.nextCursor ? h('button', { type: 'button', class: 'link', onclick: () => loadAudit(page.nextCursor) }, 'Older entries') : null);
}
