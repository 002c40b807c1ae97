// plexus-plugin-sdk: write Plexus plugins in JavaScript.
//
// A plugin is `definePlugin({...})`: metadata plus operations, each with a JSON
// Schema of its parameters that is checked before `run` is called. The same
// dispatch (JSON text in, JSON text out, errors as data) runs in the WASM
// component (`src/glue.js`, bundled by `plexus-plugin-sdk build`) and in
// Node for tests (`plexus-plugin-sdk/testing`).

import { ErrorKind, PluginError } from './errors.js';
import { validate } from './schema.js';

export { ErrorKind, PluginError } from './errors.js';
export { s } from './builders.js';

/** The `plexus:plugin` contract version this SDK implements (`wit/plexus-plugin.wit`). */
export const CONTRACT_VERSION = '0.4.0';

/** Bytes an artifact stream moves per host request (the host takes at most 4 MiB). */
const CHUNK = 1 << 20;

/** Capability tags a plugin may declare. */
export const capability = Object.freeze({
  WORKFLOW_STEP: 'workflow-step',
  SCHEDULED_TASK: 'scheduled-task',
  CONTEXT_MANAGEMENT: 'context-management',
  /** Starts workflows, reads executions, creates and cancels its schedules (the manifest must grant it too). */
  ORCHESTRATION: 'orchestration',
});

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error'];
const PLUGIN = Symbol.for('plexus.plugin');

/**
 * What an operation's `run` gets besides its parameters: the execution
 * context's fields and the host services.
 */
export class Context {
  /**
   * @param {object} ectx the WIT execution-context (parameters, upstream and config as JSON text)
   * @param {object} services log, stateGet, stateSet, reportProgress, isCancelled (the WIT host interface)
   */
  constructor(ectx, services) {
    /** This execution's id. */
    this.executionId = ectx.executionId;
    /** The workflow's id, when the call is a workflow step. */
    this.workflowId = ectx.workflowId;
    /** The step's id, when the call is a workflow step. */
    this.stepId = ectx.stepId;
    /** The scheduled task's id, when a schedule made the call. */
    this.taskId = ectx.taskId;
    /** 1 for the first attempt, 2 for the first retry, ... */
    this.attempt = ectx.attempt;
    /** The deadline in ms since the Unix epoch, or undefined. */
    this.deadlineMs = ectx.deadlineMs === undefined ? undefined : Number(ectx.deadlineMs);
    /** The operation called. */
    this.operation = ectx.operation;
    /** Outputs of upstream steps, keyed by step id. */
    this.upstream = parseOr(ectx.upstream, {});
    /** The plugin's configuration (the manifest's `[config]`). */
    this.config = parseOr(ectx.config, {});
    /**
     * The schedule that fired this call, if one did: `{id, fireTimeMs, fireTime}`
     * (the scheduled fire time; set by the host only).
     */
    this.schedule = ectx.schedule
      ? { id: ectx.schedule.id, fireTimeMs: Number(ectx.schedule.fireTimeMs), fireTime: ectx.schedule.fireTime }
      : undefined;
    this._services = services;
    this._metrics = [];
    const log = (level, message) => {
      // The component's host would trap on a level outside the WIT enum.
      if (!LEVELS.includes(level)) throw PluginError.failed(`ctx.log: unknown level ${JSON.stringify(level)} (${LEVELS.join(', ')})`);
      services.log(level, String(message));
    };
    for (const level of LEVELS) log[level] = (message) => log(level, message);
    /** `ctx.log(level, message)` or `ctx.log.info(message)` (trace, debug, info, warn, error). */
    this.log = log;
    /** The execution's shared state: values are JSON-encoded (Rust and Python plugins see the same values). */
    this.state = {
      get: (key) => {
        const text = services.stateGet(String(key));
        return text === undefined || text === null ? undefined : JSON.parse(text);
      },
      set: (key, value) => services.stateSet(String(key), JSON.stringify(value === undefined ? null : value)),
    };
  }

