// A small JSON Schema (draft 2020-12) checker for the one schema the backend reads:
// models/manifest.schema.json. It implements the keywords listed in KEYWORDS and refuses a
// schema that uses any other, so the schema cannot come to rely on a keyword this checker
// would silently skip. The toolchain checks the same schema with Python's jsonschema, and
// both run on the same fixtures (test/fixtures/manifests), so the two readings are compared.

export type Schema = boolean | { [keyword: string]: unknown };

export interface SchemaError {
  /** Where in the instance, e.g. "architecture.max_loops" or "graph.variants.masked.providers[2]"; "" is the root. */
  path: string;
  message: string;
}

/** Keywords that only annotate (no effect on validity). */
const ANNOTATIONS = new Set(['$schema', '$id', '$comment', 'title', 'description', '$defs', 'default', 'examples']);
/** Keywords this checker implements. */
export const KEYWORDS = new Set([
  'type', 'const', 'enum', '$ref', 'allOf', 'if', 'then', 'else',
  'properties', 'required', 'additionalProperties', 'propertyNames', 'minProperties',
  'items', 'minItems', 'maxItems',
  'minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum',
  'minLength', 'pattern',
]);

export class SchemaChecker {
  private readonly patterns = new Map<string, RegExp>();

  /** Throws when `root` uses a keyword this checker does not implement, or a $ref it cannot resolve. */
  constructor(private readonly root: Schema) {
    this.checkSchema(root, '#');
  }

  /** Every way `value` breaks the schema (empty when it conforms). */
  validate(value: unknown): SchemaError[] {
    const errors: SchemaError[] = [];
    this.check(this.root, value, [], errors);
    return errors;
  }

