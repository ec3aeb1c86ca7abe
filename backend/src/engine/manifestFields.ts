// What the backend does with every field models/manifest.schema.json declares. Each field is
// either honoured (the backend reads it and acts on it: `used`), carried by the graph itself
// (`graph`: baked into model.onnx when it was exported; the backend relies on the graph, not
// on the number), or only shown or recorded (`info`). Values the backend cannot honour are
// refused when the folder is read (REFUSALS), with a message naming the field. A unit test
// fails when the schema declares a field missing here (or this table names one the schema
// lacks), and the schema refuses fields it does not declare, so no manifest field goes
// unhandled.
import * as schemaJson from '../../../models/manifest.schema.json';
import { SchemaChecker, type Schema } from './jsonSchema';
import type { Manifest } from './modelFolder';

export type FieldUse = { use: 'used' | 'graph' | 'info'; note: string };

const used = (note: string): FieldUse => ({ use: 'used', note });
const graph = (note = 'baked into model.onnx at export'): FieldUse => ({ use: 'graph', note });
const info = (note: string): FieldUse => ({ use: 'info', note });

/** Dotted paths; `*` stands for any key of an open object (files.*, graph.variants.*). */
export const MANIFEST_FIELDS: Record<string, FieldUse> = {
  format: used('modelFolder.ts: refused unless "versatileffn-onnx"'),
  format_version: used('modelFolder.ts: refused unless this backend reads it'),
  name: used('the model id (list, switch, telemetry)'),
  display_name: used('model list'),
  description: info('model card'),

  architecture: used('the model\'s shape'),
  'architecture.kind': used('compute accounting (telemetry.ts), default model order, the UI'),
  'architecture.n_layer': used('graphRunner.ts: per-layer KV cache names; session.ts: routing per layer'),
  'architecture.n_head': used('KV heads when n_kv_head is absent'),
  'architecture.n_kv_head': used('KV cache shape (kvHeads); refused unless it divides n_head'),
  'architecture.d_model': used('model list'),
  'architecture.d_ff': graph(),
  'architecture.vocab_size': used('tokenizer.ts: ids beyond it are refused; timing prompts'),
  'architecture.max_loops': used('telemetry.ts: loop shares and cost vs always max_loops; session.ts: route_loop_probs width'),
  'architecture.n_experts': used('telemetry.ts: the width path costs top_k/n_experts of the output projection'),
  'architecture.top_k': used('telemetry.ts width path cost; refused unless the graph\'s expert outputs are pairs (REFUSALS)'),
  'architecture.fixed_loops': graph('the loop baseline\'s route_loops carry it'),
  'architecture.context_length': used('prompt budget (prompt.ts, promptBudget.ts), analysis length'),
  'architecture.rope_theta': graph(),
  'architecture.norm_eps': graph(),
  'architecture.parameters': used('model list'),
  'architecture.qkv_bias': graph(),
  'architecture.tie_embeddings': graph(),
  'architecture.gate_thresholds': graph('the masks in model.onnx; route_ffn_share reports their effect'),
  'architecture.down_thresholds': graph('the masks in model.onnx; route_ffn_share reports their effect'),

  graph: used('the graph contract'),
  'graph.file': used('sessionWorker.ts: the graph to load (unless a variant names another)'),
  'graph.inputs': used('graphRunner.ts: input names'),
  'graph.inputs.input_ids': used('graphRunner.ts'),
  'graph.inputs.inputs_embeds': used('graphRunner.ts: rows of graph.embeddings instead of token ids'),
  'graph.inputs.num_logits': used('graphRunner.ts'),
  'graph.inputs.past_key': used('graphRunner.ts ({i} = layer)'),
  'graph.inputs.past_value': used('graphRunner.ts ({i} = layer)'),
  'graph.inputs.past_length': used('graphRunner.ts: the valid length of a shared KV cache'),
  'graph.outputs': used('graphRunner.ts: output names'),
  'graph.outputs.logits': used('graphRunner.ts'),
  'graph.outputs.present_key': used('graphRunner.ts'),
  'graph.outputs.present_value': used('graphRunner.ts'),
  'graph.outputs.loops': used('graphRunner.ts: route_loops'),
  'graph.outputs.lambda': used('graphRunner.ts: route_lambda'),
  'graph.outputs.experts': used('graphRunner.ts: route_experts'),
  'graph.outputs.weights': used('graphRunner.ts: route_weights'),
  'graph.outputs.loop_probs': used('graphRunner.ts: route_loop_probs'),
  'graph.outputs.ffn_share': used('graphRunner.ts: route_ffn_share'),
  'graph.head_dim': used('KV cache shape'),
  'graph.weights_dtype': info('the graph carries its own types; shown by the benchmarks'),
  'graph.variant': info('which variant graph.file is (graph.variants says which provider loads which file)'),
  'graph.attention': used('session.ts: WebGPU runs GroupQueryAttention graphs in chunks'),
  'graph.kv': used('graphRunner.ts / kvStore.ts: a shared cache is one buffer per layer, written in place'),
  'graph.variants': used('modelFolder.ts graphFileFor: the graph file per provider'),
  'graph.variants.*': used('graphFileFor'),
  'graph.variants.*.file': used('graphFileFor; refused unless listed in files'),
  'graph.variants.*.providers': used('graphFileFor'),
  'graph.external_data': used('refused unless listed in files (so they are checked); onnxruntime reads them beside the graph'),
  'graph.embeddings': used('embeddingRows.ts: the embedding table read a row per token; refused unless listed in files'),
  'graph.embeddings.file': used('embeddingRows.ts'),
  'graph.embeddings.layout': used('embeddingRows.ts: checked against the file\'s tensors'),
  'graph.head': info('a trimmed head: logits keep the vocabulary\'s shape, left-out tokens get -1e9, which probAndEntropy skips'),
  'graph.head.tokens': info('model card'),
  'graph.head.rule': info('model card'),

  tokenizer: used('tokenizer.ts'),
  'tokenizer.file': used('tokenizer.ts; refused unless listed in files'),
  'tokenizer.config_file': used('tokenizer.ts; refused unless listed in files'),
  'tokenizer.special_tokens': used('tokenizer.ts: each must map to its special id'),
  'tokenizer.special_tokens.eot': used('tokenizer.ts check'),
  'tokenizer.special_tokens.pad': used('tokenizer.ts check'),
  'tokenizer.special_tokens.fim_prefix': used('tokenizer.ts check'),
  'tokenizer.special_tokens.fim_suffix': used('tokenizer.ts check'),
  'tokenizer.special_tokens.fim_middle': used('tokenizer.ts check'),
  'tokenizer.special_tokens.file_sep': used('tokenizer.ts check'),
  'tokenizer.special_ids': used('prompt, stops and banned tokens; refused unless below vocab_size'),
  'tokenizer.special_ids.eot': used('default stop id'),
  'tokenizer.special_ids.pad': used('completion.ts: never generated (banned)'),
  'tokenizer.special_ids.fim_prefix': used('prompt.ts'),
  'tokenizer.special_ids.fim_suffix': used('prompt.ts'),
  'tokenizer.special_ids.fim_middle': used('prompt.ts'),
  'tokenizer.special_ids.file_sep': used('prompt.ts: context chunks; default stop id'),

  fim: used('prompt.ts'),
  'fim.order': used('prompt.ts builds PSM or SPM prompts'),

  generation: used('completion.ts: defaults for what a request leaves out'),
  'generation.max_new_tokens': used('completion.ts: default maxTokens'),
  'generation.temperature': used('completion.ts: default temperature'),
  'generation.top_p': used('completion.ts: default topP'),
  'generation.stop_ids': used('completion.ts: stop tokens; refused unless below vocab_size'),

  files: used('modelFolder.ts verifyFiles: size, then sha256, before loading'),
  'files.*': used('verifyFiles'),
  'files.*.sha256': used('verifyFiles'),
  'files.*.bytes': used('verifyFiles'),

  training: info('model card'),
  metrics: used('model list (numbers shown)'),
  exported: info('model card'),

  test_vectors: used('default model order: test models come last; tests replay them'),
  'test_vectors.prompt_ids': info('tests'),
  'test_vectors.greedy_ids': info('tests'),
  'test_vectors.greedy_min_margin': info('tests'),
  'test_vectors.note': info('tests'),
  'test_vectors.routing_loops': info('tests'),
  'test_vectors.routing_experts': info('tests'),
};

