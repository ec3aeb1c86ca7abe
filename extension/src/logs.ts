// The "VersatileFFN" output channel. The backend's stderr goes through it (the language
// client appends to it); the extension's own lines get a time stamp.
import * as vscode from 'vscode';

export function createLogChannel(): vscode.OutputChannel {
  const channel = vscode.window.createOutputChannel('VersatileFFN');
  const stamp = (): string => new Date().toISOString().slice(11, 23);
  return {
    name: channel.name,
    append(value: string) {
      channel.append(value);
    },
    appendLine(value: string) {
      channel.appendLine(`${stamp()} ${value}`);
    },
    replace(value: string) {
      channel.replace(value);
    },
    clear() {
      channel.clear();
    },
    show(columnOrPreserve?: vscode.ViewColumn | boolean, preserveFocus?: boolean) {
      if (typeof columnOrPreserve === 'boolean') channel.show(columnOrPreserve);
      else channel.show(columnOrPreserve, preserveFocus);
    },
    hide() {
      channel.hide();
    },
    dispose() {
      channel.dispose();
    },
  };
}
