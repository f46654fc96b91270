// The web app in real Chromium, as people use it (run by tests/api/webapp.rs,
// one scenario per run, several runs in parallel).
//
// Environment: PARLEY_URL (the server), APP_URL (where the pages load the app
// from: the server, or a proxy in front of it), SCENARIO, FIXTURE (JSON: the
// users and the context the test registered), CHROMIUM, PLAYWRIGHT_CORE,
// SCREENSHOTS (a directory for the screenshots of every screen).
//
// Each user signs in through the development sign-in form in a browser
// context of their own. No console error may appear, except the ones a
// scenario provokes on purpose (listed where it does).
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';

const { PARLEY_URL, APP_URL, SCENARIO, FIXTURE, CHROMIUM, PLAYWRIGHT_CORE, SCREENSHOTS } = process.env;
const fixture = JSON.parse(FIXTURE);
const { chromium } = await import(PLAYWRIGHT_CORE);
const WAIT = { timeout: 15_000 };
mkdirSync(SCREENSHOTS, { recursive: true });

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
const errors = [];
/** Console errors a scenario expects (patterns), e.g. the refusal it provokes. */
const expected = [];

/** A browser context of `user`'s, signed in through the form, on `path`. */
async function signIn(user, path = '/app/') {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await watch(await context.newPage(), user.name);
  await page.goto(`${APP_URL}${path}`);
  await page.getByLabel('User id').fill(user.id);
  await page.getByLabel('Name', { exact: true }).fill(user.name);
  await page.getByLabel('Role').selectOption(user.role);
  await page.getByRole('button', { name: 'Sign in' }).click();
  if (path === '/app/') await connected(page);
  return { context, page };
}

/** Another tab of a signed-in user (the same browser profile). */
async function newTab(context, name, path = '/app/') {
  const page = await watch(await context.newPage(), name);
  await page.goto(`${APP_URL}${path}`);
  await connected(page);
  return page;
}

async function watch(page, who) {
  page.on('console', (m) => m.type() === 'error' && errors.push(`${who}: ${m.text()}`));
  page.on('pageerror', (e) => errors.push(`${who}: ${e}`));
  page.on('requestfailed', (r) => errors.push(`${who}: ${r.method()} ${r.url()}: ${r.failure()?.errorText}`));
  return page;
}

const connected = (page) => page.locator('.connection[data-status=open]').waitFor(WAIT);
const shot = (page, name) => page.screenshot({ path: `${SCREENSHOTS}/${SCENARIO}-${name}.png` });
const row = (page, conversation) => page.locator(`.inbox-row[data-conversation="${conversation}"]`);
const messages = (page, body) => page.locator('.messages .message .body', { hasText: body });
const composer = (page) => page.getByRole('textbox', { name: 'Message' });

async function send(page, body) {
  await composer(page).fill(body);
  await composer(page).press('Enter');
}

