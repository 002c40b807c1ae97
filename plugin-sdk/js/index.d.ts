// Types of plexus-plugin-sdk (the package is plain JavaScript; these are for
// TypeScript users and editors).

/** The `plexus:plugin` contract version this SDK implements. */
export const CONTRACT_VERSION: '0.4.0';

/** The kinds of a plugin error (the WIT `error-kind`). */
export type ErrorKindName = 'invalid-input' | 'unsupported-operation' | 'not-found' | 'failed' | 'cancelled';

/** The error kinds by name. */
export const ErrorKind: {
  readonly INVALID_INPUT: 'invalid-input';
  readonly UNSUPPORTED_OPERATION: 'unsupported-operation';
  readonly NOT_FOUND: 'not-found';
  readonly FAILED: 'failed';
  readonly CANCELLED: 'cancelled';
};

/** Capability tags a plugin may declare. */
export const capability: {
  readonly WORKFLOW_STEP: 'workflow-step';
  readonly SCHEDULED_TASK: 'scheduled-task';
  readonly CONTEXT_MANAGEMENT: 'context-management';
  readonly ORCHESTRATION: 'orchestration';
};

/** A plugin error: the host gets it as data (kind, message, retryable). */
export class PluginError extends Error {
  constructor(kind: ErrorKindName, message: string, options?: { retryable?: boolean });
  readonly kind: ErrorKindName;
  readonly retryable: boolean;
  static invalidInput(message: string): PluginError;
  static notFound(message: string): PluginError;
  static failed(message: string, options?: { retryable?: boolean }): PluginError;
  static cancelled(message?: string): PluginError;
  static unsupportedOperation(name: string): PluginError;
  /** Any thrown value as a plugin error (TypeError/RangeError/SyntaxError → invalid-input, else failed). */
  static from(error: unknown): PluginError;
  toData(): { kind: ErrorKindName; message: string; retryable: boolean };
}

