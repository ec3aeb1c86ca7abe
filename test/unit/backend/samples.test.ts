import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { pickSamples, typed } from '../../../backend/src/tools/samples';

test('bench samples: a cursor mid-line with the rest of its line unwritten, and typing moves that text into the prefix', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'vffn-samples-'));
  try {
    const file = path.join(dir, 'a.py');
    const text = Array.from({ length: 40 }, (_, i) => `    value_${i} = compute_something(value_${i - 1}, ${i})`).join('\n') + '\n';
    writeFileSync(file, text);
    const samples = pickSamples([file], 5, 7);
    assert.equal(samples.length, 5);
    for (const s of samples) {
      assert.equal(s.prefix + s.unwritten + s.suffix, text);
      assert.ok(s.unwritten.length > 0 && !s.unwritten.includes('\n'));
      assert.ok(s.suffix.startsWith('\n'));
      assert.ok(!s.prefix.endsWith('\n'), 'the cursor is mid-line');
      const t = typed(s, 2);
      assert.equal(t.prefix, s.prefix + s.unwritten.slice(0, 2));
      assert.equal(t.suffix, s.suffix);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
