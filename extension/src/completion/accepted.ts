// The arguments of the `vffn.accepted` command, which every inline item carries: the provider
// builds them, the command checks them before anything uses them.

export interface AcceptedArgs {
  requestId: string;
  model: string;
  uri: string;
  /** Where the accepted text starts and the text itself, for the difficulty tint. */
  line: number;
  character: number;
  text: string;
}

export function isAcceptedArgs(v: unknown): v is AcceptedArgs {
  if (typeof v !== 'object' || v === null) return false;
  const a = v as Record<string, unknown>;
  return typeof a.requestId === 'string' && typeof a.model === 'string' && typeof a.uri === 'string'
    && typeof a.line === 'number' && typeof a.character === 'number' && typeof a.text === 'string';
}
