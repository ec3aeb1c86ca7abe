// Activation only: build the context, register the commands, start. Everything with a
// lifetime lives in Ctx and is disposed with it.
import * as vscode from 'vscode';
import { registerCommands } from './commands';
import { Ctx } from './ctx';

let ctx: Ctx | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  ctx = new Ctx(context);
  context.subscriptions.push(ctx, ...registerCommands(ctx));
  try {
    await ctx.activate();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    ctx.log(`activation failed: ${message}`);
    void ctx.showFailure(`could not start: ${message}`);
  }
}

export function deactivate(): Promise<void> | undefined {
  const c = ctx;
  ctx = undefined;
  return c?.backend.stop();
}
