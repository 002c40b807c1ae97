// End-to-end tests of the web UI in a real browser: Debian's Chromium,
// headless, driven by playwright-core (no browser download), against a real
// `plexus daemon` with the example plugins. Each test saves a screenshot of
// the page it looked at into target/ui-screenshots (not committed). The
// tests run in order in one browser session: the first one logs in.
//
//   PLEXUS_BIN=target/debug/plexus PLEXUS_TEST_PLUGINS=target/test-plugins node --test host/daemon/ui/tests/*.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { Daemon, repo } from './daemon.mjs';

const CHROMIUM = process.env.PLEXUS_CHROMIUM || '/usr/bin/chromium';
const SHOTS = process.env.PLEXUS_UI_SCREENSHOTS || join(repo, 'target/ui-screenshots');
const SECRET = 'sk-live-7f3c0b9e21d84a56be0c1d2e3f4a5b6c';
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let daemon;
let browser;
let context;
let page;
/** Every answer the page got from the daemon, as text (the secret test reads them all). */
const answers = [];

const APPROVAL = `
id: approval
name: Waits for an approval signal
steps:
  - { id: prepare, plugin_id: plexus.echo.native, method_name: echo, parameters: { ready: true } }
  - { id: approve, wait_for: { signal: approve }, timeout: 10m, dependencies: [prepare] }
  - { id: publish, plugin_id: plexus.echo.native, method_name: echo, parameters: { approved: "\${{ steps.approve.output }}" }, dependencies: [approve] }
`;

/** Holds a worker slot for a while (the daemon has two). */
const HOLD = `
id: hold
steps:
  - { id: sleep, plugin_id: plexus.echo.native, method_name: sleep, parameters: { ms: 8000 } }
`;

const USES_SECRET = `
id: uses-secret
steps:
  - { id: call_api, plugin_id: plexus.echo.native, method_name: echo, parameters: { auth: "\${{ secrets.API_KEY }}" } }
  - { id: rejected, plugin_id: plexus.echo.wasm, method_name: fail, parameters: { kind: failed, message: "rejected key \${{ secrets.API_KEY }}" }, dependencies: [call_api] }
`;

async function shot(name, viewport = DESKTOP) {
  await page.setViewportSize(viewport);
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  if (viewport !== DESKTOP) await page.setViewportSize(DESKTOP);
}

/** Load a page of the UI (hash route) afresh and wait until its heading shows. */
async function open(route, heading) {
  // A change of the hash alone keeps the document: the previous page's heading could answer.
  await page.goto('about:blank');
  await page.goto(`${daemon.url}/ui/#${route}`);
  await page.getByRole('heading', { level: 1, name: heading }).waitFor();
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  const plugins = ['csv-native', 'validator-wasm', 'transformer-wasm', 'echo-native', 'echo-wasm'];
  daemon = await Daemon.start(plugins, ['--workers', '2']);
  await daemon.register('examples/pipeline.yaml');
  await daemon.register('examples/robust.yaml');
  await daemon.register(APPROVAL);
  await daemon.register(USES_SECRET);
  await daemon.register(HOLD);
  await daemon.call('PUT', '/v1/secrets/API_KEY', { value: SECRET });
  await daemon.call('POST', '/v1/schedules', { id: 'nightly-pipeline', when: 'cron 0 2 * * *', workflow: 'weather-pipeline' });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  context = await browser.newContext({ viewport: DESKTOP });
  page = await context.newPage();
  page.on('response', async (r) => {
    if (!r.url().startsWith(daemon.url) || r.headers()['content-type']?.includes('event-stream')) return;
    try {
      answers.push({ url: r.url(), body: await r.text() });
    } catch {
      // A body the page abandoned (navigation): nothing to read.
    }
  });
});

after(async () => {
  await browser?.close();
  await daemon?.stop();
});

test('log in: a wrong token is refused, the right one opens the executions page', async () => {
  // The address the daemon announces when it starts.
  assert.equal(daemon.ui, `${daemon.url}/ui/`);
  await page.goto(daemon.ui);
  await page.getByLabel('Token').waitFor();
  await shot('login');
  await page.getByLabel('Token').fill('not-the-token');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not the daemon’s token' }).waitFor();
  await page.getByLabel('Token').fill(daemon.token);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { level: 1, name: 'Executions' }).waitFor();
  // The session is a cookie the page cannot read; the token is nowhere in the browser.
  const stored = await page.evaluate(() => JSON.stringify([document.cookie, { ...sessionStorage }, { ...localStorage }, location.href]));
  assert.ok(!stored.includes(daemon.token), 'the token is not kept by the page');
  const cookies = await context.cookies();
  assert.equal(cookies.length, 1);
  // Named for the daemon's port: two daemons on one host keep their sessions apart.
  assert.equal(cookies[0].name, `plexus_session_${new URL(daemon.url).port}`);
  assert.ok(cookies[0].httpOnly && cookies[0].sameSite === 'Strict');
  assert.notEqual(cookies[0].value, daemon.token);
});

