// The SDK's own tests: node --test (with PLEXUS_BIN set, also a component
// built and called through plexus).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { bundle, readProject } from '../src/build.js';
import { capability, definePlugin, ErrorKind, PluginError, s, validate } from '../src/index.js';
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
  assert.equal(m.contractVersion, '0.4.0');
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
    [{ a: 1, c: 2 }, /`c` is not a parameter \(expected: a, b\)/],
    [[1], /the parameters: expected object, got an array/],
  ]) {
    await assert.rejects(host.call('add', params), (e) => e instanceof PluginError && e.kind === 'invalid-input' && message.test(e.message));
  }
});

test('a misspelled key is named as unknown, not as the missing one; inherited names are not properties', () => {
  const schema = { type: 'object', properties: { name: { type: 'string' } }, required: ['name'], additionalProperties: false };
  assert.throws(() => validate(schema, { nmae: 'Ada' }, ''), /`nmae` is not a parameter \(expected: name\)/);
  assert.throws(() => validate(schema, { name: 'Ada', toString: 1 }, ''), /`toString` is not a parameter/);
  assert.throws(() => validate({ type: 'object', required: ['constructor'] }, {}, ''), /missing required `constructor`/);
  const nested = { type: 'object', properties: { row: { type: 'object', properties: { a: {} }, additionalProperties: false } } };
  assert.throws(() => validate(nested, { row: { b: 1 } }, ''), /`row\.b` is not a field here \(expected: a\)/);
  const typed = { type: 'object', additionalProperties: { type: 'integer' } };
  assert.throws(() => validate(typed, { x: 1, y: 'z' }, ''), /`y`: expected integer, got a string "z"/);
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
  assert.match(packaged, /package plexus:plugin@0\.4\.0;/);
});

test('npm pack carries a real copy of the WIT (packed from a copy of the SDK, so this tree is untouched)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plexus-sdk-pack-'));
  const top = readFileSync(join(SDK, '..', '..', 'wit', 'plexus-plugin.wit'), 'utf8');
  mkdirSync(join(dir, 'wit'));
  writeFileSync(join(dir, 'wit', 'plexus-plugin.wit'), top);
  const copy = join(dir, 'plugin-sdk', 'js');
  for (const item of ['package.json', 'README.md', 'index.d.ts', 'testing.d.ts', 'src']) cpSync(join(SDK, item), join(copy, item), { recursive: true });
  symlinkSync('../../wit', join(copy, 'wit'));
  const [packed] = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', dir], { cwd: copy, stdio: ['ignore', 'pipe', 'ignore'] }));
  assert.ok(packed.files.some((f) => f.path === 'wit/plexus-plugin.wit'), 'the tarball lists wit/plexus-plugin.wit');
  execFileSync('tar', ['-xzf', join(dir, packed.filename), '-C', dir]);
  assert.equal(readFileSync(join(dir, 'package', 'wit', 'plexus-plugin.wit'), 'utf8'), top);
  assert.ok(lstatSync(join(copy, 'wit')).isSymbolicLink(), 'postpack puts the link back');
});