/** Log levels (the WIT `log-level`). */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** `ctx.log(level, message)` or `ctx.log.info(message)`. */
export interface Log {
  (level: LogLevel, message: string): void;
  trace(message: string): void;
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** What `run` gets besides its parameters. */
export class Context {
  readonly executionId: string;
  /** Set when the call is a workflow step. */
  readonly workflowId?: string;
  readonly stepId?: string;
  /** Set when a schedule made the call. */
  readonly taskId?: string;
  /** 1 for the first attempt, 2 for the first retry, ... */
  readonly attempt: number;
  /** Deadline in ms since the Unix epoch. */
  readonly deadlineMs?: number;
  readonly operation: string;
  /** Outputs of upstream steps, keyed by step id. */
  readonly upstream: Record<string, unknown>;
  /** The manifest's `[config]`. */
  readonly config: Record<string, unknown>;
  /** The schedule that fired this call (its scheduled fire time), if one did; set by the host only. */
  readonly schedule?: { id: string; fireTimeMs: number; fireTime: string };
  readonly log: Log;
  /** The execution's shared state; values are JSON-encoded (any JSON value; `get` of a missing key is undefined). */
  readonly state: { get(key: string): unknown; set(key: string, value: unknown): void };
  /** Report progress: `fraction` in 0..1 (clamped) and a short message. */
  progress(fraction: number, message?: string): void;
  /** Whether the host asked this call to stop. */
  isCancelled(): boolean;
  /** Throws a `cancelled` PluginError when the host asked the call to stop. */
  checkCancelled(): void;
  /** Milliseconds left until the deadline, or undefined without one. */
  remainingMs(): number | undefined;
  /** Record a named number with the result (left out, with a warning, if not finite). */
  metric(name: string, value: number): void;
  /** Start a registered workflow; its execution id (needs the `orchestration` capability and grant, and a daemon). */
  startWorkflow(workflow: string, inputs?: Record<string, unknown>): string;
  /** The status of an execution (the HTTP API's execution view). */
  executionStatus(executionId: string): Record<string, any>;
  /** Create a schedule (the body of `POST /v1/schedules`); its id. It belongs to this plugin. */
  createSchedule(spec: Record<string, unknown>): string;
  /** Delete a schedule this plugin created. */
  cancelSchedule(scheduleId: string): void;
  /** Begin an artifact (contract 0.4): bytes stored by reference; `finish()` gives its reference. */
  createArtifact(name: string, mediaType?: string): ArtifactWriter;
  /** Open the artifact a reference names (one of this execution's). */
  openArtifact(reference: ArtifactRef): ArtifactReader;
  /** Rows inline, or from an artifact of JSON lines. */
  readRows(rows: Record<string, any>[] | ArtifactRef): Record<string, any>[];
  /** Write rows as an artifact of JSON lines; its reference. */
  writeRows(name: string, rows: Iterable<Record<string, any>>): ArtifactRef;
}

/** An artifact's reference: what `${{ steps.<id>.artifacts.<name> }}` gives. */
export interface ArtifactRef {
  artifact: string;
  name: string;
  bytes: number;
  media_type?: string;
}

/** An artifact being written. */
export interface ArtifactWriter {
  /** Append bytes, or text as UTF-8. */
  write(data: Uint8Array | string): void;
  /** Store the bytes written; the reference. */
  finish(): ArtifactRef;
}

/** An artifact opened for reading. */
export interface ArtifactReader {
  /** The next at most `max` bytes (1 MiB by default); empty at the end. */
  read(max?: number): Uint8Array;
  /** The rest as text (UTF-8). */
  text(): string;
}

/** Whether a value is an artifact reference. */
export function isArtifact(value: unknown): value is ArtifactRef;

/** A JSON Schema (the SDK checks a subset: see README.md). */
export type JsonSchema = Record<string, unknown> | boolean;

/** Extra JSON Schema keywords a builder copies in (`description`, `default`, `minimum`, ...). */
export type SchemaOptions = Record<string, unknown>;

/** Builders of JSON Schemas: each returns a plain schema object. */
export const s: {
  string(options?: SchemaOptions): Record<string, unknown>;
  number(options?: SchemaOptions): Record<string, unknown>;
  integer(options?: SchemaOptions): Record<string, unknown>;
  boolean(options?: SchemaOptions): Record<string, unknown>;
  enum(values: readonly unknown[], options?: SchemaOptions): Record<string, unknown>;
  array(items?: JsonSchema, options?: SchemaOptions): Record<string, unknown>;
  /**
   * With `properties`: exactly those (`additionalProperties: false`), each required unless
   * wrapped in `s.optional` or given a `default`. Without: any object.
   */
  object(properties?: Record<string, JsonSchema>, options?: SchemaOptions): Record<string, unknown>;
  /** The same schema, not required in the `s.object` it is a property of. */
  optional<T extends JsonSchema>(schema: T): T;
  /** Anything (an empty schema). */
  any(options?: SchemaOptions): Record<string, unknown>;
};

/** An example call, checked by `TestHost.checkExamples()`. */
export interface Example {
  params: unknown;
  /** The output expected (deep equality); without it (and without `error`) the call must succeed. */
  output?: unknown;
  /** The error kind expected instead of an output. */
  error?: ErrorKindName;
  description?: string;
}

/** One operation: its schemas, examples and `run`. */
export interface OperationDefinition<P = any, O = unknown> {
  /** One line for `plexus plugins info`. */
  description?: string;
  /** JSON Schema of the parameters, checked before `run` (defaults filled in). */
  params?: JsonSchema;
  /** JSON Schema of the output (published, not checked). */
  output?: JsonSchema;
  examples?: Example[];
  /** Runs the operation; may be async. Throw a `PluginError` to fail. */
  run(ctx: Context, params: P): O | Promise<O>;
}

/** What `definePlugin` takes. `contractVersion` is the SDK's (`CONTRACT_VERSION`). */
export interface PluginDefinition {
  /** Reverse-DNS id, e.g. `com.example.report`. */
  id: string;
  name: string;
  version: string;
  description?: string;
  authors?: string[];
  license?: string;
  /** Default `['workflow-step']`. */
  capabilities?: string[];
  operations: Record<string, OperationDefinition>;
  /**
   * Runs before an instance's first call with the manifest's `[config]` (Framework0's
   * `initialize(config)`): an instance per call (the default) runs it before its call,
   * a reused one before its first. Throw to fail the call.
   */
  initialize?(config: Record<string, unknown>): void | Promise<void>;
  /** Runs when the host discards the instance (after the call, or when a reused one retires); best effort. */
  cleanup?(): void | Promise<void>;
}

/** A plugin made by `definePlugin`: export it as the module's default export. */
export interface Plugin {
  readonly metadata: Record<string, unknown>;
  readonly operations: ReadonlyMap<string, OperationDefinition & { name: string }>;
}

/** Define a plugin; throws a TypeError naming the field when the definition is malformed. */
export function definePlugin(definition: PluginDefinition): Plugin;
/** Whether `value` was made by `definePlugin`. */
export function isPlugin(value: unknown): value is Plugin;
/**
 * Run one call as the component does (JSON text in and out; every failure a PluginError).
 * Internal: the glue and TestHost use it.
 */
export function dispatch(
  plugin: Plugin,
  ectx: Record<string, unknown>,
  services: Record<string, (...args: any[]) => any>,
): Promise<{ output: string; metrics: { name: string; value: number }[] }>;

/** Check `value` against `schema`, with defaults filled in; throws an invalid-input PluginError naming the field. */
export function validate(schema: JsonSchema, value: unknown, path: string): unknown;
