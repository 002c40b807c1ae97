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

test('the parameters schemas say what is required and what defaults', () => {
  const ops = Object.fromEntries(new TestHost(plugin).describe().operations.map((op) => [op.name, op]));
  assert.deepEqual(ops.rank.paramsSchema.required, ['rows', 'by']);
  assert.equal(ops.rank.paramsSchema.properties.top.default, 5);
  assert.equal(ops.rank.paramsSchema.additionalProperties, false);
  assert.deepEqual(ops.markdown.paramsSchema.required, ['rows', 'columns']);
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
  // What `plexus plugin pack` runs.
  execFileSync('npx', ['--no-install', 'plexus-plugin-sdk', 'build', '.', '--out', wasm], { cwd: HERE, stdio: ['ignore', 'pipe', 'inherit'] });
  const call = (operation, params) => {
    const args = ['call', '--artifact', wasm, operation, '--params', JSON.stringify(params), '--json', '--cache-dir', join(dir, 'cache')];
    try {
      return JSON.parse(execFileSync(process.env.PLEXUS_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString());
    } catch (e) {
      if (!e.stdout?.length) throw e;
      return JSON.parse(e.stdout.toString());
    }
  };
  const ranked = { rows: months(), by: 'precipitation_sum', top: 5 };
  const rank = call('rank', ranked);
  assert.equal(rank.ok, true);
  assert.deepEqual(rank.output, await new TestHost(plugin).call('rank', ranked));
  assert.deepEqual(rank.metrics, { rows: 48 });
  const table = { rows: rank.output.rows, columns: ['month', 'precipitation_sum'], title: 'Wettest months' };
  assert.deepEqual(call('markdown', table).output, await new TestHost(plugin).call('markdown', table));
  const refused = call('rank', { rows: [], by: 'x', top: 0 });
  assert.equal(refused.ok, false);
  assert.equal(refused.error.plugin_error.kind, 'invalid-input');
  assert.match(refused.error.plugin_error.message, /`top`/);
});