test('schema builders make plain JSON Schemas; optional and defaulted properties are not required', async () => {
  const params = s.object({
    rows: s.array(s.object({ date: s.string(), n: s.optional(s.number({ minimum: 0 })) })),
    top: s.integer({ minimum: 1, default: 5 }),
    order: s.enum(['asc', 'desc'], { default: 'desc' }),
    title: s.optional(s.string()),
    extra: s.object(),
    anything: s.optional(s.any({ description: 'any JSON' })),
  });
  assert.deepEqual(JSON.parse(JSON.stringify(params)), {
    type: 'object',
    properties: {
      rows: {
        type: 'array',
        items: {
          type: 'object',
          properties: { date: { type: 'string' }, n: { type: 'number', minimum: 0 } },
          required: ['date'],
          additionalProperties: false,
        },
      },
      top: { type: 'integer', minimum: 1, default: 5 },
      order: { enum: ['asc', 'desc'], default: 'desc' },
      title: { type: 'string' },
      extra: { type: 'object' },
      anything: { description: 'any JSON' },
    },
    required: ['rows', 'extra'],
    additionalProperties: false,
  });
  const p = definePlugin({ id: 'b', name: 'b', version: '1', operations: { echo: { params, run: (ctx, x) => x } } });
  const host = new TestHost(p);
  assert.deepEqual(await host.call('echo', { rows: [], extra: { any: 1 } }), { rows: [], extra: { any: 1 }, top: 5, order: 'desc' });
  const rows = [0, 1, 2, 3].map((i) => ({ date: `2012-01-0${i + 1}` }));
  rows[3] = { date: 20120104 };
  await assert.rejects(host.call('echo', { rows, extra: {} }), (e) => e.kind === 'invalid-input' && /`rows\[3\]\.date`: expected string/.test(e.message));
  await assert.rejects(host.call('echo', { rows: [], extra: {}, order: 'up' }), /`order`: must be one of "asc", "desc"/);
  assert.deepEqual(s.array(), { type: 'array' });
  assert.equal(s.optional(s.string()).type, 'string');
});

test('a plugin that breaks the contract gets a failed error, not a trap', async () => {
  const p = definePlugin({
    id: 'c',
    name: 'c',
    version: '1',
    operations: {
      bigint: { run: () => ({ n: 1n }) },
      cycle: {
        run: () => {
          const o = {};
          o.o = o;
          return o;
        },
      },
      level: { run: (ctx) => ctx.log('verbose', 'x') },
      nan: {
        run: (ctx) => {
          ctx.metric('bad', NaN);
          ctx.metric('big', 3n);
          ctx.metric('good', 1.5);
          return null;
        },
      },
      nothing: { run: () => undefined },
    },
  });
  const host = new TestHost(p);
  for (const op of ['bigint', 'cycle', 'level']) {
    await assert.rejects(host.call(op), (e) => e instanceof PluginError && e.kind === 'failed', op);
  }
  assert.equal(await host.call('nan'), null);
  assert.deepEqual(host.metrics, { big: 3, good: 1.5 });
  assert.match(host.logs.at(-1).message, /metric `bad`: NaN is not a finite number/);
  assert.equal(await host.call('nothing'), null);
});

test('PluginError: constructors, kinds, data, and the mapping of thrown values', () => {
  assert.deepEqual(PluginError.failed('x', { retryable: true }).toData(), { kind: 'failed', message: 'x', retryable: true });
  assert.equal(PluginError.notFound('f').kind, 'not-found');
  assert.equal(PluginError.cancelled().kind, 'cancelled');
  assert.match(PluginError.unsupportedOperation('op').message, /`op`/);
  assert.throws(() => new PluginError('oops', 'x'), TypeError);
  assert.equal(PluginError.from(new RangeError('r')).kind, 'invalid-input');
  assert.equal(PluginError.from(new TypeError('t')).message, 'TypeError: t');
  assert.equal(PluginError.from({ kind: 'not-found', message: 'gone' }).kind, 'not-found');
  assert.equal(PluginError.from(42).message, '42');
  assert.ok(PluginError.from(undefined) instanceof PluginError);
});

