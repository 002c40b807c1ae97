import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TestHost } from 'plexus-plugin-sdk/testing';
import plugin from '../app.js';

test('the declared examples hold', async () => {
  await new TestHost(plugin).checkExamples();
});

test('greet logs whom it greets', async () => {
  const host = new TestHost(plugin);
  assert.deepEqual(await host.call('greet', { name: 'Grace' }), { greeting: 'Hello, Grace!' });
  assert.deepEqual(host.logs, [{ level: 'info', message: 'greeting Grace' }]);
});

test('a misspelled parameter is invalid input', async () => {
  await assert.rejects(new TestHost(plugin).call('greet', { nmae: 'Ada' }), (e) => e.kind === 'invalid-input');
});
