// Types of plexus-plugin-sdk (the package is plain JavaScript; these are for
// TypeScript users and editors).

/** The `plexus:plugin` contract version this SDK implements. */
export const CONTRACT_VERSION: '0.2.0';

export type ErrorKindName = 'invalid-input' | 'unsupported-operation' | 'not-found' | 'failed' | 'cancelled';

export const ErrorKind: {
  readonly INVALID_INPUT: 'invalid-input';
  readonly UNSUPPORTED_OPERATION: 'unsupported-operation';
  readonly NOT_FOUND: 'not-found';
  readonly FAILED: 'failed';
  readonly CANCELLED: 'cancelled';
};

export const capability: {
  readonly WORKFLOW_STEP: 'workflow-step';
  readonly SCHEDULED_TASK: 'scheduled-task';
  readonly CONTEXT_MANAGEMENT: 'context-management';
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

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

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
  readonly workflowId?: string;
  readonly stepId?: string;
  readonly taskId?: string;
  readonly attempt: number;
  /** Deadline in ms since the Unix epoch. */
  readonly deadlineMs?: number;
  readonly operation: string;
  /** Outputs of upstream steps, keyed by step id. */
  readonly upstream: Record<string, unknown>;
  /** The manifest's `[config]`. */
  readonly config: Record<string, unknown>;
  readonly log: Log;
  /** The execution's shared state; values are JSON-encoded. */
  readonly state: { get(key: string): unknown; set(key: string, value: unknown): void };
  /** `fraction` in 0..1. */
  progress(fraction: number, message?: string): void;
  isCancelled(): boolean;
  /** Throws a `cancelled` PluginError when the host asked the call to stop. */
  checkCancelled(): void;
  remainingMs(): number | undefined;
  metric(name: string, value: number): void;
}

/** A JSON Schema (the SDK checks a subset: see README.md). */
export type JsonSchema = Record<string, unknown> | boolean;

export interface Example {
  params: unknown;
  output?: unknown;
  /** The error kind expected instead of an output. */
  error?: ErrorKindName;
  description?: string;
}

export interface OperationDefinition<P = any, O = unknown> {
  description?: string;
  params?: JsonSchema;
  output?: JsonSchema;
  examples?: Example[];
  run(ctx: Context, params: P): O | Promise<O>;
}

export interface PluginDefinition {
  id: string;
  name: string;
  version: string;
  description?: string;
  authors?: string[];
  license?: string;
  capabilities?: string[];
  operations: Record<string, OperationDefinition>;
}

export interface Plugin {
  readonly metadata: Record<string, unknown>;
  readonly operations: ReadonlyMap<string, OperationDefinition & { name: string }>;
}

export function definePlugin(definition: PluginDefinition): Plugin;
export function isPlugin(value: unknown): value is Plugin;
/** Check `value` against `schema`, with defaults filled in; throws an invalid-input PluginError naming the field. */
export function validate(schema: JsonSchema, value: unknown, path: string): unknown;

/** `plexus-plugin-sdk/testing`: run operations in Node. */
export class TestHost {
  constructor(plugin: Plugin, options?: { config?: object; upstream?: object; state?: Record<string, unknown> });
  readonly logs: { level: LogLevel; message: string }[];
  readonly progress: { fraction: number; message: string }[];
  readonly state: Map<string, string>;
  readonly metrics: Record<string, number>;
  cancel(): void;
  describe(): Record<string, unknown>;
  call(operation: string, params?: unknown, options?: { attempt?: number; deadlineMs?: number }): Promise<any>;
  /** Runs every example; rejects listing each that does not hold; resolves to how many ran. */
  checkExamples(): Promise<number>;
}