  /** Resolves a local reference ("#/$defs/name"). */
  resolve(ref: string): Schema {
    if (!ref.startsWith('#/')) throw new Error(`schema: only local references are supported, not ${ref}`);
    let node: unknown = this.root;
    for (const part of ref.slice(2).split('/')) {
      node = typeof node === 'object' && node !== null ? (node as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')] : undefined;
    }
    if (typeof node !== 'boolean' && (typeof node !== 'object' || node === null)) throw new Error(`schema: ${ref} does not resolve`);
    return node as Schema;
  }

  private checkSchema(s: unknown, where: string): void {
    if (typeof s === 'boolean') return;
    if (typeof s !== 'object' || s === null || Array.isArray(s)) throw new Error(`schema: ${where} is not a schema`);
    for (const [k, v] of Object.entries(s)) {
      if (ANNOTATIONS.has(k)) {
        if (k === '$defs') for (const [name, d] of Object.entries(v as object)) this.checkSchema(d, `${where}/$defs/${name}`);
        continue;
      }
      if (!KEYWORDS.has(k)) throw new Error(`schema: keyword "${k}" at ${where} is not supported by this checker (backend/src/engine/jsonSchema.ts)`);
      if (k === '$ref') this.resolve(v as string);
      if (k === 'properties') for (const [name, p] of Object.entries(v as object)) this.checkSchema(p, `${where}/properties/${name}`);
      if (['additionalProperties', 'propertyNames', 'items', 'if', 'then', 'else'].includes(k)) this.checkSchema(v, `${where}/${k}`);
      if (k === 'allOf') (v as unknown[]).forEach((p, i) => this.checkSchema(p, `${where}/allOf/${i}`));
      if (k === 'pattern') this.regex(v as string);
    }
  }

  private regex(pattern: string): RegExp {
    let re = this.patterns.get(pattern);
    if (!re) this.patterns.set(pattern, (re = new RegExp(pattern, 'u')));
    return re;
  }

  private check(schema: Schema, v: unknown, at: (string | number)[], errors: SchemaError[]): void {
    if (schema === true) return;
    const fail = (message: string) => errors.push({ path: pathText(at), message });
    if (schema === false) {
      fail('is not allowed here');
      return;
    }
    const s = schema as Record<string, unknown>;
    if (typeof s.$ref === 'string') this.check(this.resolve(s.$ref), v, at, errors);
    if (s.type !== undefined) {
      const types = Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
      if (!types.some((t) => isType(v, t))) {
        fail(`should be ${types.join(' or ')}, not ${describe(v)}`);
        return;
      }
    }
    if ('const' in s && !equal(v, s.const)) fail(`should be ${JSON.stringify(s.const)}, not ${describe(v)}`);
    if (Array.isArray(s.enum) && !s.enum.some((e) => equal(v, e))) fail(`should be one of ${s.enum.map((e) => JSON.stringify(e)).join(', ')}, not ${describe(v)}`);
    if (Array.isArray(s.allOf)) for (const sub of s.allOf) this.check(sub as Schema, v, at, errors);
    if (s.if !== undefined) {
      const branch = this.validateAt(s.if as Schema, v).length === 0 ? s.then : s.else;
      if (branch !== undefined) this.check(branch as Schema, v, at, errors);
    }
    if (typeof v === 'number') {
      if (typeof s.minimum === 'number' && v < s.minimum) fail(`should be at least ${s.minimum}, not ${v}`);
      if (typeof s.maximum === 'number' && v > s.maximum) fail(`should be at most ${s.maximum}, not ${v}`);
      if (typeof s.exclusiveMinimum === 'number' && v <= s.exclusiveMinimum) fail(`should be above ${s.exclusiveMinimum}, not ${v}`);
      if (typeof s.exclusiveMaximum === 'number' && v >= s.exclusiveMaximum) fail(`should be below ${s.exclusiveMaximum}, not ${v}`);
    }
    if (typeof v === 'string') {
      if (typeof s.minLength === 'number' && [...v].length < s.minLength) fail(s.minLength === 1 ? 'should not be empty' : `should have at least ${s.minLength} characters`);
      if (typeof s.pattern === 'string' && !this.regex(s.pattern).test(v)) fail(`${JSON.stringify(v)} does not match ${s.pattern}`);
    }
    if (Array.isArray(v)) {
      if (typeof s.minItems === 'number' && v.length < s.minItems) fail(`should have at least ${s.minItems} item(s)`);
      if (typeof s.maxItems === 'number' && v.length > s.maxItems) fail(`should have at most ${s.maxItems} item(s)`);
      if (s.items !== undefined) v.forEach((item, i) => this.check(s.items as Schema, item, [...at, i], errors));
    }
    if (isObject(v)) {
      const props = (s.properties ?? {}) as Record<string, Schema>;
      if (Array.isArray(s.required)) {
        for (const k of s.required as string[]) if (!(k in v)) errors.push({ path: pathText([...at, k]), message: 'is missing' });
      }
      if (typeof s.minProperties === 'number' && Object.keys(v).length < s.minProperties) fail(`should have at least ${s.minProperties} entr${s.minProperties === 1 ? 'y' : 'ies'}`);
      for (const [k, item] of Object.entries(v)) {
        if (s.propertyNames !== undefined) {
          for (const e of this.validateAt(s.propertyNames as Schema, k)) errors.push({ path: pathText([...at, k]), message: `is not an allowed name: it ${e.message}` });
        }
        if (k in props) this.check(props[k], item, [...at, k], errors);
        else if (s.additionalProperties === false) errors.push({ path: pathText([...at, k]), message: 'is not a field of this format (unknown to this backend)' });
        else if (s.additionalProperties !== undefined) this.check(s.additionalProperties as Schema, item, [...at, k], errors);
      }
    }
  }

  private validateAt(schema: Schema, v: unknown): SchemaError[] {
    const errors: SchemaError[] = [];
    this.check(schema, v, [], errors);
    return errors;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isType(v: unknown, t: string): boolean {
  switch (t) {
    case 'object': return isObject(v);
    case 'array': return Array.isArray(v);
    case 'string': return typeof v === 'string';
    case 'integer': return typeof v === 'number' && Number.isInteger(v);
    case 'number': return typeof v === 'number' && Number.isFinite(v);
    case 'boolean': return typeof v === 'boolean';
    case 'null': return v === null;
    default: throw new Error(`schema: unknown type ${t}`);
  }
}

function equal(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || typeof a !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  return ka.length === kb.length && ka.every((k) => equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (typeof v === 'object') return 'an object';
  const text = JSON.stringify(v);
  return text.length > 40 ? `${text.slice(0, 37)}…` : text;
}

function pathText(at: readonly (string | number)[]): string {
  let out = '';
  for (const p of at) out += typeof p === 'number' ? `[${p}]` : out === '' ? p : `.${p}`;
  return out;
}
