// The rooms' rules (ARCHITECTURE.md), checked on the import statements of the sources: a new
// import that crosses a wall fails here, not in a review.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(__dirname, '..', '..');

function sources(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) return sources(rel);
    return /\.(ts|mts|mjs|js)$/.test(e.name) ? [rel] : [];
  });
}

/** Every module specifier a file imports or re-exports (static, side-effect and dynamic imports). */
export function importsOf(text: string): string[] {
  const out: string[] = [];
  const patterns = [
    /\b(?:import|export)\s+(?:type\s+)?[^'";]*?\bfrom\s*['"]([^'"]+)['"]/g,
    /\bimport\s*['"]([^'"]+)['"]/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) out.push(m[1]);
  return out;
}

/** Where a relative import of `file` lands, as a repository path; packages stay as they are. */
function target(file: string, spec: string): string {
  if (!spec.startsWith('.')) return spec;
  return path.relative(ROOT, path.resolve(ROOT, path.dirname(file), spec)).split(path.sep).join('/');
}

function edges(dir: string): { file: string; to: string }[] {
  return sources(dir).flatMap((file) =>
    importsOf(readFileSync(path.join(ROOT, file), 'utf8')).map((spec) => ({ file: file.split(path.sep).join('/'), to: target(file, spec) })));
}

test('the import scanner sees every form of import', () => {
  const text = `import a from './a';\nimport type { B } from "../b";\nimport './c';\nexport { d } from './d';\nconst e = await import('./e');\nimport {\n  f,\n  g,\n} from './fg';`;
  assert.deepEqual(importsOf(text).sort(), ['../b', './a', './c', './d', './e', './fg'].sort());
});

test('media/ imports only common/ (and its own files)', () => {
  const bad = edges('media').filter((e) => !e.to.startsWith('common/') && !e.to.startsWith('media/'));
  assert.deepEqual(bad, [], `media/ may import only common/: ${bad.map((e) => `${e.file} -> ${e.to}`).join(', ')}`);
  assert.ok(edges('media').some((e) => e.to.startsWith('common/')), 'the scan found media/ imports at all');
});

test('common/ imports only common/ (protocol.ts also the LSP protocol package)', () => {
  const bad = edges('common').filter((e) => !e.to.startsWith('common/')
    && !(e.file === 'common/protocol.ts' && e.to === 'vscode-languageserver-protocol'));
  assert.deepEqual(bad, [], bad.map((e) => `${e.file} -> ${e.to}`).join(', '));
});

test('the engine never imports the LSP library or the server', () => {
  const bad = edges('backend/src/engine').filter((e) => e.to.startsWith('vscode-languageserver') || e.to === 'vscode'
    || (e.to.startsWith('backend/src/') && !e.to.startsWith('backend/src/engine/')));
  assert.deepEqual(bad, [], bad.map((e) => `${e.file} -> ${e.to}`).join(', '));
});

test('no sideways arrows between the extension\'s rooms', () => {
  const ext = edges('extension/src');
  const forbidden: [RegExp, RegExp, string][] = [
    [/^extension\/src\/config\.ts$/, /^extension\/src\/completion\//, 'config.ts is read by completion/, not the other way'],
    [/^extension\/src\/completion\//, /^extension\/src\/inspector\//, 'completion/ does not reach into the inspector'],
    [/^extension\/src\/inspector\//, /^extension\/src\/completion\//, 'the inspector does not reach into completion/'],
    [/^extension\/src\/(?!ctx\.ts$)/, /^extension\/src\/completion\/provider$/, 'only ctx.ts wires the provider'],
  ];
  const bad = ext.flatMap((e) => forbidden.filter(([from, to]) => from.test(e.file) && to.test(e.to)).map(([, , why]) => `${e.file} -> ${e.to} (${why})`));
  assert.deepEqual(bad, []);
});

test('one definition per fact: providers, timing keys and empty results live in common/vocabulary.ts', () => {
  const facts: [string, RegExp][] = [
    ['the execution provider list', /['"]cpu['"],\s*['"]webgpu['"],\s*['"]cuda['"]/],
    ['the timing keys', /['"]queueMs['"],\s*['"]tokenizeMs['"]/],
    ['an empty compute summary', /loopShare:\s*\[0,\s*0,\s*0,\s*0\]/],
    ['the empty results', /function\s+(emptyCompleteResult|emptyAnalyzeResult|emptyTimings)\b/],
  ];
  const files = ['common', 'extension/src', 'backend/src', 'media'].flatMap(sources).map((f) => f.split(path.sep).join('/'));
  const bad: string[] = [];
  for (const [what, re] of facts) {
    for (const f of files) if (f !== 'common/vocabulary.ts' && re.test(readFileSync(path.join(ROOT, f), 'utf8'))) bad.push(`${what} in ${f}`);
  }
  assert.deepEqual(bad, []);
});