test('context: ids, deadline as a number, remaining time, progress clamped, state JSON-encoded', async () => {
  const p = definePlugin({
    id: 'ctx',
    name: 'ctx',
    version: '1',
    operations: {
      look: {
        run(ctx) {
          ctx.progress(7, 'over');
          ctx.progress(-1);
          ctx.state.set('obj', { a: [1, 'x'] });
          ctx.state.set('undef', undefined);
          return {
            ids: [ctx.executionId, ctx.workflowId, ctx.stepId, ctx.taskId, ctx.attempt, ctx.operation],
            deadline: typeof ctx.deadlineMs,
            remaining: ctx.remainingMs() > 0,
            missing: ctx.state.get('missing') === undefined,
          };
        },
      },
    },
  });
  const host = new TestHost(p, { workflowId: 'wf', stepId: 'st' });
  const out = await host.call('look', {}, { attempt: 3, deadlineMs: Date.now() + 60_000 });
  assert.deepEqual(out, { ids: ['test-1', 'wf', 'st', null, 3, 'look'], deadline: 'number', remaining: true, missing: true });
  assert.deepEqual(host.progress, [
    { fraction: 1, message: 'over' },
    { fraction: 0, message: '' },
  ]);
  assert.equal(host.state.get('obj'), '{"a":[1,"x"]}');
  assert.equal(host.state.get('undef'), 'null');
});

test('an example without an output only has to succeed', async () => {
  const p = definePlugin({ id: 'e', name: 'e', version: '1', operations: { one: { run: () => 1, examples: [{ params: {} }] } } });
  assert.equal(await new TestHost(p).checkExamples(), 1);
});

test('the bundle is one module whose only import is the host interface; CommonJS dependencies are bundled', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'plexus-sdk-bundle-'));
  mkdirSync(join(dir, 'node_modules', 'cjs-only'), { recursive: true });
  writeFileSync(join(dir, 'node_modules', 'cjs-only', 'package.json'), JSON.stringify({ name: 'cjs-only', version: '1.0.0', main: 'lib.js' }));
  writeFileSync(join(dir, 'node_modules', 'cjs-only', 'lib.js'), 'exports.twice = (x) => 2 * x;\n');
  writeFileSync(
    join(dir, 'app.js'),
    `import { twice } from 'cjs-only';
import { definePlugin } from ${JSON.stringify(join(SDK, 'src', 'index.js'))};
export default definePlugin({ id: 't.b', name: 'b', version: '1', operations: { twice: { run: (ctx, { x }) => twice(x) } } });
`,
  );
  const out = join(dir, 'bundle.js');
  await bundle(readProject(dir), out);
  const text = readFileSync(out, 'utf8');
  const imports = [...text.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]);
  assert.deepEqual(imports, ['plexus:plugin/host@0.4.0']);
  assert.match(text, /export \{\s*guest\s*\}/);
  const guest = (await import(`data:text/javascript,${encodeURIComponent(text.replace(/^import .*$/m, 'const host = globalThis.__host;'))}`)).guest;
  assert.ok(guest, 'the bundle exports guest');

  writeFileSync(join(dir, 'app.js'), `import 'plexus:plugin/types@0.4.0';\nexport default 1;\n`);
  await assert.rejects(bundle(readProject(dir), out), /imports plexus:plugin\/types@0.4.0: a component can import only plexus:plugin\/host@0.4.0/);
  writeFileSync(join(dir, 'app.js'), `import { readFileSync } from 'node:fs';\nexport default readFileSync;\n`);
  await assert.rejects(bundle(readProject(dir), out), /bundling failed: .*node:fs/);
});

test('the glue hands the host a plugin-error record for every failure', async () => {
  const { makeGuest } = await import('../src/glue.js');
  const logs = [];
  const guest = makeGuest(plugin, {
    log: (level, message) => logs.push([level, message]),
    stateGet: () => undefined,
    stateSet: () => {},
    reportProgress: () => {},
    isCancelled: () => false,
  });
  assert.equal(guest.describe().id, 'test.sdk');
  const ectx = (operation, params) => ({ executionId: 'e', attempt: 1, operation, parameters: JSON.stringify(params), upstream: '{}', config: '{}' });
  assert.deepEqual(await guest.call(ectx('add', { a: 1 })), { output: '11', metrics: [{ name: 'a', value: 1 }] });
  for (const [op, params, kind] of [
    ['nope', {}, 'unsupported-operation'],
    ['add', {}, 'invalid-input'],
    ['throws', { what: 'plain' }, 'failed'],
  ]) {
    await assert.rejects(guest.call(ectx(op, params)), (e) => {
      assert.deepEqual(Object.keys(e).sort(), ['kind', 'message', 'retryable']);
      assert.equal(e.kind, kind);
      return true;
    });
  }
  assert.match(logs.at(-1)[1], /^throws: Error: boom/, 'the stack of an unexpected error is logged at debug');
  await assert.rejects(guest.call({ ...ectx('add', {}), parameters: '{' }), (e) => e.kind === 'invalid-input' && /not JSON/.test(e.message));
});

