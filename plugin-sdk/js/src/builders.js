// `s`: small builders of the JSON Schemas the SDK checks. They return plain
// JSON Schema objects, so they mix freely with hand-written schemas.

const OPTIONAL = Symbol('plexus.optional');

function object(properties, options = {}) {
  if (properties === undefined) return { type: 'object', ...options };
  const required = Object.entries(properties)
    .filter(([, schema]) => !schema?.[OPTIONAL] && schema?.default === undefined)
    .map(([key]) => key);
  return {
    type: 'object',
    properties,
    ...(required.length ? { required } : {}),
    additionalProperties: false,
    ...options,
  };
}

/**
 * Builders of JSON Schemas. Every builder takes extra keywords last
 * (`description`, `default`, `minimum`, ...), which are copied in.
 *
 * @example
 * params: s.object({
 *   rows: s.array(s.object()),                     // any objects
 *   by: s.string({ description: 'the field' }),
 *   top: s.integer({ minimum: 1, default: 5 }),     // a default makes it optional
 *   title: s.optional(s.string()),
 * })
 */
export const s = Object.freeze({
  /** `{type: 'string', ...options}` */
  string: (options = {}) => ({ type: 'string', ...options }),
  /** `{type: 'number', ...options}` (any finite number) */
  number: (options = {}) => ({ type: 'number', ...options }),
  /** `{type: 'integer', ...options}` */
  integer: (options = {}) => ({ type: 'integer', ...options }),
  /** `{type: 'boolean', ...options}` */
  boolean: (options = {}) => ({ type: 'boolean', ...options }),
  /** `{enum: values, ...options}` */
  enum: (values, options = {}) => ({ enum: [...values], ...options }),
  /** `{type: 'array', items, ...options}` */
  array: (items, options = {}) => ({ type: 'array', ...(items === undefined ? {} : { items }), ...options }),
  /**
   * With `properties`: an object of exactly those properties (`additionalProperties: false`);
   * each is required unless wrapped in {@link s.optional} or given a `default`.
   * Without: any object.
   */
  object,
  /** The same schema, not required in the {@link s.object} it is a property of. */
  optional: (schema) => ({ ...schema, [OPTIONAL]: true }),
  /** Anything (an empty schema), with `options` (e.g. a description). */
  any: (options = {}) => ({ ...options }),
});
