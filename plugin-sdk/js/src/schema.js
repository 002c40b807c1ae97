// The JSON Schema subset the SDK checks parameters against before `run`:
// type (string, number, integer, boolean, object, array, null, or a list of
// them), enum, const, properties, required, additionalProperties (false or a
// schema), items, minimum, maximum, exclusiveMinimum, exclusiveMaximum,
// minLength, maxLength, minItems, maxItems, default (filled in for a missing
// property). Other keywords are kept in the published schema and not checked.

import { PluginError } from './errors.js';

const MAX_DEPTH = 64;

function kindOf(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

function describe(value) {
  const kind = kindOf(value);
  if (kind === 'object' || kind === 'array') return `an ${kind}`;
  return `${kind === 'integer' ? 'a number' : kind === 'null' ? 'null' : `a ${kind}`} ${JSON.stringify(value)}`.trim();
}

function fits(type, value) {
  const kind = kindOf(value);
  if (type === 'number') return kind === 'number' || kind === 'integer';
  return type === kind;
}

function name(path) {
  return path === '' ? 'the parameters' : `\`${path}\``;
}

/**
 * Check `value` against `schema`, returning it with defaults filled in (a copy
 * where defaults were added).
 *
 * @param {object} schema a JSON Schema (the subset above)
 * @param {unknown} value parsed JSON
 * @param {string} path where `value` is, for messages (`rows[3].date`)
 * @returns {unknown}
 * @throws {PluginError} invalid-input naming the field
 */
export function validate(schema, value, path, depth = 0) {
  if (schema === true || schema === undefined || schema === null) return value;
  if (schema === false) throw PluginError.invalidInput(`${name(path)} is not allowed`);
  if (depth > MAX_DEPTH) throw PluginError.invalidInput(`${name(path)}: nested more than ${MAX_DEPTH} levels deep`);
  const bad = (what) => PluginError.invalidInput(`${name(path)}: ${what}`);
  if (schema.type !== undefined) {
    const types = Array.isArray(schema.type) ? schema.type : [schema.type];
    if (!types.some((t) => fits(t, value))) throw bad(`expected ${types.join(' or ')}, got ${describe(value)}`);
  }
  if (schema.enum !== undefined && !schema.enum.some((e) => JSON.stringify(e) === JSON.stringify(value))) {
    throw bad(`must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${JSON.stringify(value)}`);
  }
  if (schema.const !== undefined && JSON.stringify(schema.const) !== JSON.stringify(value)) {
    throw bad(`must be ${JSON.stringify(schema.const)}`);
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) throw bad(`must be at least ${schema.minimum}, got ${value}`);
    if (schema.maximum !== undefined && value > schema.maximum) throw bad(`must be at most ${schema.maximum}, got ${value}`);
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) {
      throw bad(`must be more than ${schema.exclusiveMinimum}, got ${value}`);
    }
    if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) {
      throw bad(`must be less than ${schema.exclusiveMaximum}, got ${value}`);
    }
  }
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) throw bad(`must be at least ${schema.minLength} characters`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) throw bad(`must be at most ${schema.maxLength} characters`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) throw bad(`must have at least ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) throw bad(`must have at most ${schema.maxItems} items`);
    if (schema.items !== undefined && typeof schema.items === 'object') {
      let copy = null;
      value.forEach((item, i) => {
        const checked = validate(schema.items, item, `${path}[${i}]`, depth + 1);
        if (checked !== item) (copy ??= [...value])[i] = checked;
      });
      return copy ?? value;
    }
    return value;
  }
  if (kindOf(value) === 'object') {
    const properties = schema.properties ?? {};
    let copy = null;
    if (schema.additionalProperties === false) {
      // Before `required`: a misspelled key is both unknown and a missing one, and this says which.
      const unknown = Object.keys(value).find((key) => !Object.hasOwn(properties, key));
      if (unknown !== undefined) {
        const known = Object.keys(properties);
        throw PluginError.invalidInput(
          `\`${path === '' ? unknown : `${path}.${unknown}`}\` is not ${path === '' ? 'a parameter' : 'a field here'}` +
            `${known.length ? ` (expected: ${known.join(', ')})` : ''}`,
        );
      }
    }
    for (const key of schema.required ?? []) {
      if (!Object.hasOwn(value, key) && properties[key]?.default === undefined) throw bad(`missing required \`${key}\``);
    }
    for (const [key, sub] of Object.entries(properties)) {
      const at = path === '' ? key : `${path}.${key}`;
      if (Object.hasOwn(value, key)) {
        const checked = validate(sub, value[key], at, depth + 1);
        if (checked !== value[key]) (copy ??= { ...value })[key] = checked;
      } else if (sub && sub.default !== undefined) {
        (copy ??= { ...value })[key] = structuredClone(sub.default);
      }
    }
    for (const key of Object.keys(value)) {
      if (Object.hasOwn(properties, key)) continue;
      const at = path === '' ? key : `${path}.${key}`;
      if (schema.additionalProperties && typeof schema.additionalProperties === 'object') {
        const checked = validate(schema.additionalProperties, value[key], at, depth + 1);
        if (checked !== value[key]) (copy ??= { ...value })[key] = checked;
      }
    }
    return copy ?? value;
  }
  return value;
}