test('build says how to install the SDK when its dependencies are missing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plexus-sdk-nodeps-'));
  const copy = join(dir, 'plugin-sdk', 'js');
  cpSync(join(SDK, 'src'), join(copy, 'src'), { recursive: true });
  cpSync(join(SDK, 'package.json'), join(copy, 'package.json'));
  const project = join(dir, 'p');
  mkdirSync(project);
  writeFileSync(
    join(project, 'app.js'),
    `import { definePlugin } from ${JSON.stringify(join(copy, 'src', 'index.js'))};
export default definePlugin({ id: 'x', name: 'x', version: '1', operations: {} });
`,
  );
  assert.throws(
    () => execFileSync(process.execPath, [join(copy, 'src', 'cli.js'), 'build', project], { stdio: 'pipe' }),
    (e) => {
      const err = e.stderr.toString();
      assert.equal(e.status, 1);
      assert.equal(err.trim().split('\n').length, 1, err);
      assert.match(err, /dependency (esbuild|@bytecodealliance\/componentize-js) is not installed: run `npm install` in /);
      return true;
    },
  );
  assert.ok(!existsSync(join(project, 'target')));
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
    () => execFileSync(process.execPath, [cli, 'build', dir], { stdio: 'pipe' }),
    (e) => e.status === 1 && /the default export is not a plugin/.test(e.stderr.toString()),
  );
  assert.throws(
    () => execFileSync(process.execPath, [cli, 'build', join(dir, 'nowhere')], { stdio: 'pipe' }),
    (e) => e.status === 1 && /nowhere does not exist/.test(e.stderr.toString()),
  );
  assert.throws(
    () => execFileSync(process.execPath, [cli, 'build', dir, '--entry', 'main.js'], { stdio: 'pipe' }),
    (e) => e.status === 1 && /main\.js does not exist: the plugin's module/.test(e.stderr.toString()),
  );
  for (const args of [['frobnicate'], ['build', '--http', '--no-http'], ['build', '--bogus'], ['build', 'a', 'b']]) {
    assert.throws(
      () => execFileSync(process.execPath, [cli, ...args], { stdio: 'pipe' }),
      (e) => e.status === 2,
      args.join(' '),
    );
  }
});

test('describe prints the metadata with schemas as objects', () => {
  const dir = mkdtempSync(join(tmpdir(), 'plexus-sdk-describe-'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'd', version: '0.3.0', plexus: { entry: 'src/main.js' } }));
  mkdirSync(join(dir, 'src'));
  writeFileSync(
    join(dir, 'src', 'main.js'),
    `import { definePlugin, s } from ${JSON.stringify(join(SDK, 'src', 'index.js'))};
export default definePlugin({ id: 't.d', name: 'd', version: '0.3.0', operations: { go: { params: s.object({ a: s.string() }), run: () => 1 } } });
`,
  );
  const out = JSON.parse(execFileSync(process.execPath, [join(SDK, 'src', 'cli.js'), 'describe', dir]).toString());
  assert.equal(out.contractVersion, '0.4.0');
  assert.deepEqual(out.operations[0].paramsSchema.required, ['a']);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'd', version: '0.4.0', plexus: { entry: 'src/main.js' } }));
  assert.throws(
    () => execFileSync(process.execPath, [join(SDK, 'src', 'cli.js'), 'describe', dir], { stdio: 'pipe' }),
    (e) => /version 0\.3\.0 differs from package\.json's 0\.4\.0/.test(e.stderr.toString()),
  );
});

