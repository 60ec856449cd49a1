// The dashboard in a real browser (Debian's chromium, driven by playwright-core)
// against the real salesmetrics binary, as a person would use it:
//
// * the page loads the demo data with no console errors, and every KPI tile
//   shows exactly the value GetKpis returns for the same request;
// * choosing a team and another period shows that scope's and period's values;
// * an order ingested while the page is open appears within 2 s, no reload;
// * with --auth on, the API-key prompt appears and the key it takes works;
// * screenshots at desktop (1280×800) and phone (390×844) widths, and the
//   `report` command's HTML rendered the same way (report.png, and the whole
//   page in report-full.png), go to target/screenshots/.
//
// Usage: node tests/browser/dashboard.mjs --bin target/debug/salesmetrics \
//          --modules target/ci-tools [--chromium /usr/bin/chromium] [--out target/screenshots]

import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    bin: { type: 'string' },
    modules: { type: 'string' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    out: { type: 'string', default: 'target/screenshots' },
  },
});
const BIN = path.resolve(opts.bin);
const OUT = path.resolve(opts.out);
const { chromium } = createRequire(path.resolve(opts.modules) + '/')('playwright-core');
const ADMIN = 'admin-token-for-the-browser-test-0123456789';

let passed = 0;
let failed = 0;
let skipped = 0;
async function check(name, fn) {
  try {
    const outcome = await fn();
    if (typeof outcome === 'string' && outcome.startsWith('skip')) {
      skipped += 1;
      console.log(`skip ${name} (${outcome.slice(6)})`);
      return;
    }
    passed += 1;
    console.log(`ok   ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`FAIL ${name}\n     ${String(err && err.stack || err).split('\n').join('\n     ')}`);
  }
}
function assertEqual(actual, expected, what) {
  if (JSON.stringify(actual) !== JSON.stringify(expected)) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

// ---- the server -----------------------------------------------------------------

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// The environment without settings that would override the flags below.
function serverEnv() {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith('SALESMETRICS_') || name === 'DATABASE_URL') delete env[name];
  return env;
}

async function startServer(extraArgs = []) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'salesmetrics-browser-'));
  const port = await freePort();
  const child = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, '--database-url', `sqlite://${dir}/db.sqlite`, ...extraArgs], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: serverEnv(),
  });
  let log = '';
  child.stderr.on('data', (chunk) => { log += chunk; });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i += 1) {
    if (child.exitCode !== null) throw new Error(`the server exited: ${log}`);
    try {
      const response = await fetch(url + '/');
      if (response.ok) break;
    } catch { /* not listening yet */ }
    if (i > 300) throw new Error(`the server did not answer within 60 s: ${log}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    url,
    cli: (...args) => execFileSync(BIN, args, { env: { ...process.env, SALESMETRICS_SERVER: url }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }),
    stop: () => { child.kill('SIGTERM'); rmSync(dir, { recursive: true, force: true }); },
    log: () => log,
  };
}

async function api(server, method, body, key) {
  const headers = { 'content-type': 'application/json' };
  if (key) headers.authorization = `Bearer ${key}`;
  const response = await fetch(`${server.url}/salesmetrics.v1.${method}`, { method: 'POST', headers, body: JSON.stringify(body) });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

// Whether the server streams WatchKpis (Connect streaming JSON).
async function hasWatchKpis(server) {
  const response = await fetch(`${server.url}/salesmetrics.v1.KpiService/WatchKpis`, {
    method: 'POST', headers: { 'content-type': 'application/connect+json' }, body: new Uint8Array(5),
  });
  await response.arrayBuffer().catch(() => null);
  return response.status !== 404;
}

// ---- expected texts: the formatting rules of the command line, written out --------

const EXPONENT = { JPY: 0, KRW: 0, BHD: 3, KWD: 3 };
function expectedMoney(minor, currency) {
  const exp = EXPONENT[currency] ?? 2;
  const negative = String(minor).startsWith('-');
  const digits = String(minor).replace('-', '').padStart(exp + 1, '0');
  const whole = digits.slice(0, digits.length - exp).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${negative ? '-' : ''}${whole}${exp ? '.' + digits.slice(-exp) : ''} ${currency}`;
}
function expectedDuration(seconds) {
  const t = Math.round(seconds);
  const [d, h, m, s] = [Math.floor(t / 86400), Math.floor(t % 86400 / 3600), Math.floor(t % 3600 / 60), t % 60];
  if (d) return h ? `${d}d ${h}h` : `${d}d`;
  if (h) return m ? `${h}h ${m}m` : `${h}h`;
  if (m) return s ? `${m}m ${s}s` : `${m}m`;
  return `${s}s`;
}
function expectedText(v, currency) {
  if (v.value === undefined) return '—';
  if (v.kpiId === 'mrr_quick_ratio' || v.kpiId === 'clv_to_cac') return `${v.value.toFixed(1)}×`;
  const whole = (x) => (x < 0 ? '-' : '') + String(Math.abs(x)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  switch (v.unit) {
    case 'UNIT_MONEY': return expectedMoney(v.exactValue ?? String(Math.round(v.value)), currency);
    case 'UNIT_COUNT': return whole(Number(v.exactValue ?? v.value));
    case 'UNIT_RATIO': return `${(v.value * 100).toFixed(1)}%`;
    case 'UNIT_DURATION_SECONDS': return expectedDuration(v.value);
    case 'UNIT_SCORE': return v.value.toFixed(2);
    default: return Number.isInteger(v.value) ? whole(v.value) : v.value.toFixed(2);
  }
}

// The tiles' texts by KPI id, as shown.
async function shownTiles(page) {
  return page.$$eval('button.tile', (tiles) => Object.fromEntries(
    tiles.map((t) => [t.dataset.kpi, t.querySelector('.value').textContent])));
}

async function expectedTiles(server, request, key) {
  const { bundle } = await api(server, 'KpiService/GetKpis', request, key);
  const catalog = (await api(server, 'KpiService/ListKpis', {}, key)).kpis.map((k) => k.id);
  const out = {};
  for (const v of bundle.values) if (catalog.includes(v.kpiId)) out[v.kpiId] = expectedText(v, bundle.currencyCode);
  return { texts: out, bundle };
}

// Waits until the page finished loading a new state (after `previous`).
async function loaded(page, previous) {
  await page.waitForFunction((p) => document.body.dataset.loaded && document.body.dataset.loaded !== p, previous ?? '', { timeout: 30000 });
  return page.evaluate(() => document.body.dataset.loaded);
}

// ---- the checks -------------------------------------------------------------------

const today = new Date();
const lastMonth = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - 1, 1));
const ymd = (d) => d.toISOString().slice(0, 10);
const monthDate = { year: lastMonth.getUTCFullYear(), month: lastMonth.getUTCMonth() + 1, day: 1 };
const monthRequest = (scope) => ({
  scope, period: { calendar: { granularity: 'GRANULARITY_MONTH', date: monthDate } }, comparison: 'COMPARISON_PREVIOUS_PERIOD',
});

