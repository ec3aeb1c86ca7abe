// Starting a worker thread from a bundle (dist/*.js side by side) or from sources under tsx.
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { Worker, WorkerOptions } from 'node:worker_threads';

/** `<name>.js` beside the running bundle, else `<name>.ts` beside the running source file (tsx). */
export function scriptBeside(dir: string, name: string): string {
  const js = path.join(dir, `${name}.js`);
  return existsSync(js) ? js : path.join(dir, `${name}.ts`);
}

export function startWorker(file: string, options: WorkerOptions): Worker {
  if (!file.endsWith('.ts')) return new Worker(file, options);
  // Under tsx (tests, `node --import tsx`) a worker does not get tsx's loader: register its CommonJS hook first.
  const boot = `require(require.resolve('tsx/cjs', { paths: [${JSON.stringify(path.dirname(file))}] })); require(${JSON.stringify(file)});`;
  return new Worker(boot, { ...options, eval: true });
}
