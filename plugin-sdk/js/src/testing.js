// TestHost: run a plugin's operations in Node, through the same dispatch the
// component uses (JSON text in and out, the parameter checks, error mapping),
// with host services that record what the plugin did.

import { createHash } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { describePlugin } from './build.js';
import { cleanup, dispatch, initialize, isPlugin, PluginError } from './index.js';

export { PluginError } from './index.js';

/**
 * A host for tests, in plain Node: it runs a plugin's operations through the
 * same dispatch as the component, and records what the plugin did.
 *
 * @example
 * const host = new TestHost(plugin, { config: { limit: 3 } });
 * assert.deepEqual(await host.call('greet', { name: 'Ada' }), { greeting: 'Hello, Ada!' });
 * await host.checkExamples();
 */
export class TestHost {
  /**
   * @param {object} plugin from definePlugin
   * @param {{config?: object, upstream?: object, state?: Record<string, unknown>,
   *   workflowId?: string, stepId?: string, taskId?: string}} [options]
   *   `config` the manifest's `[config]`, `upstream` the upstream steps' outputs,
   *   `state` the shared state to start from (values JSON-encoded into {@link TestHost#state})
   */
  constructor(plugin, { config = {}, upstream = {}, state = {}, workflowId, stepId, taskId, orchestrator } = {}) {
    if (!isPlugin(plugin)) throw new TypeError('TestHost: expected a plugin made by definePlugin');
    this.plugin = plugin;
    this.config = config;
    this.upstream = upstream;
    /** The execution's shared state, key → JSON text (as the host keeps it). */
    this.state = new Map(Object.entries(state).map(([k, v]) => [k, JSON.stringify(v)]));
    /** Every log line: `{level, message}`. */
    this.logs = [];
    /** Every progress report: `{fraction, message}`. */
    this.progress = [];
    /** The metrics of the last call (empty when it failed): name → value. */
    this.metrics = {};
    /** Whether {@link TestHost#cancel} was called. */
    this.cancelled = false;
    /** How many calls were made. */
    this.calls = 0;
    /** Every orchestration request, in order: `{op: 'start-workflow', workflow, inputs}`, ... */
    this.orchestrated = [];
    this._orchestrator = orchestrator;
    /** Stored artifacts: digest (`sha256:…`) → bytes; see {@link TestHost#putArtifact}. */
    this.artifacts = new Map();
    /** The references of the artifacts calls finished, in order. */
    this.written = [];
    this._writers = new Map();
    this._readers = new Map();
    this._next = 0;
    this._ids = { workflowId, stepId, taskId };
  }

  /** From now on, `ctx.isCancelled()` is true. */
  cancel() {
    this.cancelled = true;
  }

  /** Run the plugin's `initialize` hook with the config, as the host does before the first call. */
  async initialize() {
    await initialize(this.plugin, JSON.stringify(this.config));
  }

  /** Run the plugin's `cleanup` hook, as the host does at the end. */
  async cleanup() {
    await cleanup(this.plugin);
  }

  /** An orchestration request: recorded, answered by the `orchestrator` option (none: failed). */
  _orchestrate(request) {
    this.orchestrated.push(request);
    if (!this._orchestrator) throw { payload: { kind: 'failed', message: 'this host offers no orchestration services', retryable: false } };
    try {
      return this._orchestrator(request);
    } catch (e) {
      throw { payload: PluginError.from(e).toData() };
    }
  }

  /** The metadata the host will see, with the schemas as objects. */
  describe() {
    return describePlugin(this.plugin);
  }

