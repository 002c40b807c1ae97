// TestHost: run a plugin's operations in Node, through the same dispatch the
// component uses (JSON text in and out, the parameter checks, error mapping),
// with host services that record what the plugin did.

import { isDeepStrictEqual } from 'node:util';
import { dispatch, isPlugin, PluginError } from './index.js';

export { PluginError } from './index.js';

/** A host for tests. */
export class TestHost {
  /**
   * @param {object} plugin from definePlugin
   * @param {{config?: object, upstream?: object, state?: Record<string, unknown>}} [options]
   */
  constructor(plugin, { config = {}, upstream = {}, state = {} } = {}) {
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
    /** The metrics of the last call: name → value. */
    this.metrics = {};
    this.cancelled = false;
    this.calls = 0;
  }

  /** From now on, `ctx.isCancelled()` is true. */
  cancel() {
    this.cancelled = true;
  }

  /** The metadata the host will see, with schemas as objects. */
  describe() {
    const m = this.plugin.metadata;
    return {
      ...m,
      operations: m.operations.map((op) => ({
        name: op.name,
        description: op.description,
        paramsSchema: op.paramsSchema === undefined ? undefined : JSON.parse(op.paramsSchema),
        outputSchema: op.outputSchema === undefined ? undefined : JSON.parse(op.outputSchema),
      })),
    };
  }

  /**
   * Call `operation` with `params`; resolves to its output (parsed).
   * @throws {PluginError} the plugin's error
   */
  async call(operation, params = null, { attempt = 1, deadlineMs } = {}) {
    this.calls += 1;
    const ectx = {
      executionId: `test-${this.calls}`,
      workflowId: undefined,
      stepId: undefined,
      taskId: undefined,
      attempt,
      deadlineMs: deadlineMs === undefined ? undefined : BigInt(deadlineMs),
      operation,
      parameters: JSON.stringify(params),
      upstream: JSON.stringify(this.upstream),
      config: JSON.stringify(this.config),
    };
    const services = {
      log: (level, message) => this.logs.push({ level, message }),
      stateGet: (key) => this.state.get(key),
      stateSet: (key, value) => this.state.set(key, value),
      reportProgress: (fraction, message) => this.progress.push({ fraction, message }),
      isCancelled: () => this.cancelled,
    };
    const { output, metrics } = await dispatch(this.plugin, ectx, services);
    this.metrics = Object.fromEntries(metrics.map((m) => [m.name, m.value]));
    return JSON.parse(output);
  }

  /**
   * Run every operation's examples; throws an Error listing every one that
   * does not hold (an example has `params` and `output`, or `error`: a kind).
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
          else if (!isDeepStrictEqual(output, example.output)) {
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