  /**
   * Start registered workflow `workflow` with `inputs`; its execution id, at
   * once. Needs the `orchestration` capability, the manifest's grant
   * (`[permissions] orchestration = true`) and a daemon.
   * @throws {PluginError} not-found, invalid-input, or failed when refused
   */
  startWorkflow(workflow, inputs = {}) {
    return orchestrate(() => this._services.startWorkflow(String(workflow), JSON.stringify(inputs ?? {})));
  }

  /**
   * The status of execution `executionId` (the HTTP API's execution view).
   * @throws {PluginError} not-found, or failed when refused
   */
  executionStatus(executionId) {
    return JSON.parse(orchestrate(() => this._services.executionStatus(String(executionId))));
  }

  /**
   * Create a schedule from `spec` (the body of `POST /v1/schedules`); its id. It belongs to this plugin.
   * @throws {PluginError} invalid-input for a bad spec, or failed when refused
   */
  createSchedule(spec) {
    return orchestrate(() => this._services.createSchedule(JSON.stringify(spec)));
  }

  /**
   * Delete schedule `scheduleId`, which this plugin created.
   * @throws {PluginError} not-found for another's or an unknown schedule
   */
  cancelSchedule(scheduleId) {
    orchestrate(() => this._services.cancelSchedule(String(scheduleId)));
  }

  /**
   * Begin artifact `name` (1 to 128 of `A-Z a-z 0-9 . _ -`) of `mediaType`:
   * bytes the host stores once, by reference, instead of in the output
   * (contract 0.4). `write` bytes or text, then `finish()` for its reference
   * `{artifact: 'sha256:…', name, bytes, media_type}`; the step's record lists
   * it as `artifacts.<name>`. Bytes go to the host 1 MiB at a time.
   * @throws {PluginError} invalid-input for a bad name, failed when refused
   */
  createArtifact(name, mediaType) {
    const services = this._services;
    const id = orchestrate(() => services.artifactCreate(String(name), mediaType == null ? undefined : String(mediaType)));
    let pending = [];
    let size = 0;
    let reference;
    const flush = () => {
      if (!size) return;
      const chunk = new Uint8Array(size);
      let at = 0;
      for (const part of pending) {
        chunk.set(part, at);
        at += part.length;
      }
      orchestrate(() => services.artifactWrite(id, chunk));
      pending = [];
      size = 0;
    };
    return {
      /** Append bytes (a Uint8Array) or text (as UTF-8). */
      write(data) {
        // A copy: the caller may reuse its buffer before the chunk goes.
        let bytes =
          typeof data === 'string'
            ? new TextEncoder().encode(data)
            : ArrayBuffer.isView(data)
              ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice()
              : new Uint8Array(data).slice();
        while (bytes.length) {
          const part = bytes.subarray(0, CHUNK - size);
          pending.push(part);
          size += part.length;
          bytes = bytes.subarray(part.length);
          if (size === CHUNK) flush();
        }
      },
      /** Store the bytes written; the artifact's reference. */
      finish() {
        if (reference === undefined) {
          flush();
          reference = JSON.parse(orchestrate(() => services.artifactFinish(id)));
        }
        return reference;
      },
    };
  }

  /**
   * Open the artifact `reference` names (e.g. a parameter given
   * `${{ steps.load.artifacts.rows }}`): `read(max)` gives the next bytes
   * (an empty Uint8Array at the end), `text()` all of it as UTF-8.
   * @throws {PluginError} not-found when it is not this execution's
   */
  openArtifact(reference) {
    if (!isArtifact(reference)) throw PluginError.invalidInput(`not an artifact reference: ${JSON.stringify(reference)}`);
    const services = this._services;
    const id = orchestrate(() => services.artifactOpen(JSON.stringify(reference)));
    let ended = false;
    const read = (max = CHUNK) => {
      if (ended) return new Uint8Array(0);
      const chunk = orchestrate(() => services.artifactRead(id, Math.max(1, Math.min(Math.floor(Number(max)) || CHUNK, 4 << 20))));
      if (!chunk.length) ended = true;
      return new Uint8Array(chunk);
    };
    return {
      read,
      /** The rest of the artifact as text (UTF-8). */
      text() {
        const decoder = new TextDecoder();
        let out = '';
        for (let chunk = read(); chunk.length; chunk = read()) out += decoder.decode(chunk, { stream: true });
        return out + decoder.decode();
      },
    };
  }