mkdirSync(OUT, { recursive: true });
const browser = await chromium.launch({ executablePath: opts.chromium, headless: true, args: ['--no-sandbox'] });
const server = await startServer();
try {
  server.cli('demo');
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  // Without WatchKpis on the server the page's stream attempt fails (and it polls instead).
  const watchable = await hasWatchKpis(server);
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    if (!watchable && (m.location().url || '').endsWith('/WatchKpis')) return;
    errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  let state;

  await check('the dashboard loads the demo data without console errors', async () => {
    await page.goto(`${server.url}/#scope=company&g=month&date=${ymd(lastMonth)}&compare=previous`);
    state = await loaded(page);
    // Bytes transferred (headers included) for the page and its own files; the rest are API calls.
    const bytes = await page.evaluate(() => [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]
      .filter((e) => !e.name.includes('/salesmetrics.v1.')).reduce((sum, e) => sum + e.transferSize, 0));
    console.log(`     page weight on first load (HTML, script, style): ${bytes} bytes transferred`);
    assertEqual(errors, [], 'console errors');
    const count = await page.locator('button.tile').count();
    if (count < 40) throw new Error(`only ${count} tiles`);
  });

  await check('every tile shows the value GetKpis returns, formatted', async () => {
    const { texts } = await expectedTiles(server, monthRequest({ kind: 'SCOPE_KIND_COMPANY' }));
    assertEqual(await shownTiles(page), texts, 'tiles (company, last month)');
  });

  await check('a tile opens its formula, numerator and denominator', async () => {
    await page.click('button.tile[data-kpi="win_rate"]');
    const details = await page.locator('#details-win_rate').innerText();
    if (!details.includes('deals_won / (deals_won + deals_lost)') || !details.includes('Numerator')) throw new Error(details);
  });

  await page.screenshot({ path: path.join(OUT, 'dashboard-desktop.png') });
  await page.locator('section.charts').screenshot({ path: path.join(OUT, 'dashboard-charts.png') });

  await check('choosing a team shows that team\'s values', async () => {
    const team = await page.$eval('#team', (s) => [...s.options].map((o) => o.value).find((v) => v));
    if (!team) throw new Error('no team in the picker');
    await page.selectOption('#team', team);
    state = await loaded(page, state);
    const { texts } = await expectedTiles(server, monthRequest({ kind: 'SCOPE_KIND_TEAM', id: team }));
    assertEqual(await shownTiles(page), texts, `tiles (team ${team})`);
    await page.selectOption('#team', '');
    state = await loaded(page, state);
  });

  await check('choosing a quarter shows that quarter\'s values', async () => {
    await page.selectOption('#granularity', 'quarter');
    state = await loaded(page, state);
    const request = monthRequest({ kind: 'SCOPE_KIND_COMPANY' });
    request.period.calendar.granularity = 'GRANULARITY_QUARTER';
    const { texts } = await expectedTiles(server, request);
    assertEqual(await shownTiles(page), texts, 'tiles (quarter)');
    await page.selectOption('#granularity', 'month');
    state = await loaded(page, state);
  });

  await check('an order ingested while the page is open appears within 2 s', async () => {
    if (!watchable) return 'skip: the server has no WatchKpis (the page polls every 5 s)';
    const before = await expectedTiles(server, monthRequest({ kind: 'SCOPE_KIND_COMPANY' }));
    const currency = before.bundle.currencyCode;
    const orderedAt = new Date(lastMonth.getTime() + 14 * 86400000 + 12 * 3600000).toISOString();
    await api(server, 'IngestService/IngestBatch', {
      records: [{ order: { id: 'browser-live-1', amount: { currencyCode: currency, minorUnits: '1234567' }, orderedAt } }],
    });
    const after = await expectedTiles(server, monthRequest({ kind: 'SCOPE_KIND_COMPANY' }));
    if (after.texts.revenue === before.texts.revenue) throw new Error('the order did not change revenue');
    const started = Date.now();
    await page.waitForFunction((text) => document.querySelector('button.tile[data-kpi="revenue"] .value').textContent === text, after.texts.revenue, { timeout: 2000 });
    console.log(`     revenue updated after ${Date.now() - started} ms (${await page.textContent('#live')})`);
  });

  await check('the breakdown table sorts by a KPI column', async () => {
    await page.click('#breakdown thead th:nth-child(2) button');
    const sorted = await page.$eval('#breakdown thead th:nth-child(2)', (th) => th.getAttribute('aria-sort'));
    assertEqual(sorted, 'descending', 'aria-sort');
  });

  await check('the phone layout shows the same tiles', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true });
    const small = await phone.newPage();
    await small.goto(`${server.url}/#scope=company&g=month&date=${ymd(lastMonth)}&compare=previous`);
    await loaded(small);
    const { texts } = await expectedTiles(server, monthRequest({ kind: 'SCOPE_KIND_COMPANY' }));
    assertEqual(await shownTiles(small), texts, 'tiles on a phone');
    await small.screenshot({ path: path.join(OUT, 'dashboard-phone.png') });
    await phone.close();
  });

  await check('the report renders as a page of its own', async () => {
    const file = path.join(OUT, 'report.html');
    server.cli('report', '--period', ymd(lastMonth).slice(0, 7), '--output', file);
    const reportPage = await context.newPage();
    await reportPage.goto('file://' + file);
    const revenue = await reportPage.textContent('#kpi-revenue .value');
    const { texts } = await expectedTiles(server, monthRequest({ kind: 'SCOPE_KIND_COMPANY' }));
    assertEqual(revenue, texts.revenue, 'report revenue');
    await reportPage.screenshot({ path: path.join(OUT, 'report.png') });
    await reportPage.screenshot({ path: path.join(OUT, 'report-full.png'), fullPage: true });
    await reportPage.close();
  });
  assertEqual(errors, [], 'console errors during the session');
  await context.close();
} catch (err) {
  failed += 1;
  console.log(`FAIL ${err.stack || err}\n${server.log()}`);
} finally {
  server.stop();
}