test('start the example pipeline from its workflow page and watch its steps complete in the DAG without reloading', async () => {
  await open('/workflows/weather-pipeline', /weather-pipeline/);
  await page.locator('svg.dag g.node').first().waitFor();
  await shot('workflow');
  await page.getByLabel(/^output/).fill(join(daemon.data, 'normalized.csv'));
  // Both worker slots busy for a few seconds: the pipeline waits, so the page sees its steps before they run.
  const holds = [];
  for (let i = 0; i < 2; i += 1) holds.push((await daemon.call('POST', '/v1/executions', { workflow: 'hold' })).execution_id);
  await page.getByRole('button', { name: /^Start v1/ }).click();
  await page.getByRole('heading', { level: 1, name: /Execution/ }).waitFor();
  // A marker on the window: a reload would drop it.
  await page.evaluate(() => { window.__noReload = true; });
  const steps = ['load', 'validate', 'normalize', 'save'];
  const first = page.locator('svg.dag g.node[data-step="load"]');
  await first.waitFor();
  assert.ok(['', 'pending'].includes(await first.getAttribute('data-status')), 'the page shows the step before it runs');
  assert.equal(await page.locator('.summary .badge').first().innerText(), 'pending');
  for (const step of steps) {
    await page.locator(`svg.dag g.node[data-step="${step}"][data-status="completed"]`).waitFor({ timeout: 60000 });
  }
  await page.locator('.summary .badge.status-completed').waitFor();
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was not reloaded');
  for (const id of holds) assert.equal((await daemon.waitFor(id)).status, 'completed');
  // The log streamed every step's transitions.
  const log = await page.locator('ol.log').innerText();
  for (const step of steps) assert.match(log, new RegExp(`${step}[\\s\\S]*completed`));
  await page.locator('svg.dag g.node[data-step="normalize"]').click();
  await page.getByRole('heading', { name: /Step normalize/ }).waitFor();
  await shot('execution');
  await shot('execution-phone', PHONE);
});

test('the failed step of the robust example shows its error', async () => {
  const started = await daemon.call('POST', '/v1/executions', {
    workflow: 'weather-robust',
    inputs: { output: join(daemon.data, 'rainy.csv') },
  });
  await daemon.waitFor(started.execution_id);
  await open(`/executions/${started.execution_id}`, /Execution/);
  const failed = page.locator('svg.dag g.node[data-step="publish"][data-status="failed"]');
  await failed.waitFor();
  // The keyboard selects a step too.
  await failed.focus();
  await page.keyboard.press('Enter');
  const error = page.locator('.step-error');
  await error.waitFor();
  assert.match(await error.innerText(), /publishing rejected/);
  assert.match(await page.locator('.step-details').innerText(), /Attempts\s*1/);
  await shot('execution-failed');
  // The flaky step's three attempts, from the log: two retried with their error, the third completed.
  await page.locator('svg.dag g.node[data-step="fetch_flaky"]').click();
  const attempts = page.locator('table.attempts tbody tr');
  await attempts.nth(2).waitFor();
  const rows = await attempts.allInnerTexts();
  assert.equal(rows.length, 3);
  assert.match(rows[0], /retrying[\s\S]*attempt 1 of a flaky operation failed/);
  assert.match(rows[1], /retrying/);
  assert.match(rows[2], /completed/);
  await page.locator('svg.dag g.node[data-step="publish"]').click();
  await page.locator('.step-error').waitFor();
  // What the README shows (host/daemon/ui/screenshot.png is a copy): the first screen only.
  await page.screenshot({ path: join(SHOTS, 'readme-execution.png') });
});