  /**
   * Rows given inline (an array of objects) or as an artifact of JSON lines
   * (a reference): the Rust SDK's `plexus_sdk::Rows`.
   * @throws {PluginError} invalid-input for a line that is not JSON
   */
  readRows(rows) {
    if (Array.isArray(rows)) return rows;
    const out = [];
    this.openArtifact(rows).text().split('\n').forEach((line, i) => {
      if (!line.trim()) return;
      try {
        out.push(JSON.parse(line));
      } catch (e) {
        throw PluginError.invalidInput(`artifact \`${rows.name}\` line ${i + 1}: not JSON: ${e.message}`);
      }
    });
    return out;
  }

  /** Write `rows` (objects) as artifact `name` of JSON lines; its reference. */
  writeRows(name, rows) {
    const out = this.createArtifact(name, 'application/x-ndjson');
    for (const row of rows) out.write(`${JSON.stringify(row)}\n`);
    return out.finish();
  }

  /** Report progress: `fraction` in 0..1 and a short message. */
  progress(fraction, message = '') {
    const f = Number(fraction);
    this._services.reportProgress(Number.isFinite(f) ? Math.min(1, Math.max(0, f)) : 0, String(message));
  }

  /** Whether the host asked this call to stop. */
  isCancelled() {
    return Boolean(this._services.isCancelled());
  }

  /** Throws a `cancelled` PluginError when the host asked this call to stop. */
  checkCancelled() {
    if (this.isCancelled()) throw PluginError.cancelled();
  }

  /** Milliseconds left until the deadline (undefined without one). */
  remainingMs() {
    return this.deadlineMs === undefined ? undefined : this.deadlineMs - Date.now();
  }

  /**
   * Record a named number returned with the result (the call-output's
   * metrics), e.g. `ctx.metric('rows', 1461)`. A value that is not a finite
   * number is left out, with a warning in the log.
   */
  metric(name, value) {
    const v = typeof value === 'bigint' ? Number(value) : value;
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      this.log.warn(`metric \`${name}\`: ${String(value)} is not a finite number; left out`);
      return;
    }
    this._metrics.push({ name: String(name), value: v });
  }
}

/** A host function returning `result<T, plugin-error>`: its value, an error as a PluginError. */
function orchestrate(request) {
  try {
    return request();
  } catch (e) {
    // componentize-js throws the error record as the `payload` of an Error.
    throw PluginError.from(e && typeof e === 'object' && 'payload' in e ? e.payload : e);
  }
}

/** Whether `value` is an artifact reference (an object with a `sha256:` `artifact`). */
export function isArtifact(value) {
  return Boolean(value) && typeof value === 'object' && String(value.artifact ?? '').startsWith('sha256:') && 'name' in value;
}

function parseOr(text, fallback) {
  if (text === undefined || text === null || text === '') return fallback;
  const value = JSON.parse(text);
  return value === null ? fallback : value;
}

/**
 * Define a plugin.
 *
 * @param {object} def
 * @param {string} def.id the plugin id, e.g. `com.example.report`
 * @param {string} def.name
 * @param {string} def.version semver
 * @param {string} [def.description]
 * @param {string[]} [def.authors]
 * @param {string} [def.license]
 * @param {string[]} [def.capabilities] e.g. `[capability.WORKFLOW_STEP]`
 * @param {Record<string, {description?: string, params?: object, output?: object,
 *   examples?: {params: unknown, output?: unknown, error?: string, description?: string}[],
 *   run: (ctx: Context, params: any) => unknown}>} def.operations
 * @returns {object} the plugin (export it as the module's default export)
 * @throws {TypeError} naming the field, when the definition is malformed
 */
