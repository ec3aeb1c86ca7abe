// The backend process: started through vscode-languageclient over stdio, watched, and
// restarted with backoff when it dies. After too many crashes in a window it stays down
// and says why, quoting its last log lines.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import * as vscode from 'vscode';
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  RevealOutputChannelOn,
  State,
  type LanguageClientOptions,
  type ServerOptions,
} from 'vscode-languageclient/node';
import {
  CompletionTelemetryNotification,
  StatusNotification,
  type BackendInitOptions,
  type CompleteResult,
  type StatusParams,
} from '../../common/protocol';
import { CrashTracker } from './backoff';
import { LogTail, mostTellingLine } from './logTail';

/** What the extension knows about its backend, for the status bar and the commands. */
export type BackendPhase = 'stopped' | 'starting' | 'running' | 'restarting' | 'failed';

export interface BackendStatus {
  phase: BackendPhase;
  /** The backend's own last status notification (model, provider, state). */
  server: StatusParams | null;
  /** Why the backend is restarting or failed, in one sentence. */
  message: string | null;
}

export interface BackendDeps {
  serverModule: string;
  channel: vscode.OutputChannel;
  initOptions: () => BackendInitOptions;
  maxCrashes: () => number;
}

const CRASH_WINDOW_MS = 3 * 60_000;

/**
 * The client library shows its own "couldn't create connection" pop-up when a start fails;
 * supervision here says the same with the reason and next steps, so that one is logged only.
 */
class QuietLanguageClient extends LanguageClient {
  override error(message: string, data?: unknown, showNotification?: boolean | 'force'): void {
    super.error(message, data, showNotification === 'force' ? false : showNotification);
  }
}

export class Backend implements vscode.Disposable {
  private client: LanguageClient | undefined;
  private child: ChildProcess | undefined;
  private generation = 0;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private crashes: CrashTracker;
  private current: BackendStatus = { phase: 'stopped', server: null, message: null };
  private readonly statusEmitter = new vscode.EventEmitter<BackendStatus>();
  private readonly telemetryEmitter = new vscode.EventEmitter<CompleteResult>();
  private readonly failedEmitter = new vscode.EventEmitter<string>();
  /** The backend's own stderr (not the client library's lines), to quote when it dies. */
  private readonly stderr = new LogTail(200);

  /** Fires on every phase change and every status notification. */
  readonly onStatus = this.statusEmitter.event;
  /** Fires with each finished completion's telemetry. */
  readonly onTelemetry = this.telemetryEmitter.event;
  /** Fires once when supervision gives up (or the backend cannot start at all), with the reason. */
  readonly onFailed = this.failedEmitter.event;

  constructor(private readonly deps: BackendDeps) {
    this.crashes = this.newTracker();
  }

  get status(): BackendStatus {
    return this.current;
  }

