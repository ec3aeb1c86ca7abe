// One full garbage collection on demand, for the moment it pays: right after a model load. Reading
// the tokenizer (a 5 MB JSON parsed into objects, then tables only its construction reads) and
// checking the files leave ~90 MB of garbage in the isolate that loaded them; V8 collects it only
// when the heap next fills, so until then it is resident, and the first long prompts build their
// peak on top of it (0.5B model, one 848-token completion after load: heap used 128 -> 39 MB, RSS
// after load 744 -> 618-690 MB, peak 833 -> 737-768 MB; docs/SPEED.md, "Garbage left by the load; prefill in chunks of 64").
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

let gc: (() => void) | null | undefined;

/** Runs a full GC in this isolate; false when V8 would not expose one (then nothing happens). */
export function collectGarbage(): boolean {
  if (gc === undefined) gc = findGc();
  if (!gc) return false;
  gc();
  return true;
}

function findGc(): (() => void) | null {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return exposed;
  try {
    // --expose-gc set at run time takes effect in contexts created after it: a fresh one hands gc over.
    v8.setFlagsFromString('--expose-gc');
    const fn = vm.runInNewContext('gc') as unknown;
    return typeof fn === 'function' ? (fn as () => void) : null;
  } catch {
    return null;
  }
}
