// Who is signed in, and where the app's tokens come from.
//
// In production the host platform hands the app its tokens: with
// `PARLEY_APP_TOKEN_URL` set, the app fetches `{token}` from that URL of the
// platform's (with the platform's own cookies) whenever it needs a fresh
// one. A platform that hosts the page itself imports `mount()` from
// `/app/chat.js` and passes its own `getToken` callback instead.
//
// With the development sign-in switched on (`/app/config.json` says so),
// the app offers a form that mints a token for a typed user id, name and
// role (`POST /dev/token`); the token is kept in this browser's
// localStorage, so that every tab of one browser profile is the same user.

import { h, fill, field } from './dom.js';

const DEV_KEY = 'parley.devSession';
export const ROLES = ['candidate', 'recruiter', 'company', 'admin'];

/** The claims of a token (its payload), to know who the app speaks for. */
export function claims(token) {
  const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
  const json = decodeURIComponent(
    [...atob(payload)].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''),
  );
  const { sub, name, role } = JSON.parse(json);
  return { id: sub, name: name ?? sub, role: role ?? 'candidate' };
}

/**
 * Resolves with `{ user, getToken, signOut }` once someone is signed in:
 * through the platform's token URL, a kept development session, or the
 * development sign-in form shown in `root`.
 */
export async function signIn(root) {
  const config = await (await fetch('/app/config.json')).json();
  if (config.tokenUrl) {
    const getToken = async () => {
      const answer = await fetch(config.tokenUrl, { credentials: 'include' });
      if (!answer.ok) throw new Error(`the platform gave no token (${answer.status})`);
      return (await answer.json()).token;
    };
    const token = await getToken();
    return { user: claims(token), getToken, signOut: null };
  }
  if (!config.devLogin) {
    fill(root, h('main', { class: 'centered' }, h('h1', {}, 'Parley'),
      h('p', {}, 'Sign in through the site that brought you here.')));
    return new Promise(() => {});
  }
  const kept = JSON.parse(localStorage.getItem(DEV_KEY) ?? 'null');
  const session = kept && claims(kept.token) ? kept : await devSignInForm(root);
  return {
    user: claims(session.token),
    getToken: async () => {
      const current = JSON.parse(localStorage.getItem(DEV_KEY) ?? 'null');
      if (current?.token) return current.token;
      throw new Error('signed out');
    },
    signOut: () => {
      localStorage.removeItem(DEV_KEY);
      location.reload();
    },
  };
}

function devSignInForm(root) {
  return new Promise((resolve) => {
    const error = h('p', { class: 'error', role: 'alert' });
    const form = h('form', { class: 'card sign-in', 'aria-labelledby': 'sign-in-title' },
      h('h1', { id: 'sign-in-title' }, 'Sign in to Parley'),
      h('p', { class: 'muted' }, 'Development sign-in: any user id, for trying Parley locally.'),
      field('User id', h('input', { name: 'userId', required: true, autocomplete: 'username', maxlength: 128 })),
      field('Name', h('input', { name: 'name', required: true, maxlength: 100 })),
      field('Role', h('select', { name: 'role' }, ROLES.map((r) => h('option', { value: r }, r)))),
      error,
      h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const values = Object.fromEntries(new FormData(form));
      const answer = await fetch('/dev/token', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(values),
      });
      const json = await answer.json();
      if (!answer.ok) {
        fill(error, json.error?.message ?? `Could not sign in (${answer.status}).`);
        return;
      }
      const session = { token: json.token };
      localStorage.setItem(DEV_KEY, JSON.stringify(session));
      resolve(session);
    });
    fill(root, h('main', { class: 'centered' }, form));
    root.classList.remove('loading');
    root.removeAttribute('aria-busy');
    form.querySelector('input').focus();
  });
}