  /**
   * Call `operation` with `params` as the host would: the parameters go in as
   * JSON text, are checked against the operation's schema (defaults filled
   * in), and the output comes back through JSON. The call's metrics are in
   * {@link TestHost#metrics} afterwards.
   *
   * @param {string} operation
   * @param {unknown} [params]
   * @param {{attempt?: number, deadlineMs?: number}} [options] the execution context's attempt and deadline
   * @returns {Promise<any>} the output (parsed)
   * @throws {PluginError} the plugin's error (the kind the host would get)
   */
  async call(operation, params = null, { attempt = 1, deadlineMs, schedule } = {}) {
    this.calls += 1;
    this.metrics = {};
    const ectx = {
      executionId: `test-${this.calls}`,
      ...this._ids,
      attempt,
      deadlineMs: deadlineMs === undefined ? undefined : BigInt(deadlineMs),
      operation,
      parameters: JSON.stringify(params),
      upstream: JSON.stringify(this.upstream),
      config: JSON.stringify(this.config),
      schedule: schedule && { id: schedule.id, fireTimeMs: BigInt(schedule.fireTimeMs), fireTime: schedule.fireTime },
    };
    const services = {
      log: (level, message) => this.logs.push({ level, message }),
      stateGet: (key) => this.state.get(key),
      stateSet: (key, value) => this.state.set(key, value),
      reportProgress: (fraction, message) => this.progress.push({ fraction, message }),
      isCancelled: () => this.cancelled,
      startWorkflow: (workflow, inputs) =>
        this._orchestrate({ op: 'start-workflow', workflow, inputs: JSON.parse(inputs) }),
      executionStatus: (execution) => JSON.stringify(this._orchestrate({ op: 'execution-status', execution })),
      createSchedule: (spec) => this._orchestrate({ op: 'create-schedule', spec: JSON.parse(spec) }),
      cancelSchedule: (schedule) => {
        this._orchestrate({ op: 'cancel-schedule', schedule });
      },
      artifactCreate: (name, mediaType) => {
        if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/.test(name)) {
          throw { payload: { kind: 'invalid-input', message: `artifact name \`${name}\`: use A-Z a-z 0-9 . _ -`, retryable: false } };
        }
        this._writers.set(++this._next, { name, mediaType, parts: [] });
        return this._next;
      },
      artifactWrite: (id, data) => {
        this._writers.get(id).parts.push(Buffer.from(data));
      },
      artifactFinish: (id) => {
        const { name, mediaType, parts } = this._writers.get(id);
        this._writers.delete(id);
        const reference = this.putArtifact(name, Buffer.concat(parts), mediaType);
        this.written.push(reference);
        return JSON.stringify(reference);
      },
      artifactOpen: (reference) => {
        const { artifact } = JSON.parse(reference);
        if (!this.artifacts.has(artifact)) {
          throw { payload: { kind: 'not-found', message: `artifact ${artifact} is not one of this execution's`, retryable: false } };
        }
        this._readers.set(++this._next, { artifact, at: 0 });
        return this._next;
      },
      artifactRead: (id, max) => {
        const reader = this._readers.get(id);
        const chunk = this.artifacts.get(reader.artifact).subarray(reader.at, reader.at + max);
        reader.at += chunk.length;
        return new Uint8Array(chunk);
      },
    };
    const { output, metrics } = await dispatch(this.plugin, ectx, services);
    this.metrics = Object.fromEntries(metrics.map((m) => [m.name, m.value]));
    return JSON.parse(output);
  }

  /**
   * Store `data` (bytes or text) as artifact `name`, an input for a call under
   * test; its reference. Stored artifacts are in {@link TestHost#artifacts}
   * (digest → bytes); the references calls finished in `written`.
   */
  putArtifact(name, data, mediaType) {
    const bytes = Buffer.from(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
    const artifact = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    this.artifacts.set(artifact, bytes);
    return { artifact, name, bytes: bytes.length, ...(mediaType === undefined ? {} : { media_type: mediaType }) };
  }

  /**
   * Run every operation's examples through {@link TestHost#call}. An example
   * holds when the call gives its `output` (deep equality; with no `output`,
   * when the call succeeds), or fails with the error kind `error`.
   *
   * @returns {Promise<number>} how many examples ran
   * @throws {Error} listing every example that does not hold
   */
  async checkExamples() {
    const failures = [];
    let checked = 0;
    for (const op of this.plugin.operations.values()) {
      for (const [i, example] of op.examples.entries()) {
        checked += 1;
        const label = `${op.name} example ${i + 1}${example.description ? ` (${example.description})` : ''}`;
        try {
          const output = await this.call(op.name, example.params ?? null);
          if (example.error !== undefined) failures.push(`${label}: expected a ${example.error} error, got ${JSON.stringify(output)}`);
          else if ('output' in example && !isDeepStrictEqual(output, example.output)) {
            failures.push(`${label}: expected ${JSON.stringify(example.output)}, got ${JSON.stringify(output)}`);
          }
        } catch (e) {
          if (!(e instanceof PluginError)) throw e;
          if (example.error !== e.kind) failures.push(`${label}: ${e.kind}: ${e.message}`);
        }
      }
    }
    if (failures.length) throw new Error(`${failures.length} of ${checked} examples do not hold:\n${failures.join('\n')}`);
    return checked;
  }
}
