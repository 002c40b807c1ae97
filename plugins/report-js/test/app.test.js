// plexus.report in Node through the SDK's TestHost (the component's own
// dispatch); with PLEXUS_BIN set, also the built component through plexus.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TestHost } from 'plexus-plugin-sdk/testing';
import plugin from '../app.js';

const HERE = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** Monthly precipitation sums of examples/data/seattle-weather.csv, computed here. */
function months() {
  const lines = readFileSync(join(HERE, '../../examples/data/seattle-weather.csv'), 'utf8').trim().split('\n').slice(1);
  const sums = new Map();
  for (const line of lines) {
    const [date, rain] = line.split(',');
    const month = date.slice(0, 7).replace('/', '-');
    sums.set(month, (sums.get(month) ?? 0) + Number(rain));
  }
  return [...sums].map(([month, precipitation_sum]) => ({ month, precipitation_sum }));
}

test('the declared examples hold', async () => {
  assert.equal(await new TestHost(plugin).checkExamples(), 5);
});

test('rank picks the wettest months of the real data, wettest first', async () => {
  const host = new TestHost(plugin);
  const rows = months();
  const out = await host.call('rank', { rows, by: 'precipitation_sum', top: 3 });
  const expected = [...rows].sort((a, b) => b.precipitation_sum - a.precipitation_sum).slice(0, 3);
  assert.deepEqual(out, { rows: expected, count: 3 });
  assert.deepEqual(host.metrics, { rows: 48 });
  assert.ok(host.progress.length >= 1);
  const driest = await host.call('rank', { rows, by: 'precipitation_sum', top: 1, descending: false });
  assert.equal(driest.rows[0].precipitation_sum, Math.min(...rows.map((r) => r.precipitation_sum)));
});

test('rank refuses a field no row has a number in, and misspelled parameters', async () => {
  const host = new TestHost(plugin);
  await assert.rejects(host.call('rank', { rows: [{ a: 'x' }], by: 'a' }), (e) => e.kind === 'invalid-input' && /`a`/.test(e.message));
  await assert.rejects(host.call('rank', { rows: [], by: 'a', tpo: 3 }), (e) => e.kind === 'invalid-input' && /`tpo`/.test(e.message));
});

test('markdown escapes pipes and formats numbers', async () => {
  const out = await new TestHost(plugin).call('markdown', {
    rows: [{ a: 'x|y', b: 2, c: 1.25 }],
    columns: ['a', 'b', 'c', 'missing'],
    title: 'T',
    digits: 2,
  });
  assert.equal(out.text, '## T\n\n| a | b | c | missing |\n|---|---|---|---|\n| x\\|y | 2 | 1.25 |  |\n');
  assert.equal(out.lines, 5);
});

test('a cancelled call stops with the cancelled kind', async () => {
  const host = new TestHost(plugin);
  host.cancel();
  await assert.rejects(host.call('rank', { rows: months(), by: 'precipitation_sum' }), (e) => e.kind === 'cancelled');
});

test('the built component gives what the test host gives', { skip: !process.env.PLEXUS_BIN && 'set PLEXUS_BIN to a plexus binary' }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plexus-report-'));
  const wasm = join(dir, 'plexus_report.wasm');
  execFileSync('npx', ['--no-install', 'plexus-plugin-sdk', 'build', '.', '--out', wasm], { cwd: HERE, stdio: ['ignore', 'pipe', 'inherit'] });
  const params = { rows: months(), by: 'precipitation_sum', top: 5 };
  const printed = execFileSync(
    process.env.PLEXUS_BIN,
    ['call', '--artifact', wasm, 'rank', '--params', JSON.stringify(params), '--json', '--cache-dir', join(dir, 'cache')],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const result = JSON.parse(printed.toString());
  assert.equal(result.ok, true);
  assert.deepEqual(result.output, await new TestHost(plugin).call('rank', params));
});
