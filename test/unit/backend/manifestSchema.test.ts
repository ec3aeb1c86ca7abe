// models/manifest.schema.json from the backend's side: the shared fixtures (test/fixtures/manifests,
// also run by models/toolchain/tests/test_manifest_schema.py with jsonschema), the real model folders,
// and the field table: every field the schema declares is honoured or refused (manifestFields.ts).
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { EXECUTION_PROVIDERS, PROVIDER_PREFERENCES } from '../../../common/vocabulary';
import { KEYWORDS, SchemaChecker } from '../../../backend/src/engine/jsonSchema';
import { declaredFields, MANIFEST_FIELDS, MANIFEST_SCHEMA, manifestSchema, REFUSALS } from '../../../backend/src/engine/manifestFields';
import { Manifest, validateManifest } from '../../../backend/src/engine/modelFolder';
import { MODELS, REPO } from './helpers';

const FIXTURES = path.join(REPO, 'test', 'fixtures', 'manifests');
interface Case {
  name: string;
  base: string;
  set?: [string[], unknown][];
  delete?: string[][];
  errors: string[];
  backend: string;
}
const CASES: Case[] = JSON.parse(readFileSync(path.join(FIXTURES, 'cases.json'), 'utf8')).cases;

function build(c: Pick<Case, 'base' | 'set' | 'delete'>): Record<string, unknown> {
  const m = JSON.parse(readFileSync(path.join(FIXTURES, c.base), 'utf8'));
  const parent = (p: string[]) => p.slice(0, -1).reduce((node, k) => node[k], m);
  for (const [p, value] of c.set ?? []) parent(p)[p.at(-1)!] = structuredClone(value);
  for (const p of c.delete ?? []) delete parent(p)[p.at(-1)!];
  return m;
}

for (const c of CASES) {
  test(`manifest fixture: ${c.name}`, () => {
    const m = build(c);
    const found = manifestSchema.validate(m);
    assert.deepEqual([...new Set(found.map((e) => e.path))].sort(), [...c.errors].sort(), JSON.stringify(found));
    if (c.backend === 'ok') {
      validateManifest(m, 'manifest.json');
    } else {
      const want = c.backend.replace(/^refused: /, '');
      assert.throws(() => validateManifest(m, 'manifest.json'), (e: Error) => e.message.includes(want) && e.message.includes('manifest.json'),
        `expected a refusal containing ${JSON.stringify(want)}`);
    }
  });
}

/** Every field path present in a manifest, open objects' keys as `*`; free-form records are leaves. */
function presentFields(v: unknown, prefix = ''): string[] {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return [];
  const open = new Set(['files', 'graph.variants']);
  const freeForm = new Set(['training', 'metrics', 'exported']);
  return Object.entries(v).flatMap(([k, sub]) => {
    const p = prefix === '' ? k : `${prefix}.${open.has(prefix) ? '*' : k}`;
    return freeForm.has(p) ? [p] : [p, ...presentFields(sub, p)];
  });
}

test('every real model folder validates, and every field it has is honoured or refused by the backend', () => {
  const dirs = readdirSync(MODELS).filter((d) => existsSync(path.join(MODELS, d, 'manifest.json')));
  assert.ok(dirs.includes('tiny-test') && dirs.includes('vffn-code-interim'));
  for (const d of dirs) {
    const file = path.join(MODELS, d, 'manifest.json');
    const m = JSON.parse(readFileSync(file, 'utf8'));
    validateManifest(m, file);
    const unhandled = presentFields(m).filter((f) => !(f in MANIFEST_FIELDS));
    assert.deepEqual(unhandled, [], `${d}: fields the backend neither honours nor refuses`);
  }
});

test('the field table covers exactly the fields the schema declares', () => {
  const declared = declaredFields();
  assert.ok(declared.includes('architecture.max_loops') && declared.includes('files.*.sha256') && declared.includes('graph.variants.*.providers'));
  const missing = declared.filter((f) => !(f in MANIFEST_FIELDS));
  assert.deepEqual(missing, [], 'declared by models/manifest.schema.json but not in backend/src/engine/manifestFields.ts');
  const stale = Object.keys(MANIFEST_FIELDS).filter((f) => !declared.includes(f));
  assert.deepEqual(stale, [], 'in the field table but not in the schema');
  for (const r of REFUSALS) assert.ok(r.field in MANIFEST_FIELDS, r.field);
  for (const [f, use] of Object.entries(MANIFEST_FIELDS)) assert.ok(use.note.length > 0, f);
});

test('a field the schema does not declare is refused, naming it', () => {
  const m = build({ base: 'tiny-test.json', set: [[['architecture', 'moe_experts'], 16]] });
  assert.throws(() => validateManifest(m, 'x/manifest.json'), /architecture\.moe_experts is not a field of this format.*x\/manifest\.json/);
});

test('the schema speaks the backend\'s vocabulary: providers, provider settings, kinds', () => {
  const defs = MANIFEST_SCHEMA.$defs as Record<string, { enum?: string[]; properties?: Record<string, { enum?: string[] }> }>;
  assert.deepEqual(defs.provider.enum, [...EXECUTION_PROVIDERS]);
  const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8'));
  assert.deepEqual(pkg.contributes.configuration.properties['versatileffn.provider'].enum, [...PROVIDER_PREFERENCES]);
  const kinds: Manifest['architecture']['kind'][] = ['versatile', 'dense', 'loop', 'upcycled'];
  assert.deepEqual(defs.architecture.properties!.kind.enum, kinds);
});

test('the checker refuses a schema keyword it does not implement, and an unresolved reference', () => {
  assert.ok(KEYWORDS.has('additionalProperties'));
  assert.throws(() => new SchemaChecker({ type: 'object', patternProperties: {} }), /keyword "patternProperties"/);
  assert.throws(() => new SchemaChecker({ $ref: '#/$defs/nothing' }), /does not resolve/);
  const c = new SchemaChecker({ type: 'object', properties: { a: { type: ['integer', 'null'], minimum: 1 } }, required: ['a'] });
  assert.deepEqual(c.validate({ a: null }), []);
  assert.deepEqual(c.validate({ a: 0 }).map((e) => e.path), ['a']);
  assert.deepEqual(c.validate({}).map((e) => `${e.path} ${e.message}`), ['a is missing']);
});