const secured = await startServer(['--auth', 'on', '--admin-token', ADMIN]);
try {
  await check('with --auth on the page asks for an API key and uses it', async () => {
    await api(secured, 'AdminService/CreateTenant', { tenantId: 'acme' }, ADMIN);
    const { key } = await api(secured, 'AdminService/CreateApiKey', { tenantId: 'acme', name: 'dashboard' }, ADMIN);
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const page = await context.newPage();
    await page.goto(`${secured.url}/#scope=company&g=month&date=${ymd(lastMonth)}`);
    await page.waitForSelector('#key-dialog[open]', { timeout: 10000 });
    await page.screenshot({ path: path.join(OUT, 'dashboard-key.png') });
    await page.fill('#key-input', key);
    await page.click('#key-form button[type=submit]');
    await loaded(page);
    const stored = await page.evaluate(() => sessionStorage.getItem('salesmetrics.apiKey'));
    assertEqual(stored, key, 'key in sessionStorage');
    const request = monthRequest({ kind: 'SCOPE_KIND_COMPANY' });
    const { texts } = await expectedTiles(secured, request, key);
    assertEqual(await shownTiles(page), texts, 'tiles of the tenant');
    await context.close();
  });
} finally {
  secured.stop();
  await browser.close();
}

console.log(`browser: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed ? 1 : 0);