/** Opens the conversation about the fixture's context with `other` (as the platform links to it). */
async function openFromContext(page, other) {
  const { type, id } = fixture.context;
  await page.goto(`${APP_URL}/app/#/open?with=${encodeURIComponent(other.id)}&context=${type}:${id}`);
  await page.waitForURL(/#\/c\//, WAIT);
  await page.locator('.banner.context', { hasText: fixture.context.title }).waitFor(WAIT);
  return page.url().split('#/c/')[1];
}

async function api(user, method, path, body) {
  const answer = await fetch(`${PARLEY_URL}${path}`, {
    method,
    headers: { authorization: `Bearer ${await tokenOf(user)}`, 'content-type': 'application/json' },
    body: body && JSON.stringify(body),
  });
  return [answer.status, await answer.json().catch(() => null)];
}

async function tokenOf(user) {
  const answer = await fetch(`${PARLEY_URL}/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ userId: user.id, name: user.name, role: user.role }),
  });
  return (await answer.json()).token;
}

const scenarios = {
  /** Sign in, open from a context, live messages shown as typed, typing, badges across tabs, receipts, search. */
  async chat() {
    const { alice, bob } = fixture;
    const a = await signIn(alice);
    const b = await signIn(bob);
    await shot(b.page, 'empty-inbox');
    const conversation = await openFromContext(a.page, bob);
    await send(a.page, 'Hello Bob, thanks for applying!\nWhen could you talk? <b>a<b</b> <script>alert(1)</script> <3');
    // Live in Bob's inbox, with an unread badge; shown as typed, never as markup.
    await row(b.page, conversation).locator('.badge', { hasText: '1' }).waitFor(WAIT);
    await b.page.locator('.total-badge .badge', { hasText: '1' }).waitFor(WAIT);
    await shot(b.page, 'inbox');

    // Bob reads it in a second tab: the first tab's badges follow.
    const b2 = await newTab(b.context, 'Bob (tab 2)', `/app/#/c/${conversation}`);
    await messages(b2, 'When could you talk? <b>a<b</b> <script>alert(1)</script> <3').waitFor(WAIT);
    assert.equal(await b2.locator('.messages b, .messages script').count(), 0, 'no markup from a body');
    await row(b.page, conversation).locator('.badge').waitFor({ state: 'detached', ...WAIT });
    await b.page.locator('.total-badge .badge').waitFor({ state: 'detached', ...WAIT });

    // Typing shows on Alice's side and goes when Bob sends.
    await composer(b2).pressSequentially('Hi Alice');
    await a.page.locator('.typing', { hasText: `${bob.name} is typing` }).waitFor(WAIT);
    await shot(a.page, 'typing');
    await composer(b2).press('Enter');
    await messages(a.page, 'Hi Alice').waitFor(WAIT);
    await a.page.locator('.typing', { hasText: 'typing' }).waitFor({ state: 'detached', ...WAIT });
    assert.equal(await messages(b2, 'Hi Alice').count(), 1, 'own message shown once');

    // Read receipts, once both share them.
    for (const page of [a.page, b2]) {
      await page.getByLabel('Share read receipts').check();
      await page.locator('#toast', { hasText: 'Read receipts on' }).waitFor(WAIT);
    }
    await send(a.page, 'Can you start Monday?');
    await messages(b2, 'Can you start Monday?').waitFor(WAIT);
    const mine = a.page.locator('.message.mine', { hasText: 'Can you start Monday?' });
    await mine.locator('.state[data-state=read]').waitFor(WAIT);
    await a.page.locator('#toast.shown').waitFor({ state: 'detached', ...WAIT });
    await shot(a.page, 'conversation');
    // The inbox search filters by name and context.
    await b.page.getByLabel('Search conversations').fill('no such name');
    await b.page.locator('.inbox-list .empty').waitFor(WAIT);
    await b.page.getByLabel('Search conversations').fill(alice.name.split(' ')[0].toLowerCase());
    await row(b.page, conversation).waitFor(WAIT);
  },

  /** A stranger's request: one message until accepted; trust indicators; block. */
  async requests() {
    const { carol, dan } = fixture;
    const c = await signIn(carol);
    const d = await signIn(dan);
    await c.page.goto(`${APP_URL}/app/#/open?with=${encodeURIComponent(dan.id)}`);
    await c.page.waitForURL(/#\/c\//, WAIT);
    const conversation = c.page.url().split('#/c/')[1];
    await send(c.page, 'Hi! Is the role still open? My CV: https://cv.example/carol');
    await c.page.locator('.composer.disabled', { hasText: 'You can send more once they accept.' }).waitFor(WAIT);
    await shot(c.page, 'request-sent');

    // Dan: not in the inbox, under Requests with who is asking; the link is plain text.
    await d.page.getByRole('tab', { name: /Requests/ }).locator('.badge', { hasText: '1' }).waitFor(WAIT);
    assert.equal(await row(d.page, conversation).count(), 0, 'a request is not in the inbox');
    await d.page.getByRole('tab', { name: /Requests/ }).click();
    await row(d.page, conversation).locator('.row-trust', { hasText: 'candidate · not verified' }).waitFor(WAIT);
    await shot(d.page, 'requests');
    await row(d.page, conversation).getByRole('link').click();
    await d.page.getByRole('region', { name: 'Message request' }).waitFor(WAIT);
    await messages(d.page, 'https://cv.example/carol').waitFor(WAIT);
    assert.equal(await d.page.locator('.messages a[href^="https://cv.example"]').count(), 0, 'links are text in a request');
    await shot(d.page, 'request');
    await d.page.getByRole('region', { name: 'Message request' }).getByRole('button', { name: 'Accept' }).click();
    await d.page.getByRole('region', { name: 'Message request' }).waitFor({ state: 'detached', ...WAIT });

    // Carol may write again at once.
    await composer(c.page).waitFor(WAIT);
    await send(c.page, 'Thank you for accepting');
    await messages(d.page, 'Thank you for accepting').waitFor(WAIT);

    // Dan blocks Carol: her next message fails with the neutral answer.
    await d.page.getByRole('toolbar', { name: 'Conversation actions' }).getByRole('button', { name: 'Block' }).click();
    await d.page.getByRole('dialog').getByRole('button', { name: 'Block' }).click();
    await d.page.locator('.composer.disabled', { hasText: `You blocked ${carol.name}` }).waitFor(WAIT);
    expected.push(/status of 403/);
    await send(c.page, 'Are you there?');
    await c.page.locator('.message.failed .state', { hasText: 'Message could not be delivered.' }).waitFor(WAIT);
    await shot(c.page, 'not-delivered');
    assert.equal(await messages(d.page, 'Are you there?').count(), 0);
  },

  /** A report reaches the console with its evidence; a suspension reaches the composer; a removal the conversation. */
  async moderation() {
    const { erin, frank, admin } = fixture;
    const e = await signIn(erin);
    const f = await signIn(frank);
    const conversation = await openFromContext(e.page, frank);
    await send(e.page, 'Send me your bank password to get the job');
    await f.page.goto(`${APP_URL}/app/#/c/${conversation}`);
    const reported = f.page.locator('.message.theirs', { hasText: 'bank password' });
    await reported.getByRole('button', { name: 'Report' }).click();
    const form = f.page.getByRole('dialog');
    await form.getByLabel('What is wrong?').selectOption('scam');
    await form.getByLabel('Tell us more').fill('Asked for my bank password.');
    await shot(f.page, 'report');
    await form.getByRole('button', { name: 'Send report' }).click();
    await f.page.locator('#toast', { hasText: 'A moderator will look at your report' }).waitFor(WAIT);

    const m = await signIn(admin, '/app/admin/');
    const queued = m.page.locator('tr[data-report]', { hasText: erin.id }).filter({ hasText: 'scam' });
    await queued.waitFor(WAIT);
    await shot(m.page, 'queue');
    await queued.getByRole('button', { name: 'Open' }).click();
    const evidence = m.page.getByRole('list', { name: 'Evidence' });
    await evidence.locator('li.reported', { hasText: 'bank password' }).waitFor(WAIT);
    await m.page.locator('dd', { hasText: 'Asked for my bank password.' }).waitFor(WAIT);
    await m.page.getByRole('toolbar', { name: 'Act on the report' }).getByRole('button', { name: 'Suspend' }).click();
    await m.page.getByRole('dialog').getByLabel('For how many hours').fill('48');
    await m.page.getByRole('dialog').getByRole('button', { name: 'Suspend' }).click();
    await m.page.locator('dd[data-status=actioned]').waitFor(WAIT);
    await m.page.locator('tr[data-action="moderation.suspend"]').first().waitFor(WAIT);
    await shot(m.page, 'report-actioned');
    // The message is removed for the participants; the evidence keeps it.
    await evidence.locator('li.reported').getByRole('button', { name: 'Remove message' }).click();
    await m.page.getByRole('dialog').getByLabel('Reason').fill('Phishing');
    await m.page.getByRole('dialog').getByRole('button', { name: 'Remove' }).click();
    await f.page.locator('.message .redacted', { hasText: 'This message was removed.' }).waitFor(WAIT);
    assert.equal(await messages(f.page, 'bank password').count(), 0);
    // The audit log filters.
    await m.page.getByLabel('Action').fill('report.created');
    await m.page.getByRole('button', { name: 'Filter' }).click();
    await m.page.locator('tr[data-action="report.created"]').first().waitFor(WAIT);
    assert.equal(await m.page.locator('tr[data-action="moderation.suspend"]').count(), 0);
    await shot(m.page, 'audit');

    // Erin's composer says so, live.
    await e.page.locator('.composer.disabled', { hasText: 'cannot send messages until' }).waitFor(WAIT);
    await shot(e.page, 'suspended');
    // A non-admin gets no console.
    const [status] = await api(frank, 'GET', '/admin/chat/reports');
    assert.equal(status, 403);
  },

  /** Offline and back: what others sent meanwhile appears once; what was typed goes once. */
  async offline() {
    const { gina, hal } = fixture;
    const g = await signIn(gina);
    const x = await signIn(hal);
    const conversation = await openFromContext(g.page, hal);
    await send(g.page, 'Before the tunnel');
    await x.page.goto(`${APP_URL}/app/#/c/${conversation}`);
    await messages(x.page, 'Before the tunnel').waitFor(WAIT);

    await x.context.setOffline(true);
    await x.page.locator('.connection[data-status=offline]').waitFor(WAIT);
    await send(g.page, 'While you were away 1');
    await send(g.page, 'While you were away 2');
    await send(x.page, 'Typed in the tunnel');
    await x.page.locator('.message.pending', { hasText: 'Typed in the tunnel' }).waitFor(WAIT);
    await shot(x.page, 'offline');
    await x.context.setOffline(false);

    await connected(x.page);
    await messages(x.page, 'While you were away 2').waitFor(WAIT);
    await messages(g.page, 'Typed in the tunnel').waitFor(WAIT);
    await x.page.locator('.message.pending').waitFor({ state: 'detached', ...WAIT });
    for (const body of ['Before the tunnel', 'While you were away 1', 'While you were away 2', 'Typed in the tunnel']) {
      assert.equal(await messages(x.page, body).count(), 1, `${body}: once on Hal's screen`);
      assert.equal(await messages(g.page, body).count(), 1, `${body}: once on Gina's screen`);
    }
    const [, history] = await api(gina, 'GET', `/chat/conversations/${conversation}/messages`);
    assert.deepEqual(history.items.map((m) => m.body).sort(),
      ['Before the tunnel', 'Typed in the tunnel', 'While you were away 1', 'While you were away 2']);
    await shot(x.page, 'back-online');
  },

  /** With WebSockets blocked by the proxy the app loads through, it works over SSE. */
  async sse() {
    const { ivy, jon } = fixture;
    // The proxy's refusal of the upgrade is the one error this scenario expects.
    expected.push(/\/ws\?ticket=/);
    const i = await signIn(ivy);
    await i.page.locator('.connection[data-transport=sse]').waitFor(WAIT);
    const conversation = await openFromContext(i.page, jon);
    const [status, sent] = await api(jon, 'POST', `/chat/conversations/${conversation}/messages`, {
      body: 'Over the event stream', clientMessageId: `jon-${Date.now()}`,
    });
    assert.equal(status, 201, JSON.stringify(sent));
    await messages(i.page, 'Over the event stream').waitFor(WAIT);
    await send(i.page, 'And back over REST');
    await i.page.locator('.message.mine .state[data-state=sent]').waitFor(WAIT);
    const [, history] = await api(jon, 'GET', `/chat/conversations/${conversation}/messages`);
    assert.deepEqual(history.items.map((m) => m.body), ['Over the event stream', 'And back over REST']);
    await shot(i.page, 'sse');
  },
};

try {
  await scenarios[SCENARIO]();
  const unexpected = errors.filter((e) => !expected.some((pattern) => pattern.test(e)));
  assert.deepEqual(unexpected, [], 'no console errors');
  console.log(`web app in chromium, ${SCENARIO}: ok`);
} catch (e) {
  console.error('console errors:', errors);
  throw e;
} finally {
  await browser.close();
}