test('a built component runs in plexus: outputs, metrics, defaults, and every error kind as data', { skip: !process.env.PLEXUS_BIN && 'set PLEXUS_BIN to a plexus binary' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'plexus-sdk-build-'));
  writeFileSync(
    join(dir, 'app.js'),
    `import { definePlugin, PluginError, s } from ${JSON.stringify(join(SDK, 'src', 'index.js'))};
export default definePlugin({ id: 'test.built', name: 'built', version: '0.1.0', operations: {
  add: { params: s.object({ a: s.number(), b: s.number({ default: 1 }) }),
         run: (ctx, { a, b }) => { ctx.log.info('adding'); ctx.progress(0.5, 'half'); ctx.metric('a', a); return { sum: a + b }; } },
  state: { run: async (ctx) => { await null; ctx.state.set('k', { n: 1 }); return { back: ctx.state.get('k'), cancelled: ctx.isCancelled(), deadline: typeof ctx.deadlineMs }; } },
  fail: { params: s.object({ how: s.enum(['type', 'plain', 'retry', 'missing']) }),
          run: (ctx, { how }) => {
            if (how === 'type') null.x;
            if (how === 'retry') throw PluginError.failed('later', { retryable: true });
            if (how === 'missing') throw PluginError.notFound('no such thing');
            throw new Error('boom');
          } },
} });
`,
  );
  const out = join(dir, 'built.wasm');
  const printed = execFileSync(process.execPath, [join(SDK, 'src', 'cli.js'), 'build', dir, '--out', out], { stdio: ['ignore', 'pipe', 'inherit'] });
  assert.equal(printed.toString().trim(), out);
  const call = (operation, params) => {
    const args = ['call', '--artifact', out, operation, '--params', JSON.stringify(params), '--json', '--cache-dir', join(dir, 'cache')];
    try {
      return JSON.parse(execFileSync(process.env.PLEXUS_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString());
    } catch (e) {
      if (!e.stdout?.length) throw new Error(`${operation}: ${e.stderr}`);
      return JSON.parse(e.stdout.toString());
    }
  };
  const ok = call('add', { a: 2 });
  assert.deepEqual([ok.ok, ok.output, ok.metrics], [true, { sum: 3 }, { a: 2 }]);
  assert.deepEqual(call('state', {}).output, { back: { n: 1 }, cancelled: false, deadline: 'number' });
  // The host refuses an operation the metadata does not list before calling the plugin.
  assert.equal(call('nope', {}).error.kind, 'operation-not-found');
  const kinds = [
    ['add', { a: 'x' }],
    ['add', { a: 1, c: 2 }],
    ['fail', { how: 'type' }],
    ['fail', { how: 'plain' }],
    ['fail', { how: 'retry' }],
    ['fail', { how: 'missing' }],
  ].map(([op, params]) => {
    const { ok: fine, error } = call(op, params);
    assert.equal(fine, false);
    assert.ok(error.plugin_error, `${op} ${JSON.stringify(params)}: a plugin error, not ${JSON.stringify(error)}`);
    return [error.plugin_error.kind, error.plugin_error.retryable];
  });
  assert.deepEqual(kinds, [
    ['invalid-input', false],
    ['invalid-input', false],
    ['invalid-input', false],
    ['failed', false],
    ['failed', true],
    ['not-found', false],
  ]);
});

