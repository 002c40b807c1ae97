// The SDK's own tests: node --test (with PLEXUS_BIN set, also a component
// built and called through plexus).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { capability, definePlugin, ErrorKind, PluginError, validate } from '../src/index.js';
import { TestHost } from '../src/testing.js';

const SDK = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const plugin = definePlugin({
  id: 'test.sdk',
  name: 'SDK test',
  version: '1.2.3',
  capabilities: [capability.WORKFLOW_STEP],
  operations: {
    add: {
      description: 'a + b',
      params: {
        type: 'object',
        properties: { a: { type: 'number' }, b: { type: 'number', default: 10 } },
        required: ['a'],
        additionalProperties: false,
      },
      examples: [
        { params: { a: 1, b: 2 }, output: 3 },
        { params: { a: 1 }, output: 11, description: 'b defaults to 10' },
        { params: {}, error: 'invalid-input' },
      ],
      run: (ctx, { a, b }) => {
        ctx.metric('a', a);
        return a + b;
      },
    },
    services: {
      run(ctx) {
        ctx.log.info(`attempt ${ctx.attempt}`);
        ctx.log('warn', 'careful');
        const seen = ctx.state.get('count') ?? 0;
        ctx.state.set('count', seen + 1);
        ctx.progress(0.5, 'half');
        return { seen, config: ctx.config, upstream: ctx.upstream, cancelled: ctx.isCancelled() };
      },
    },
    loop: {
      run(ctx) {
        for (let i = 0; ; i += 1) ctx.checkCancelled();
      },
    },
    throws: {
      params: { type: 'object', properties: { what: { enum: ['type', 'plain', 'retry', 'string'] } } },
      run(ctx, { what }) {
        if (what === 'type') null.x;
        if (what === 'retry') throw PluginError.failed('try again', { retryable: true });
        if (what === 'string') throw 'a string';
        throw new Error('boom');
      },
    },
    later: { run: async () => ({ done: true }) },
  },
});

test('metadata carries the contract version and schemas as JSON text', () => {
  const m = plugin.metadata;
  assert.equal(m.contractVersion, '0.2.0');
  assert.deepEqual(m.capabilities, ['workflow-step']);
  const add = m.operations.find((o) => o.name === 'add');
  assert.equal(JSON.parse(add.paramsSchema).required[0], 'a');
  assert.equal(m.operations.find((o) => o.name === 'services').paramsSchema, undefined);
});

test('a malformed definition is refused naming the field', () => {
  assert.throws(() => definePlugin({ id: 'x', name: 'x', operations: {} }), /`version`/);
  assert.throws(() => definePlugin({ id: 'x', name: 'x', version: '1', operations: { a: {} } }), /`a`: `run`/);
  assert.throws(() => definePlugin({ id: 'x', name: 'x', version: '1', operations: { a: { run() {}, params: 3 } } }), /`params`/);
});

test('parameters are checked and defaults filled in', async () => {
  const host = new TestHost(plugin);
  assert.equal(await host.call('add', { a: 1, b: 2 }), 3);
  assert.equal(await host.call('add', { a: 1 }), 11);
  assert.deepEqual(host.metrics, { a: 1 });
  for (const [params, message] of [
    [{}, /missing required `a`/],
    [{ a: 'x' }, /`a`: expected number, got a string "x"/],
    [{ a: 1, c: 2 }, /`c` is not a parameter here \(expected: a, b\)/],
    [[1], /the parameters: expected object, got an array/],
  ]) {
    await assert.rejects(host.call('add', params), (e) => e instanceof PluginError && e.kind === 'invalid-input' && message.test(e.message));
  }
});

test('validation names nested fields and checks bounds', () => {
  const schema = {
    type: 'object',
    properties: { rows: { type: 'array', items: { type: 'object', properties: { n: { type: 'integer', minimum: 0 } } } } },
  };
  assert.throws(() => validate(schema, { rows: [{ n: 1 }, { n: 1.5 }] }, ''), /`rows\[1\]\.n`: expected integer/);
  assert.throws(() => validate(schema, { rows: [{ n: -1 }] }, ''), /`rows\[0\]\.n`: must be at least 0/);
  assert.throws(() => validate({ enum: ['a'] }, 'b', 'x'), /`x`: must be one of "a"/);
  let deep = {};
  for (let i = 0; i < 100; i += 1) deep = { d: deep };
  const nested = { type: 'object', additionalProperties: {} };
  let s = nested;
  for (let i = 0; i < 100; i += 1) s = { type: 'object', additionalProperties: s };
  assert.throws(() => validate(s, deep, ''), /nested more than 64 levels/);
});

test('host services are recorded by the test host', async () => {
  const host = new TestHost(plugin, { config: { k: 1 }, upstream: { load: { rows: 3 } }, state: { count: 4 } });
  const out = await host.call('services', null, { attempt: 2 });
  assert.deepEqual(out, { seen: 4, config: { k: 1 }, upstream: { load: { rows: 3 } }, cancelled: false });
  assert.equal(host.state.get('count'), '5');
  assert.deepEqual(host.logs, [
    { level: 'info', message: 'attempt 2' },
    { level: 'warn', message: 'careful' },
  ]);
  assert.deepEqual(host.progress, [{ fraction: 0.5, message: 'half' }]);
  host.cancel();
  await assert.rejects(host.call('loop'), (e) => e.kind === ErrorKind.CANCELLED);
});

