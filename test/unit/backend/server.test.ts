// Protocol tests: spawn the real server process and speak JSON-RPC to it over stdio.
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { truncateSync } from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import {
  CancellationTokenSource, createProtocolConnection, ExitNotification, InitializedNotification, InitializeRequest,
  ProtocolConnection, ShutdownRequest, StreamMessageReader, StreamMessageWriter,
} from 'vscode-languageserver-protocol/node';
import {
  BackendInitOptions, CompleteParams, CompletePartial, CompletePartialProgress, CompleteRequest, CompleteResult,
  CompletionTelemetryNotification, ListModelsRequest,
  ProviderStatusRequest, SetProviderRequest, StatsRequest, StatusNotification, StatusParams, SwitchModelRequest,
} from '../../../common/protocol';
import { copyModel, MODELS, REPO, TINY } from './helpers';

let child: ChildProcess;
let conn: ProtocolConnection;
let stderr = '';
const statuses: StatusParams[] = [];
const telemetry: CompleteResult[] = [];
const broken = copyModel(TINY, 'broken-copy');

const req = (over: Partial<CompleteParams> = {}): CompleteParams => ({
  requestId: 'r', languageId: 'python', prefix: 'def add(a, b):\n    return a', suffix: '\n', maxTokens: 8, ...over,
});