  /** The client when it is running and ready for requests; undefined otherwise. */
  get ready(): LanguageClient | undefined {
    return this.client?.state === State.Running ? this.client : undefined;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    clearTimeout(this.restartTimer);
    if (this.client) return;
    const { serverModule, channel } = this.deps;
    if (!existsSync(serverModule)) {
      this.fail(`The backend file ${serverModule} is missing. Rebuild with "npm run build" or reinstall the extension.`);
      return;
    }
    const generation = ++this.generation;
    this.update({ phase: 'starting', message: null, server: null });
    const serverOptions: ServerOptions = async () => {
      // fork() runs the server on the extension host's own Node; in Electron-based VS Code
      // ELECTRON_RUN_AS_NODE makes the Electron binary behave as plain Node.
      const child = fork(serverModule, ['--stdio'], {
        cwd: dirname(serverModule),
        execArgv: [],
        env: { ...process.env, ELECTRON_RUN_AS_NODE: '1' },
        silent: true,
      });
      this.child = child;
      child.stderr?.on('data', (data: Buffer | string) => this.stderr.append(data.toString()));
      child.once('exit', (code, signal) => this.onExit(generation, code, signal));
      child.once('error', (err) => this.onExit(generation, null, null, err));
      channel.appendLine(`[extension] backend started: ${serverModule} (pid ${child.pid ?? '?'})`);
      return child;
    };
    const clientOptions: LanguageClientOptions = {
      // The extension sends prefix and suffix itself; no documents are synchronised.
      documentSelector: [],
      outputChannel: channel,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      initializationOptions: this.deps.initOptions(),
      initializationFailedHandler: (error) => {
        channel.appendLine(`[extension] backend initialization failed: ${String(error)}`);
        return false;
      },
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue, handled: true }),
        // Restarts are ours (with backoff), not the client library's.
        closed: () => ({ action: CloseAction.DoNotRestart, handled: true }),
      },
    };
    const client = new QuietLanguageClient('versatileffn', 'VersatileFFN backend', serverOptions, clientOptions);
    this.client = client;
    client.onNotification(StatusNotification, (params) => {
      if (generation === this.generation) this.update({ server: params });
    });
    client.onNotification(CompletionTelemetryNotification, (result) => {
      if (generation === this.generation) this.telemetryEmitter.fire(result);
    });
    try {
      await client.start();
      if (generation !== this.generation) return;
      this.update({ phase: 'running', message: null });
    } catch (err) {
      if (generation !== this.generation) return;
      channel.appendLine(`[extension] backend did not start: ${errorText(err)}`);
      // The exit handler counts the crash; a client that failed without its process
      // exiting (a bad handshake) is stopped here so that it does.
      if (this.child && this.child.exitCode === null) this.child.kill();
      else if (!this.child) this.onExit(generation, null, null, err);
    }
  }

  async stop(): Promise<void> {
    clearTimeout(this.restartTimer);
    this.stopping = true;
    this.generation++;
    const client = this.client;
    const child = this.child;
    this.client = undefined;
    this.child = undefined;
    try {
      if (client && client.state !== State.Stopped) await client.stop(2000);
    } catch (err) {
      this.deps.channel.appendLine(`[extension] backend stop: ${errorText(err)}`);
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) child.kill();
      this.stopping = false;
      this.update({ phase: 'stopped', server: null, message: null });
    }
  }

  /** A manual restart: forget earlier crashes and start fresh. */
  async restart(): Promise<void> {
    this.crashes = this.newTracker();
    await this.stop();
    await this.start();
  }

  /** Status learned by asking (e.g. that no model exists), shown as if the backend had said it. */
  noteServerStatus(server: StatusParams): void {
    this.update({ server });
  }

  dispose(): void {
    void this.stop();
    this.statusEmitter.dispose();
    this.telemetryEmitter.dispose();
    this.failedEmitter.dispose();
  }

  private onExit(generation: number, code: number | null, signal: NodeJS.Signals | null, err?: unknown): void {
    if (generation !== this.generation || this.stopping) return;
    this.generation++;
    const how = err ? `could not be started (${errorText(err)})` : signal ? `was killed by ${signal}` : `exited with code ${code}`;
    this.deps.channel.appendLine(`[extension] backend ${how}`);
    const client = this.client;
    this.client = undefined;
    this.child = undefined;
    if (client && client.state !== State.Stopped) void client.stop(500).catch(() => undefined);
    const decision = this.crashes.record(Date.now());
    const last = this.lastLine();
    if (decision.action === 'giveUp') {
      const minutes = Math.round(decision.windowMs / 60_000);
      this.fail(`The backend ${how} ${decision.crashesInWindow} times in ${minutes} minutes and was not restarted.${last ? ` Last log line: ${last}` : ''}${hint(last)}`);
      return;
    }
    const seconds = (decision.delayMs / 1000).toFixed(1);
    this.update({ phase: 'restarting', server: null, message: `The backend ${how}; restarting in ${seconds} s.${last ? ` Last log line: ${last}` : ''}` });
    this.restartTimer = setTimeout(() => void this.start(), decision.delayMs);
  }

  private fail(message: string): void {
    this.deps.channel.appendLine(`[extension] ${message}`);
    this.update({ phase: 'failed', server: null, message });
    this.failedEmitter.fire(message);
  }

  private lastLine(): string | null {
    return mostTellingLine(this.stderr.last(40));
  }

  private update(change: Partial<BackendStatus>): void {
    this.current = { ...this.current, ...change };
    this.statusEmitter.fire(this.current);
  }

  private newTracker(): CrashTracker {
    return new CrashTracker({ baseMs: 500, maxMs: 30_000, maxCrashes: this.deps.maxCrashes(), windowMs: CRASH_WINDOW_MS });
  }
}

/** A next step for failures whose cause the log line makes plain. */
function hint(line: string | null): string {
  if (line && /onnxruntime_binding|onnxruntime/i.test(line)) {
    return ` The onnxruntime-node native library for ${process.platform}-${process.arch} is missing or cannot load: install the VersatileFFN package built for this platform.`;
  }
  return '';
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
