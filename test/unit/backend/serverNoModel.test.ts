// The server asked for a model that exists nowhere: it starts, says why, answers with errors, exits cleanly.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { test } from 'node:test';
import {
  createProtocolConnection, ExitNotification, InitializedNotification, InitializeRequest, ShutdownRequest,
  StreamMessageReader, StreamMessageWriter,
} from 'vscode-languageserver-protocol/node';
import { CompleteRequest, ListModelsRequest, StatusNotification, StatusParams } from '../../../common/protocol';
import { REPO, tempDir } from './helpers';

test('a missing default model: error results naming it, the process stays up and exits cleanly', async () => {
  // The repository's models/ folder is always searched too, so this names a model that exists nowhere.
  const empty = tempDir();
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO, 'backend/src/server.ts'), '--stdio'], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] });
  const conn = createProtocolConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
  const statuses: StatusParams[] = [];
  conn.onNotification(StatusNotification, (s) => statuses.push(s));
  conn.onNotification('window/logMessage', () => undefined);
  conn.listen();
  await conn.sendRequest(InitializeRequest.type, {
    processId: process.pid, rootUri: null, capabilities: {},
    initializationOptions: { modelDirs: [empty], defaultModel: 'no-such-model', provider: 'cpu', threads: 1 },
  });
  await conn.sendNotification(InitializedNotification.type, {});
  const list = await conn.sendRequest(ListModelsRequest, undefined);
  assert.ok(Array.isArray(list.models));
  const t0 = Date.now();
  while (!statuses.some((s) => s.state === 'ready' || s.state === 'error') && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 50));
  // The backend falls back to another model folder if there is one; a request naming the missing one fails.
  const r = await conn.sendRequest(CompleteRequest, { requestId: 'x', languageId: 'py', prefix: 'a = ', suffix: '', model: 'no-such-model' });
  assert.equal(r.stopReason, 'error');
  assert.match(r.error!, /no-such-model/);
  assert.equal(child.exitCode, null);
  const exited = new Promise((res) => child.once('exit', res));
  await conn.sendRequest(ShutdownRequest.type);
  await conn.sendNotification(ExitNotification.type);
  assert.equal(await exited, 0);
  conn.dispose();
});
