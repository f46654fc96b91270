// Small DOM helpers shared by the chat app and the moderation console.
//
// Every piece of text a user or the server wrote goes into the page as a
// text node (`h` never parses markup), so message bodies, names and context
// titles are shown exactly as written and can never become markup.

/**
 * Creates an element: `h('button', { class: 'x', onclick }, 'Send')`.
 * Attributes whose value is `false`, `null` or `undefined` are left out;
 * `on*` functions become listeners; children may be strings, nodes, arrays
 * or nothing.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'value') {
      element.value = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });
const shortFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short' });
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });

/** A server timestamp (ISO 8601) in the viewer's locale: the time of day. */
export const timeOfDay = (iso) => timeFormat.format(new Date(iso));
/** The day heading of the message list ("Tuesday, 1 December 2026"). */
export const dayHeading = (iso) => dayFormat.format(new Date(iso));
/** Date and time, for lists of records. */
export const dateTime = (iso) => (iso ? fullFormat.format(new Date(iso)) : '');
/** The local calendar day of a timestamp, to tell when a separator is due. */
export const dayKey = (iso) => new Date(iso).toDateString();

const ISO_TIMESTAMP = /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})/g;

/** A server's sentence with its ISO timestamps in the viewer's locale. */
export const localiseTimes = (text) => text.replace(ISO_TIMESTAMP, (iso) => fullFormat.format(new Date(iso)));

/** Today: the time; before: the date. For inbox rows. */
export function shortWhen(iso) {
  if (!iso) return '';
  return dayKey(iso) === new Date().toDateString() ? timeOfDay(iso) : shortFormat.format(new Date(iso));
}

/** An announcement for screen readers and a short-lived visible toast. */
export function toast(text) {
  let region = document.getElementById('toast');
  if (!region) {
    region = h('div', { id: 'toast', role: 'status', 'aria-live': 'polite' });
    document.body.append(region);
  }
  fill(region, text);
  region.classList.add('shown');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => region.classList.remove('shown'), 4000);
}

/**
 * A modal dialog built from `content`, resolved with the submitted form's
 * values or `null` when cancelled (Escape, the Cancel button).
 */
export function dialog(title, content, submitLabel) {
  return new Promise((resolve) => {
    const form = h('form', { method: 'dialog', class: 'dialog-form' },
      h('h2', {}, title),
      content,
      h('div', { class: 'row end' },
        h('button', { type: 'button', class: 'secondary', onclick: () => close(null) }, 'Cancel'),
        h('button', { type: 'submit', class: 'primary' }, submitLabel)));
    const element = h('dialog', { 'aria-label': title }, form);
    const close = (value) => {
      element.close();
      element.remove();
      resolve(value);
    };
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      close(Object.fromEntries(new FormData(form)));
    });
    element.addEventListener('cancel', (e) => {
      e.preventDefault();
      close(null);
    });
    document.body.append(element);
    element.showModal();
  });
}

/** A labelled form field. */
export function field(label, control) {
  return h('label', { class: 'field' }, h('span', {}, label), control);
}
