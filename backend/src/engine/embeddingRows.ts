// The token embedding table of a model whose graph takes rows instead of ids (models/FORMAT.md,
// "Embedding rows in a file"). Inside the graph the table is memory-mapped, and each prompt token
// faults in the 64 KB around its row: after a few long prompts most of the default model's 136 MB
// table is resident for good. Read here a row per token (1 KB, through the page cache) it adds
// nothing to the process' RSS (docs/SPEED.md, "Embedding rows read from a file").
//
// The file is safetensors (an 8-byte little-endian header length, a JSON header, then the data):
// q8 uint8 [vocab, d_model] with zero point 128, scales float32 [vocab, d_model / 32]. A row is
// (q8 - 128) * scale, which a Float32Array stores as the same float32 the graph's Mul gave.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Tensor } from 'onnxruntime-node';
import type { Manifest } from './modelFolder';

const BLOCK = 32;
/** A header past this is no safetensors file of ours (the real one is ~200 bytes). */
const MAX_HEADER_BYTES = 1 << 20;

interface TensorEntry { dtype: string; shape: number[]; data_offsets: [number, number] }

export class EmbeddingRows {
  private constructor(
    private fd: number | undefined,
    readonly vocab: number,
    readonly dModel: number,
    private readonly q8Start: number,
    private readonly scalesStart: number,
  ) {}

  /** The reader of the model folder `dir`'s table where its manifest sets graph.embeddings, else undefined. */
  static forModel(dir: string, manifest: Manifest): EmbeddingRows | undefined {
    const table = manifest.graph.embeddings;
    return table ? EmbeddingRows.open(path.join(dir, table.file), manifest) : undefined;
  }

  /** Opens and checks `file` against the manifest's vocabulary and width; throws a message naming what is wrong. */
  static open(file: string, manifest: Manifest): EmbeddingRows {
    const vocab = manifest.architecture.vocab_size;
    const d = manifest.architecture.d_model;
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const bad = (why: string) => new Error(`${file} is not a usable embeddings file: ${why}. Re-export the model.`);
      const lenBuf = Buffer.alloc(8);
      if (size < 8 || fs.readSync(fd, lenBuf, 0, 8, 0) !== 8) throw bad('too short');
      const headerBytes = Number(lenBuf.readBigUInt64LE(0));
      if (headerBytes <= 0 || headerBytes > MAX_HEADER_BYTES || 8 + headerBytes > size) throw bad(`header length ${headerBytes}`);
      const head = Buffer.alloc(headerBytes);
      fs.readSync(fd, head, 0, headerBytes, 8);
      let header: Record<string, TensorEntry>;
      try {
        header = JSON.parse(head.toString('utf8'));
      } catch {
        throw bad('its header is not JSON');
      }
      const dataStart = 8 + headerBytes;
      const tensor = (name: string, dtype: string, shape: number[], bytesPer: number): number => {
        const t = header[name];
        if (!t || t.dtype !== dtype || JSON.stringify(t.shape) !== JSON.stringify(shape)) {
          throw bad(`tensor "${name}" should be ${dtype} [${shape.join(', ')}] for this manifest, is ${t ? `${t.dtype} [${t.shape.join(', ')}]` : 'missing'}`);
        }
        const [b, e] = t.data_offsets;
        if (e - b !== shape.reduce((x, y) => x * y, bytesPer) || dataStart + e > size) throw bad(`tensor "${name}" does not fit the file`);
        return dataStart + b;
      };
      if (d % BLOCK !== 0) throw bad(`d_model ${d} is not a multiple of ${BLOCK}`);
      const q8Start = tensor('q8', 'U8', [vocab, d], 1);
      const scalesStart = tensor('scales', 'F32', [vocab, d / BLOCK], 4);
      return new EmbeddingRows(fd, vocab, d, q8Start, scalesStart);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  /** The rows of `ids`, row-major [ids.length, d_model]. */
  rows(ids: readonly number[]): Float32Array {
    if (this.fd === undefined) throw new Error('embedding rows read after the model was closed');
    const d = this.dModel;
    const nb = d / BLOCK;
    const out = new Float32Array(ids.length * d);
    const q = new Uint8Array(d);
    const scales = new Float32Array(nb);   // its own buffer: aligned, host order (little-endian, as the file)
    const scaleBytes = new Uint8Array(scales.buffer);
    for (let t = 0; t < ids.length; t++) {
      const id = ids[t];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocab) throw new Error(`token id ${id} is outside the vocabulary of ${this.vocab}`);
      fs.readSync(this.fd, q, 0, d, this.q8Start + id * d);
      fs.readSync(this.fd, scaleBytes, 0, nb * 4, this.scalesStart + id * nb * 4);
      for (let b = 0, at = t * d; b < nb; b++) {
        const s = scales[b];
        for (let j = b * BLOCK; j < (b + 1) * BLOCK; j++) out[at + j] = (q[j] - 128) * s;
      }
    }
    return out;
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** The graph's token input for `ids`: their embedding rows [1, T, d_model] where the model reads them here, else the ids [1, T]. */
export function tokenInput(ids: readonly number[], rows?: EmbeddingRows): Tensor {
  return rows
    ? new Tensor('float32', rows.rows(ids), [1, ids.length, rows.dModel])
    : new Tensor('int64', BigInt64Array.from(ids, (x) => BigInt(x)), [1, ids.length]);
}