export function definePlugin(def) {
  if (!def || typeof def !== 'object') throw new TypeError('definePlugin: expected an object');
  for (const field of ['id', 'name', 'version']) {
    if (typeof def[field] !== 'string' || !def[field].trim()) {
      throw new TypeError(`definePlugin: \`${field}\` must be a non-empty string`);
    }
  }
  for (const hook of ['initialize', 'cleanup']) {
    if (def[hook] !== undefined && typeof def[hook] !== 'function') {
      throw new TypeError(`definePlugin: \`${hook}\` must be a function`);
    }
  }
  if (!def.operations || typeof def.operations !== 'object') {
    throw new TypeError('definePlugin: `operations` must be an object of operations');
  }
  const operations = new Map();
  for (const [name, op] of Object.entries(def.operations)) {
    if (!op || typeof op.run !== 'function') throw new TypeError(`operation \`${name}\`: \`run\` must be a function`);
    for (const key of ['params', 'output']) {
      if (op[key] !== undefined && (typeof op[key] !== 'object' || op[key] === null)) {
        throw new TypeError(`operation \`${name}\`: \`${key}\` must be a JSON Schema object`);
      }
    }
    operations.set(name, {
      name,
      description: op.description ?? '',
      params: op.params,
      output: op.output,
      examples: op.examples ?? [],
      run: op.run,
    });
  }
  const metadata = {
    id: def.id,
    name: def.name,
    version: def.version,
    description: def.description ?? '',
    authors: [...(def.authors ?? [])],
    license: def.license,
    contractVersion: CONTRACT_VERSION,
    capabilities: [...(def.capabilities ?? [capability.WORKFLOW_STEP])],
    operations: [...operations.values()].map((op) => ({
      name: op.name,
      description: op.description,
      paramsSchema: op.params === undefined ? undefined : JSON.stringify(op.params),
      outputSchema: op.output === undefined ? undefined : JSON.stringify(op.output),
    })),
  };
  return Object.freeze({ [PLUGIN]: true, metadata, operations, hooks: { initialize: def.initialize, cleanup: def.cleanup } });
}

/**
 * Run the plugin's `initialize(config)` hook (if it has one) with the
 * manifest's config (JSON text), as the host does before an instance's first call.
 * @throws {PluginError} what the hook threw, as a PluginError
 */
export async function initialize(plugin, configText) {
  if (!plugin.hooks.initialize) return;
  try {
    await plugin.hooks.initialize(parseOr(configText, {}));
  } catch (e) {
    throw PluginError.from(e);
  }
}

/** Run the plugin's `cleanup()` hook (if it has one); what it throws is ignored. */
export async function cleanup(plugin) {
  if (!plugin.hooks.cleanup) return;
  try {
    await plugin.hooks.cleanup();
  } catch {
    // Best effort, as the host's cleanup is.
  }
}

/** Whether `value` is a plugin made by {@link definePlugin}. */
export function isPlugin(value) {
  return Boolean(value && value[PLUGIN]);
}

/**
 * Run one call: parse and check the parameters, run the operation, encode
 * its output. Used by the component and by TestHost alike.
 *
 * @param {object} plugin from definePlugin
 * @param {object} ectx the WIT execution-context
 * @param {object} services the WIT host functions
 * @returns {Promise<{output: string, metrics: {name: string, value: number}[]}>}
 * @throws {PluginError} for every failure
 */
export async function dispatch(plugin, ectx, services) {
  try {
    const op = plugin.operations.get(ectx.operation);
    if (!op) throw PluginError.unsupportedOperation(ectx.operation);
    let params;
    try {
      params = JSON.parse(ectx.parameters || 'null');
    } catch (e) {
      throw PluginError.invalidInput(`the parameters are not JSON: ${e.message}`);
    }
    if (op.params !== undefined) params = validate(op.params, params ?? {}, '');
    const ctx = new Context(ectx, services);
    const result = await op.run(ctx, params);
    let output;
    try {
      output = JSON.stringify(result === undefined ? null : result);
    } catch (e) {
      // A BigInt or a cycle: the plugin's fault, not the input's.
      throw PluginError.failed(`operation \`${op.name}\` returned a value JSON cannot hold: ${e.message}`);
    }
    if (output === undefined) throw PluginError.failed(`operation \`${op.name}\` returned a value JSON cannot hold`);
    return { output, metrics: ctx._metrics };
  } catch (e) {
    const error = PluginError.from(e);
    if (!(e instanceof PluginError) && e instanceof Error && e.stack) {
      try {
        services.log('debug', `${ectx.operation}: ${e.stack}`);
      } catch {
        // The log is best effort.
      }
    }
    throw error;
  }
}

export { validate } from './schema.js';
