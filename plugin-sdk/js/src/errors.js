// Plugin errors: data the host receives as a WIT `plugin-error`.

/** The kinds of a plugin error (the WIT `error-kind`). */
export const ErrorKind = Object.freeze({
  INVALID_INPUT: 'invalid-input',
  UNSUPPORTED_OPERATION: 'unsupported-operation',
  NOT_FOUND: 'not-found',
  FAILED: 'failed',
  CANCELLED: 'cancelled',
});

const KINDS = new Set(Object.values(ErrorKind));

/**
 * A plugin error: data the host receives as a `plugin-error` (kind, message,
 * retryable), never a trap. Throw it from `run`.
 */
export class PluginError extends Error {
  /**
   * @param {string} kind one of {@link ErrorKind}
   * @param {string} message what went wrong, for people
   * @param {{retryable?: boolean}} [options] whether a retry may succeed (default false)
   */
  constructor(kind, message, { retryable = false } = {}) {
    super(message);
    if (!KINDS.has(kind)) throw new TypeError(`unknown plugin error kind ${JSON.stringify(kind)}`);
    this.name = 'PluginError';
    this.kind = kind;
    this.retryable = Boolean(retryable);
  }

  /** The parameters are wrong (never retried). */
  static invalidInput(message) {
    return new PluginError(ErrorKind.INVALID_INPUT, message);
  }

  /** Something the call needs does not exist. */
  static notFound(message) {
    return new PluginError(ErrorKind.NOT_FOUND, message);
  }

  /** The operation failed; `retryable` when trying again may succeed. */
  static failed(message, { retryable = false } = {}) {
    return new PluginError(ErrorKind.FAILED, message, { retryable });
  }

  /** The call stopped because the host asked (see `ctx.checkCancelled()`). */
  static cancelled(message = 'stopped: the host asked the operation to stop') {
    return new PluginError(ErrorKind.CANCELLED, message);
  }

  /** The plugin has no operation `name`. */
  static unsupportedOperation(name) {
    return new PluginError(ErrorKind.UNSUPPORTED_OPERATION, `no operation \`${name}\``);
  }

  /**
   * Any thrown value as a plugin error: a PluginError as it is; a TypeError or
   * RangeError (bad input, usually) as invalid-input; a SyntaxError (JSON) as
   * invalid-input; anything else as failed. The message is kept.
   * @param {unknown} error
   * @returns {PluginError}
   */
  static from(error) {
    if (error instanceof PluginError) return error;
    if (error && typeof error === 'object' && KINDS.has(error.kind) && typeof error.message === 'string') {
      return new PluginError(error.kind, error.message, { retryable: error.retryable });
    }
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    const bad = error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError;
    return new PluginError(bad ? ErrorKind.INVALID_INPUT : ErrorKind.FAILED, message);
  }

  /** The WIT `plugin-error` record. */
  toData() {
    return { kind: this.kind, message: this.message, retryable: this.retryable };
  }
}