test('every thrown value becomes a plugin error', async () => {
  const host = new TestHost(plugin);
  const kindOf = async (what) => host.call('throws', { what }).then(() => 'ok', (e) => [e.kind, e.retryable]);
  assert.deepEqual(await kindOf('type'), ['invalid-input', false]);
  assert.deepEqual(await kindOf('plain'), ['failed', false]);
  assert.deepEqual(await kindOf('retry'), ['failed', true]);
  assert.deepEqual(await kindOf('string'), ['failed', false]);
  await assert.rejects(host.call('nope'), (e) => e.kind === 'unsupported-operation' && /`nope`/.test(e.message));
  assert.deepEqual(await host.call('later'), { done: true });
});

test('checkExamples runs every example and lists each failure', async () => {
  assert.equal(await new TestHost(plugin).checkExamples(), 3);
  const wrong = definePlugin({
    id: 'w',
    name: 'w',
    version: '1',
    operations: {
      one: { run: () => 1, examples: [{ params: {}, output: 2 }, { params: {}, error: 'failed' }, { params: {}, output: 1 }] },
    },
  });
  await assert.rejects(new TestHost(wrong).checkExamples(), (e) => {
    assert.match(e.message, /2 of 3 examples do not hold/);
    assert.match(e.message, /one example 1: expected 2, got 1/);
    assert.match(e.message, /one example 2: expected a failed error/);
    return true;
  });
});

test('the packaged WIT is the top-level one', () => {
  const packaged = readFileSync(join(SDK, 'wit', 'plexus-plugin.wit'), 'utf8');
  assert.equal(packaged, readFileSync(join(SDK, '..', '..', 'wit', 'plexus-plugin.wit'), 'utf8'));
  assert.match(packaged, /package plexus:plugin@0\.2\.0;/);
});

test('npm pack carries a real copy of the WIT, and the link is back after', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plexus-sdk-pack-'));
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: SDK, stdio: ['ignore', 'pipe', 'ignore'] }));
  execFileSync('tar', ['-xzf', join(dir, packed.filename), '-C', dir]);
  const top = readFileSync(join(SDK, '..', '..', 'wit', 'plexus-plugin.wit'), 'utf8');
  assert.equal(readFileSync(join(dir, 'package', 'wit', 'plexus-plugin.wit'), 'utf8'), top);
  assert.ok(lstatSync(join(SDK, 'wit')).isSymbolicLink(), 'postpack restores the link to the top-level wit/');
});

test('describe and build refuse what is not a plugin, in one line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plexus-sdk-test-'));
  writeFileSync(join(dir, 'app.js'), 'export default 42;\n');
  const cli = join(SDK, 'src', 'cli.js');
  assert.throws(
    () => execFileSync(process.execPath, [cli, 'describe', dir], { stdio: 'pipe' }),
    (e) => e.status === 1 && /the default export is not a plugin/.test(e.stderr.toString()),
  );
  assert.throws(
    () => execFileSync(process.execPath, [cli, 'frobnicate'], { stdio: 'pipe' }),
    (e) => e.status === 2 && /unknown command/.test(e.stderr.toString()),
  );
});

test('a built component runs in plexus', { skip: !process.env.PLEXUS_BIN && 'set PLEXUS_BIN to a plexus binary' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'plexus-sdk-build-'));
  writeFileSync(
    join(dir, 'app.js'),
    `import { definePlugin } from ${JSON.stringify(join(SDK, 'src', 'index.js'))};
export default definePlugin({ id: 'test.built', name: 'built', version: '0.1.0', operations: {
  add: { params: { type: 'object', properties: { a: { type: 'number' }, b: { type: 'number', default: 1 } }, required: ['a'] },
         run: (ctx, { a, b }) => { ctx.log.info('adding'); ctx.metric('a', a); return { sum: a + b }; } } } });
`,
  );
  const out = join(dir, 'built.wasm');
  const printed = execFileSync(process.execPath, [join(SDK, 'src', 'cli.js'), 'build', dir, '--out', out], { stdio: ['ignore', 'pipe', 'inherit'] });
  assert.equal(printed.toString().trim(), out);
  const call = (params) =>
    JSON.parse(
      execFileSync(process.env.PLEXUS_BIN, ['call', '--artifact', out, 'add', '--params', JSON.stringify(params), '--json', '--cache-dir', join(dir, 'cache')], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }).toString(),
    );
  const ok = call({ a: 2 });
  assert.deepEqual([ok.ok, ok.output, ok.metrics], [true, { sum: 3 }, { a: 2 }]);
  let failed;
  try {
    call({ a: 'x' });
  } catch (e) {
    failed = JSON.parse(e.stdout.toString());
  }
  assert.equal(failed.error.plugin_error.kind, 'invalid-input');
});
