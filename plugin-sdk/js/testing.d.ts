// Types of plexus-plugin-sdk/testing.

import type { LogLevel, Plugin } from './index.js';

export { PluginError } from './index.js';

/** Runs a plugin's operations in plain Node, through the component's own dispatch. */
export class TestHost {
  /**
   * @param options `config` the manifest's `[config]`, `upstream` the upstream steps' outputs,
   *   `state` the shared state to start from
   */
  constructor(
    plugin: Plugin,
    options?: {
      config?: unknown;
      upstream?: Record<string, unknown>;
      state?: Record<string, unknown>;
      workflowId?: string;
      stepId?: string;
      taskId?: string;
      /** Answers orchestration requests (`{op: 'start-workflow', ...}`); throw a PluginError to refuse. Default: none. */
      orchestrator?: (request: Record<string, any>) => unknown;
    },
  );
  readonly plugin: Plugin;
  /** Every log line. */
  readonly logs: { level: LogLevel; message: string }[];
  /** Every progress report. */
  readonly progress: { fraction: number; message: string }[];
  /** The shared state, key → JSON text (as the host keeps it). */
  readonly state: Map<string, string>;
  /** The metrics of the last call (empty when it failed). */
  readonly metrics: Record<string, number>;
  /** Whether `cancel()` was called. */
  readonly cancelled: boolean;
  /** How many calls were made. */
  readonly calls: number;
  /** Every orchestration request, in order. */
  readonly orchestrated: Record<string, any>[];
  /** Stored artifacts: digest (`sha256:…`) → bytes. */
  readonly artifacts: Map<string, Uint8Array>;
  /** The references of the artifacts calls finished, in order. */
  readonly written: import('./index.js').ArtifactRef[];
  /** Store bytes (or text) as an artifact, an input for a call; its reference. */
  putArtifact(name: string, data: Uint8Array | string, mediaType?: string): import('./index.js').ArtifactRef;
  /** Run the plugin's `initialize` hook with the config. */
  initialize(): Promise<void>;
  /** Run the plugin's `cleanup` hook. */
  cleanup(): Promise<void>;
  /** From now on, `ctx.isCancelled()` is true. */
  cancel(): void;
  /** The metadata the host will see, with the schemas as objects. */
  describe(): Record<string, any>;
  /** Call an operation as the host would; rejects with the PluginError the host would get. */
  call(
    operation: string,
    params?: unknown,
    options?: { attempt?: number; deadlineMs?: number; schedule?: { id: string; fireTimeMs: number; fireTime: string } },
  ): Promise<any>;
  /** Runs every example; rejects listing each that does not hold; resolves to how many ran. */
  checkExamples(): Promise<number>;
}