test('cancel a running execution, with confirmation', async () => {
  const started = await daemon.call('POST', '/v1/executions', { workflow: 'approval' });
  await open(`/executions/${started.execution_id}`, /Execution/);
  await page.locator('svg.dag g.node[data-step="approve"][data-status="waiting"]').waitFor();
  await page.getByRole('button', { name: 'Cancel…' }).click();
  const dialog = page.getByRole('dialog', { name: 'Cancel this execution?' });
  await dialog.waitFor();
  await shot('cancel-confirm');
  // The way out has the focus (Enter does not cancel), and dismissing the dialog cancels nothing.
  const keep = dialog.getByRole('button', { name: 'Keep it running' });
  assert.equal(await keep.evaluate((b) => b === document.activeElement), true);
  await page.keyboard.press('Enter');
  await dialog.waitFor({ state: 'hidden' });
  assert.equal((await daemon.call('GET', `/v1/executions/${started.execution_id}`)).status, 'running');
  await page.getByRole('button', { name: 'Cancel…' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel execution' }).click();
  await page.locator('.summary .badge.status-cancelled').waitFor({ timeout: 30000 });
  assert.equal((await daemon.waitFor(started.execution_id)).status, 'cancelled');
  await shot('execution-cancelled');
});

test('a signal sent from the page completes a waiting execution', async () => {
  const started = await daemon.call('POST', '/v1/executions', { workflow: 'approval' });
  await open(`/executions/${started.execution_id}`, /Execution/);
  await page.locator('svg.dag g.node[data-step="approve"][data-status="waiting"]').waitFor();
  await page.getByRole('button', { name: 'Signal…' }).click();
  await page.getByLabel('Name').fill('approve');
  await page.getByLabel('Payload (JSON)').fill('{"by": "ops"}');
  await page.getByRole('button', { name: 'Send signal' }).click();
  await page.locator('svg.dag g.node[data-step="publish"][data-status="completed"]').waitFor({ timeout: 30000 });
  const done = await daemon.waitFor(started.execution_id);
  assert.equal(done.status, 'completed');
  assert.deepEqual(done.steps.find((s) => s.id === 'approve').output, { by: 'ops' });
});

test('pause and resume a schedule', async () => {
  await open('/schedules', 'Schedules');
  const row = page.locator('tr[data-schedule="nightly-pipeline"]');
  await row.getByText('active').waitFor();
  await shot('schedules');
  await row.getByRole('button', { name: 'Pause schedule nightly-pipeline' }).click();
  await row.getByText('paused').waitFor();
  assert.equal((await daemon.call('GET', '/v1/schedules/nightly-pipeline')).enabled, false);
  await open('/schedules/nightly-pipeline', /nightly-pipeline/);
  await page.locator('[data-field="state"]').getByText('paused').waitFor();
  await shot('schedule');
  await page.getByRole('button', { name: 'Resume schedule nightly-pipeline' }).click();
  await page.locator('[data-field="state"]').getByText('active').waitFor();
  assert.equal((await daemon.call('GET', '/v1/schedules/nightly-pipeline')).enabled, true);
  // Resumed, it lists its next five fire times (cron 0 2 * * *: 02:00 UTC, a day apart).
  await page.locator('ol.upcoming li').nth(4).waitFor();
  const times = await page.locator('ol.upcoming time').evaluateAll((ts) => ts.map((t) => t.dateTime));
  assert.equal(times.length, 5);
  for (const [i, t] of times.entries()) {
    assert.match(t, /T02:00:00\.000Z$/);
    if (i > 0) assert.equal(Date.parse(t) - Date.parse(times[i - 1]), 86400000);
  }
});

test('the executions list filters by status and workflow, pages, and finds an execution by id', async () => {
  await open('/executions', 'Executions');
  await page.locator('table.executions tbody tr[data-status]').first().waitFor();
  await shot('executions');
  await shot('executions-phone', PHONE);
  // The rows once the filter applied (the page's policy forbids evaluating strings: functions only).
  const only = (test) => {
    const rows = [...document.querySelectorAll('table.executions tbody tr[data-status]')];
    const [key, value, count] = test;
    return rows.length > 0 && (count === undefined || rows.length === count)
      && rows.every((r) => (key === 'status' ? r.dataset.status === value : r.textContent.includes(value)));
  };
  await page.getByLabel('Status').selectOption('failed');
  await page.waitForFunction(only, ['status', 'failed']);
  const failed = (await daemon.call('GET', '/v1/executions?status=failed')).executions.length;
  assert.equal(await page.locator('table.executions tbody tr[data-status]').count(), failed);
  await page.getByLabel('Status').selectOption('');
  await page.getByLabel('Workflow').selectOption('approval');
  await page.waitForFunction(only, ['text', 'approval', 2]);
  const listed = await daemon.call('GET', '/v1/executions?limit=1');
  await page.getByLabel('Execution id').fill(listed.executions[0].execution_id);
  await page.getByRole('button', { name: 'Open' }).click();
  await page.getByRole('heading', { level: 1, name: listed.executions[0].execution_id }).waitFor();
});

test('the plugins, plugin, workflows and health pages show what the daemon has', async () => {
  await open('/plugins', 'Plugins');
  for (const id of ['plexus.csv', 'plexus.validator', 'plexus.transformer', 'plexus.echo.native', 'plexus.echo.wasm']) {
    await page.getByRole('link', { name: id, exact: true }).waitFor();
  }
  assert.match(await page.locator('table.plugins').innerText(), /native[\s\S]*wasm|wasm[\s\S]*native/);
  await shot('plugins');
  await page.getByRole('link', { name: 'plexus.transformer', exact: true }).click();
  await page.getByRole('heading', { level: 2, name: 'Operations' }).waitFor();
  await page.locator('details.operation summary', { hasText: 'normalize' }).click();
  await page.getByRole('heading', { level: 3, name: 'Parameters' }).first().waitFor();
  await shot('plugin');
  await open('/workflows', 'Workflows');
  for (const id of ['weather-pipeline', 'weather-robust', 'approval']) await page.getByRole('link', { name: id, exact: true }).waitFor();
  await shot('workflows');
  await open('/health', 'Health');
  await page.getByRole('heading', { level: 2, name: 'Nodes' }).waitFor();
  const text = await page.locator('main').innerText();
  assert.match(text, /Workers\s*\d+ \/ \d+/);
  assert.match(text, /Journal errors\s*0/);
  await shot('health');
  await shot('health-phone', PHONE);
});

test('no page shows a secret or the token', async () => {
  const started = await daemon.call('POST', '/v1/executions', { workflow: 'uses-secret' });
  const done = await daemon.waitFor(started.execution_id);
  assert.equal(done.status, 'failed');
  const routes = [
    [`/executions/${started.execution_id}`, /Execution/],
    ['/executions', 'Executions'],
    ['/workflows/uses-secret', /uses-secret/],
    ['/workflows', 'Workflows'],
    ['/schedules', 'Schedules'],
    ['/plugins', 'Plugins'],
    ['/health', 'Health'],
  ];
  for (const [route, heading] of routes) {
    await open(route, heading);
    if (route.startsWith('/executions/')) {
      await page.locator('svg.dag g.node[data-step="rejected"][data-status="failed"]').click();
      await page.locator('.step-error').waitFor();
      await page.locator('svg.dag g.node[data-step="call_api"]').click();
      await page.getByRole('heading', { name: 'Output' }).waitFor();
      await shot('execution-secret');
    }
    const html = await page.content();
    assert.ok(!html.includes(SECRET), `${route} shows the secret`);
    assert.ok(!html.includes(daemon.token), `${route} shows the token`);
  }
  assert.ok(answers.length > 20, `the answers were read (${answers.length})`);
  for (const { url, body } of answers) {
    assert.ok(!body.includes(SECRET), `${url} answered the secret`);
    assert.ok(!body.includes(daemon.token), `${url} answered the token`);
  }
  // Nor does the event stream the execution page read (a script reads it here: the page's reader cannot).
  const stream = await fetch(`${daemon.url}/v1/events?execution=${started.execution_id}`, {
    headers: { Authorization: `Bearer ${daemon.token}` },
  }).then((r) => r.text());
  assert.match(stream, /event: end/);
  assert.ok(stream.includes('rejected key') && !stream.includes(SECRET), `the stream shows the secret: ${stream}`);
  // Nor does the daemon's log hold the token (the login sent it).
  assert.ok(!readFileSync(daemon.logFile, 'utf8').includes(daemon.token), 'the log holds the token');
});

test('every page passes axe-core\'s WCAG 2 A and AA rules (contrast among them) and fits a phone\'s width', async () => {
  const { execution_id: robust } = await daemon.call('POST', '/v1/executions', {
    workflow: 'weather-robust',
    inputs: { output: join(daemon.data, 'rainy-2.csv') },
  });
  await daemon.waitFor(robust);
  const routes = [
    ['/executions', 'Executions'],
    [`/executions/${robust}`, /Execution/],
    ['/workflows', 'Workflows'],
    ['/workflows/weather-pipeline', /weather-pipeline/],
    ['/schedules', 'Schedules'],
    ['/schedules/nightly-pipeline', /nightly-pipeline/],
    ['/plugins', 'Plugins'],
    ['/plugins/plexus.csv', /plexus\.csv/],
    ['/health', 'Health'],
  ];
  for (const viewport of [DESKTOP, PHONE]) {
    await page.setViewportSize(viewport);
    for (const [route, heading] of routes) {
      await open(route, heading);
      // Let the page's data arrive (a table row, a graph, a card) before it is checked.
      await page.locator('main table tbody tr, main svg.dag, main .card, main dl.facts').first().waitFor();
      if (route.startsWith('/executions/')) {
        await page.locator('svg.dag g.node[data-step="publish"]').click();
        await page.locator('.step-error').waitFor();
      }
      await page.evaluate(AXE);
      const violations = await page.evaluate(async () => {
        const result = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } });
        return result.violations.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
      });
      assert.deepEqual(violations, [], `${route} at ${viewport.width}px`);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      assert.ok(overflow <= 1, `${route} at ${viewport.width}px is ${overflow}px wider than the screen`);
    }
  }
  await page.setViewportSize(DESKTOP);
});