test('fetch() in a component built with http reaches what the manifest grants, and nothing else', { skip: !process.env.PLEXUS_BIN && 'set PLEXUS_BIN to a plexus binary' }, async () => {
  const { createServer } = await import('node:http');
  const { execFile } = await import('node:child_process');
  const { promisify } = await import('node:util');
  let served = 0;
  const server = createServer((req, res) => {
    served += 1;
    res.end(`hello ${req.url}`);
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const port = server.address().port;
  try {
    const dir = mkdtempSync(join(tmpdir(), 'plexus-sdk-fetch-'));
    writeFileSync(
      join(dir, 'app.js'),
      `import { definePlugin, s } from ${JSON.stringify(join(SDK, 'src', 'index.js'))};
export default definePlugin({ id: 'test.fetch', name: 'fetch', version: '0.1.0', operations: {
  get: { params: s.object({ url: s.string() }),
         run: async (ctx, { url }) => {
           try { const r = await fetch(url); return { status: r.status, body: await r.text() }; }
           catch (e) { return { error: String(e) }; }
         } } } });
`,
    );
    execFileSync(process.execPath, [join(SDK, 'src', 'cli.js'), 'build', dir, '--http', '--out', join(dir, 'folder', 'fetch.wasm')], { stdio: ['ignore', 'ignore', 'inherit'] });
    const call = async (grant) => {
      writeFileSync(
        join(dir, 'folder', 'plugin.toml'),
        `id = "test.fetch"\nversion = "0.1.0"\nkind = "wasm"\nartifact = "fetch.wasm"\n[permissions]\nnetwork = ${grant}\n`,
      );
      const args = ['call', '--plugin-folder', join(dir, 'folder'), 'get', '--params', JSON.stringify({ url: `http://127.0.0.1:${port}/x` }), '--json', '--cache-dir', join(dir, 'cache')];
      const { stdout } = await promisify(execFile)(process.env.PLEXUS_BIN, args);
      return JSON.parse(stdout);
    };
    const granted = await call(`["127.0.0.1:${port}"]`);
    assert.deepEqual(granted.output, { status: 200, body: 'hello /x' });
    assert.equal(served, 1);
    const other = await call(`["127.0.0.1:${port === 65535 ? 1 : port + 1}"]`);
    assert.ok(other.output.error, JSON.stringify(other));
    const none = await call('false');
    assert.ok(none.output.error, JSON.stringify(none));
    assert.equal(served, 1, 'a denied fetch never reached the server');
  } finally {
    server.close();
  }
});

test('lifecycle hooks and orchestration run through the test host as through the glue', async () => {
  const seen = [];
  const plugin = definePlugin({
    id: 'test.orch',
    name: 'orch',
    version: '0.1.0',
    capabilities: [capability.WORKFLOW_STEP, capability.ORCHESTRATION],
    initialize(config) {
      if (config.fail) throw PluginError.invalidInput('fail is set');
      seen.push(['initialize', config]);
    },
    cleanup() {
      seen.push(['cleanup']);
    },
    operations: {
      go: {
        run(ctx, { what }) {
          if (what === 'start') return { id: ctx.startWorkflow('nightly', { n: 1 }) };
          if (what === 'status') return ctx.executionStatus('e-1');
          if (what === 'schedule') return { id: ctx.createSchedule({ id: 's1', when: 'every 1h', workflow: 'nightly' }) };
          ctx.cancelSchedule('s1');
          return { schedule: ctx.schedule ?? null };
        },
      },
    },
  });
  const answers = { 'start-workflow': 'e-7', 'execution-status': { executionId: 'e-1', state: 'Completed' } };
  const host = new TestHost(plugin, {
    config: { level: 2 },
    orchestrator: (r) => {
      if (r.op === 'create-schedule') throw PluginError.failed('not granted');
      return answers[r.op] ?? null;
    },
  });
  await host.initialize();
  assert.deepEqual(await host.call('go', { what: 'start' }), { id: 'e-7' });
  assert.deepEqual(await host.call('go', { what: 'status' }), { executionId: 'e-1', state: 'Completed' });
  await assert.rejects(host.call('go', { what: 'schedule' }), (e) => e.kind === 'failed' && e.message === 'not granted');
  const schedule = { id: 's1', fireTimeMs: 5, fireTime: '1970-01-01T00:00:00.005Z' };
  assert.deepEqual(await host.call('go', { what: 'cancel' }, { schedule }), { schedule });
  await host.cleanup();
  assert.deepEqual(seen, [['initialize', { level: 2 }], ['cleanup']]);
  assert.deepEqual(host.orchestrated.map((r) => r.op), ['start-workflow', 'execution-status', 'create-schedule', 'cancel-schedule']);
  assert.deepEqual(host.orchestrated[0], { op: 'start-workflow', workflow: 'nightly', inputs: { n: 1 } });
  const failing = new TestHost(plugin, { config: { fail: true } });
  await assert.rejects(failing.initialize(), (e) => e.kind === 'invalid-input' && e.message === 'fail is set');
  await assert.rejects(new TestHost(plugin).call('go', { what: 'start' }), /no orchestration services/);
  assert.throws(() => definePlugin({ id: 'a', name: 'a', version: '1', initialize: 3, operations: {} }), /`initialize` must be a function/);

  // Through the component glue: hook errors and a host function's error cross as plugin-error records.
  const { makeGuest } = await import('../src/glue.js');
  const refused = Object.assign(new Error('err'), { payload: { kind: 'not-found', message: 'workflow `nightly`', retryable: false } });
  const guest = makeGuest(plugin, {
    log: () => {},
    isCancelled: () => false,
    startWorkflow: () => {
      throw refused;
    },
  });
  seen.length = 0;
  await guest.initialize('{"level": 3}');
  await assert.rejects(guest.initialize('{"fail": true}'), (e) => {
    assert.deepEqual(Object.keys(e).sort(), ['kind', 'message', 'retryable']);
    return e.kind === 'invalid-input';
  });
  const ectx = { executionId: 'e', attempt: 1, operation: 'go', parameters: '{"what": "start"}', upstream: '{}', config: '{}' };
  await assert.rejects(guest.call(ectx), (e) => e.kind === 'not-found' && e.message === 'workflow `nightly`');
  await guest.cleanup();
  assert.deepEqual(seen, [['initialize', { level: 3 }], ['cleanup']]);
});

test('artifacts are written and read through the host services, rows by reference', async () => {
  const { definePlugin: define, s: schema } = await import('../src/index.js');
  const { TestHost: Host } = await import('../src/testing.js');
  const plugin = define({
    id: 't.art',
    name: 'art',
    version: '0.1.0',
    operations: {
      put: {
        params: schema.object({ size: schema.integer() }),
        run: (ctx, { size }) => {
          const out = ctx.createArtifact('blob', 'application/octet-stream');
          for (let i = 0; i < size / 1000; i += 1) out.write(new Uint8Array(1000).fill(i % 251));
          return out.finish();
        },
      },
      measure: {
        run: (ctx, { artifact }) => {
          const reader = ctx.openArtifact(artifact);
          let bytes = 0;
          for (let chunk = reader.read(65536); chunk.length; chunk = reader.read(65536)) bytes += chunk.length;
          return { bytes };
        },
      },
      rows: {
        run: (ctx, { rows, name }) => (name ? ctx.writeRows(name, ctx.readRows(rows)) : { count: ctx.readRows(rows).length }),
      },
    },
  });
  const host = new Host(plugin);
  const reference = await host.call('put', { size: 3_000_000 });
  assert.equal(reference.bytes, 3_000_000);
  assert.match(reference.artifact, /^sha256:[0-9a-f]{64}$/);
  assert.deepEqual(host.written, [reference]);
  assert.deepEqual(await host.call('measure', { artifact: reference }), { bytes: 3_000_000 });
  const rows = await host.call('rows', { rows: [{ a: 1 }, { a: 2 }], name: 'rows' });
  assert.equal(Buffer.from(host.artifacts.get(rows.artifact)).toString(), '{"a":1}\n{"a":2}\n');
  assert.deepEqual(await host.call('rows', { rows }), { count: 2 });
  const forged = { artifact: `sha256:${'0'.repeat(64)}`, name: 'x', bytes: 1 };
  await assert.rejects(host.call('measure', { artifact: forged }), (e) => e.kind === 'not-found');
});