/**
 * Values the schema allows but this backend cannot honour, and relations between fields that a
 * schema cannot express. Each returns why the manifest is refused, or null.
 */
export const REFUSALS: { field: string; check: (m: Manifest) => string | null }[] = [
  {
    field: 'architecture.n_kv_head',
    check: (m) => {
      const a = m.architecture;
      return a.n_kv_head !== undefined && a.n_head % a.n_kv_head !== 0 ? `architecture.n_kv_head ${a.n_kv_head} does not divide n_head ${a.n_head}` : null;
    },
  },
  {
    field: 'architecture.top_k',
    check: (m) => {
      const a = m.architecture;
      // route_experts / route_weights are [n_layer, T, top_k] for the paper's kinds and [.., 2] for
      // "upcycled" (top_k 0); the protocol carries two experts per token and layer.
      return a.kind !== 'upcycled' && a.top_k !== 2
        ? `architecture.top_k is ${a.top_k}: this backend reads two experts per token (route_experts [n_layer, T, 2]); re-export with top_k 2`
        : null;
    },
  },
  {
    field: 'tokenizer.special_ids',
    check: (m) => {
      const bad = Object.entries(m.tokenizer.special_ids).filter(([, id]) => id >= m.architecture.vocab_size);
      return bad.length ? `tokenizer.special_ids ${bad.map(([k, id]) => `${k} ${id}`).join(', ')} are outside the vocabulary of ${m.architecture.vocab_size}` : null;
    },
  },
  {
    field: 'generation.stop_ids',
    check: (m) => {
      const bad = (m.generation?.stop_ids ?? []).filter((id) => id >= m.architecture.vocab_size);
      return bad.length ? `generation.stop_ids ${bad.join(', ')} are outside the vocabulary of ${m.architecture.vocab_size}` : null;
    },
  },
  {
    field: 'files',
    check: (m) => {
      const needed = [
        ['graph.file', m.graph.file],
        ...Object.entries(m.graph.variants ?? {}).map(([k, v]) => [`graph.variants.${k}.file`, v.file]),
        ...(m.graph.external_data ?? []).map((f, i) => [`graph.external_data[${i}]`, f]),
        ...(m.graph.embeddings ? [['graph.embeddings.file', m.graph.embeddings.file]] : []),
        ['tokenizer.file', m.tokenizer.file],
        ...(m.tokenizer.config_file ? [['tokenizer.config_file', m.tokenizer.config_file]] : []),
      ];
      const missing = needed.filter(([, f]) => !m.files[f]);
      return missing.length ? `does not list ${missing.map(([k, f]) => `${f} (${k})`).join(', ')} under "files", so it could not be checked` : null;
    },
  },
];