before(async () => {
  truncateSync(path.join(broken.dir, 'model.onnx'), 4096);
  child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'backend/src/server.ts'), '--stdio'], {
    cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, VFFN_MODEL_DIRS: '' },
  });
  child.stderr!.on('data', (d) => { stderr += d; });
  conn = createProtocolConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  conn.onNotification(StatusNotification, (s) => statuses.push(s));
  conn.onNotification(CompletionTelemetryNotification, (r) => telemetry.push(r));
  conn.onNotification('window/logMessage', () => undefined);
  conn.listen();
  const init: BackendInitOptions = { modelDirs: [MODELS, broken.modelsDir], defaultModel: 'tiny-test', provider: 'auto', threads: 1 };
  const r = await conn.sendRequest(InitializeRequest.type, { processId: process.pid, rootUri: null, capabilities: {}, initializationOptions: init });
  assert.equal(r.serverInfo?.name, 'vffn-backend');
  await conn.sendNotification(InitializedNotification.type, {});
  const t0 = Date.now();
  while (!statuses.some((s) => s.state === 'ready' && s.model === 'tiny-test')) {
    if (Date.now() - t0 > 20_000) throw new Error(`backend did not become ready; stderr: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(async () => {
  const exited = new Promise((r) => child.once('exit', r));
  try {
    await conn.sendRequest(ShutdownRequest.type);
    await conn.sendNotification(ExitNotification.type);
  } catch {
    // The exit test below may have ended it already.
  }
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
  conn.dispose();
  broken.cleanup();
});

test('complete returns a result and a telemetry notification', async () => {
  const r = await conn.sendRequest(CompleteRequest, req({ requestId: 'one' }));
  assert.equal(r.requestId, 'one');
  assert.equal(r.model, 'tiny-test');
  assert.equal(r.provider, 'cpu');
  assert.ok(r.tokens.length > 0 && r.timings.totalMs > 0);
  await new Promise((res) => setTimeout(res, 50));
  assert.ok(telemetry.some((t) => t.requestId === 'one'));
});

test('$/cancelRequest ends a running request with an empty, cancelled result', async () => {
  const src = new CancellationTokenSource();
  const p = conn.sendRequest(CompleteRequest, req({ requestId: 'long', maxTokens: 400, prefix: 'x = 1\n'.repeat(2000) + 'y = ' }), src.token);
  setTimeout(() => src.cancel(), 5);
  const r = await p;
  assert.equal(r.stopReason, 'cancelled');
  assert.equal(r.completion, '');
});

// A multi-line place (nothing after the cursor) where the tiny model writes a line break within 48 tokens.
const MULTI_LINE_PREFIX = "` positions before the\n   * guess), and leaves the logits of the last kept position for the next pick. `routingAt`: the run\n"
  + "   * position of the guess's first token.\n   */\n"
  + '  private keepGuessed(r: StepResult, guess: readonly number[], routingAt: number, cachedBeforeGuess: number): GeneratedToken[] {\n';

test('with a partialResultToken, a multi-line completion\'s first line comes as $/progress before the result', async () => {
  const parts: { value: CompletePartial; at: number }[] = [];
  const progress = conn.onProgress(CompletePartialProgress, 'first-line', (value) => parts.push({ value, at: Date.now() }));
  const r = await conn.sendRequest(CompleteRequest, req({
    requestId: 'multi', prefix: MULTI_LINE_PREFIX, suffix: '', languageId: 'typescript', maxTokens: 48, partialResultToken: 'first-line',
  }));
  const resultAt = Date.now();
  progress.dispose();
  assert.ok(r.completion.includes('\n'), `the pinned prompt gives a multi-line completion: ${JSON.stringify(r.completion)}`);
  assert.equal(parts.length, 1, 'one partial per request');
  const [{ value, at }] = parts;
  assert.equal(value.requestId, 'multi');
  assert.equal(value.model, 'tiny-test');
  assert.equal(value.completion, r.completion.slice(0, r.completion.indexOf('\n')), 'the partial is the whole completion\'s first line');
  assert.ok(at <= resultAt && value.elapsedMs <= r.timings.totalMs);
  assert.equal(r.timings.firstLineMs, value.elapsedMs, 'the result\'s timings say when the first line went out');
  // Without a token, or at a single-line place (code after the cursor), no partial is sent.
  const quiet = conn.onProgress(CompletePartialProgress, 'single', () => assert.fail('no partial at a single-line place'));
  await conn.sendRequest(CompleteRequest, req({
    requestId: 'single', prefix: MULTI_LINE_PREFIX, suffix: 'return kept;\n', languageId: 'typescript', maxTokens: 48, partialResultToken: 'single',
  }));
  await new Promise((res) => setTimeout(res, 50));
  quiet.dispose();
});

test('a request that fails (10 MB binary document, bad params) gets an error result and the server stays up', async () => {
  const bin = await conn.sendRequest(CompleteRequest, req({ requestId: 'bin', prefix: '\0'.repeat(10 * 1024 * 1024 + 10) }));
  assert.equal(bin.stopReason, 'error');
  assert.match(bin.error!, /too large|binary/);
  const bad = await conn.sendRequest(CompleteRequest, null as unknown as CompleteParams);
  assert.equal(bad.stopReason, 'error');
  const ok = await conn.sendRequest(CompleteRequest, req({ requestId: 'after' }));
  assert.equal(ok.error, undefined);
  assert.equal(child.exitCode, null);
});

test('switching to a corrupt model fails with the file named; the old model keeps serving', async () => {
  const list = await conn.sendRequest(ListModelsRequest, undefined);
  assert.ok(list.models.some((m) => m.name === 'broken-copy'));
  const r = await conn.sendRequest(SwitchModelRequest, { name: 'broken-copy' });
  assert.equal(r.ok, false);
  assert.equal(r.active, 'tiny-test');
  assert.match(r.error!, /broken-copy.*model\.onnx is truncated/);
  const c = await conn.sendRequest(CompleteRequest, req({ requestId: 'still' }));
  assert.equal(c.model, 'tiny-test');
  assert.equal(c.error, undefined);
});

test('provider status, set provider, stats', async () => {
  const p = await conn.sendRequest(ProviderStatusRequest, undefined);
  assert.equal(p.active, 'cpu');
  assert.ok(p.available.includes('cpu'));
  assert.ok(p.reason.length > 0);
  const bad = await conn.sendRequest(SetProviderRequest, { provider: 'tpu' as 'cpu' });
  assert.match(bad.reason, /unknown provider/);
  const cpu = await conn.sendRequest(SetProviderRequest, { provider: 'cpu' });
  assert.equal(cpu.active, 'cpu');
  assert.equal(cpu.requested, 'cpu');
  const s = await conn.sendRequest(StatsRequest, undefined);
  assert.ok(s.perModel['tiny-test'].requests >= 4);
  assert.ok(s.rssBytes > 0);
});
