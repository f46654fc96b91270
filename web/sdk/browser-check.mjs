// The SDK in real Chromium (run by tests/api/browser.rs, which starts the
// server with `http://127.0.0.1:PAGE_PORT` as an allowed origin and passes
// PARLEY_URL, PAGE_PORT, ALICE_TOKEN, BOB_TOKEN, CONVERSATION, CHROMIUM and
// PLAYWRIGHT_CORE).
//
// A page of the host platform (served here on PAGE_PORT: another origin,
// on loopback like the test server, as browsers keep other pages from
// loopback addresses) imports the SDK from Parley cross-origin, gets a
// ticket, connects over WebSocket, receives live and sends; no console error
// may appear. With BLOCK_WEBSOCKET=1, PARLEY_URL is an nginx that does not
// pass WebSocket upgrades on (as some proxies do): the SDK must fall back to
// Server-Sent Events and work the same (the one console error allowed is the
// failed socket's own).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';

const { PARLEY_URL, PAGE_PORT, ALICE_TOKEN, BOB_TOKEN, CONVERSATION, CHROMIUM, PLAYWRIGHT_CORE } =
  process.env;
const blockWebSocket = process.env.BLOCK_WEBSOCKET === '1';
const { chromium } = await import(PLAYWRIGHT_CORE);

const page_html = `<!doctype html><meta charset="utf-8"><title>shop</title>
<script type="module">
  import { ParleyClient } from ${JSON.stringify(`${PARLEY_URL}/sdk/parley.js`)};
  window.received = [];
  const client = new ParleyClient({
    baseUrl: ${JSON.stringify(PARLEY_URL)},
    getToken: async () => ${JSON.stringify(BOB_TOKEN)},
  });
  client.addEventListener('message', (e) => window.received.push(e.detail.body));
  client.addEventListener('status', (e) => {
    window.status = e.detail.status;
    window.transport = e.detail.transport;
  });
  window.client = client;
  await client.start();
  await client.open(${JSON.stringify(CONVERSATION)});
  window.ready = true;
</script>`;

const pages = createServer((_, response) => {
  response.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  response.end(page_html);
});
await new Promise((resolve) => pages.listen(Number(PAGE_PORT), '127.0.0.1', resolve));
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
const errors = [];
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('requestfailed', (r) => errors.push(`${r.url()}: ${r.failure()?.errorText}`));
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(`http://127.0.0.1:${PAGE_PORT}/`);
  await page.waitForFunction(() => window.ready && window.status === 'open', null, {
    timeout: 15_000,
  });
  assert.equal(await page.evaluate(() => window.transport), blockWebSocket ? 'sse' : 'ws');

  // Alice writes from elsewhere; the page shows it live.
  const sent = await fetch(`${PARLEY_URL}/chat/conversations/${CONVERSATION}/messages`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ALICE_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ body: 'hello page', clientMessageId: `alice-${Date.now()}` }),
  });
  assert.equal(sent.status, 201);
  await page.waitForFunction(() => window.received.includes('hello page'), null, {
    timeout: 10_000,
  });

  // The page writes back through the SDK's outbox.
  await page.evaluate((c) => window.client.send(c, 'hello alice'), CONVERSATION);
  await page.waitForFunction(() => window.received.includes('hello alice'), null, {
    timeout: 10_000,
  });
  const history = await (
    await fetch(`${PARLEY_URL}/chat/conversations/${CONVERSATION}/messages`, {
      headers: { authorization: `Bearer ${ALICE_TOKEN}` },
    })
  ).json();
  assert.deepEqual(
    history.items.map((m) => m.body),
    ['hello page', 'hello alice'],
  );
  assert.deepEqual(await page.evaluate(() => window.received), ['hello page', 'hello alice']);
  const blockedSocket = /\/ws\?ticket=/;
  const unexpected = errors.filter((e) => !(blockWebSocket && blockedSocket.test(e)));
  assert.deepEqual(unexpected, [], 'no console errors');
  console.log(`sdk in chromium over ${blockWebSocket ? 'SSE' : 'WebSocket'}: ok`);
} catch (e) {
  console.error('console errors:', errors);
  throw e;
} finally {
  await browser.close();
  pages.close();
}