// esbuild and tsx give a JSON module's namespace with a default export; TypeScript sees its fields.
const rawSchema = schemaJson as unknown as { default?: unknown };
export const MANIFEST_SCHEMA = (rawSchema.default ?? rawSchema) as Schema & Record<string, unknown>;
export const manifestSchema = new SchemaChecker(MANIFEST_SCHEMA);

/** The format versions this build reads: the schema's format_version. */
export const SCHEMA_FORMAT_VERSION = ((MANIFEST_SCHEMA.properties as Record<string, { const: number }>).format_version).const;

/** Every field path the schema declares (for the field table's test), `*` for the keys of an open object. */
export function declaredFields(checker: SchemaChecker = manifestSchema, schema: Schema = MANIFEST_SCHEMA, prefix = ''): string[] {
  if (typeof schema === 'boolean') return [];
  const s = typeof schema.$ref === 'string' ? { ...(checker.resolve(schema.$ref) as object), ...schema } as Record<string, unknown> : schema;
  const out: string[] = [];
  const at = (k: string) => (prefix ? `${prefix}.${k}` : k);
  for (const [k, sub] of Object.entries((s.properties ?? {}) as Record<string, Schema>)) out.push(at(k), ...declaredFields(checker, sub, at(k)));
  if (typeof s.additionalProperties === 'object') out.push(at('*'), ...declaredFields(checker, s.additionalProperties as Schema, at('*')));
  for (const sub of [...((s.allOf ?? []) as Schema[]), s.then as Schema, s.else as Schema]) {
    if (sub !== undefined) out.push(...declaredFields(checker, sub, prefix));
  }
  return [...new Set(out)];
}
