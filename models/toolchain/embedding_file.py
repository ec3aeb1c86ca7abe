"""
The token embedding table outside the graph (models/FORMAT.md, "Embedding rows in a file").

Inside a graph the int8 table is memory-mapped from model.onnx.data: every token a prompt
holds faults in the 64 KB around its row, so after a few long prompts most of the 136 MB
table of a 151,936-token vocabulary sits in the process' RSS for good. Read from a file a
row at a time it costs one 1 KB read per token and no resident memory (docs/SPEED.md,
"Embedding rows read from a file"). The graph then takes `inputs_embeds` [1, T, d_model]
instead of `input_ids`.

The file is safetensors with two tensors: `q8` uint8 [vocab, d_model] (int8 blocks of
QBLOCK columns stored with zero point 128, as the graph's Gather stored them) and `scales`
float32 [vocab, d_model / QBLOCK]. A row is (q8 - 128) * scale in float32, the same
arithmetic the in-graph Gather did, so the logits are the same bits either way.
"""
import os

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from onnx_builder import QBLOCK, quantize_int8_blocks

EMBEDDINGS_FILE = "embeddings.safetensors"
EMBEDDINGS_LAYOUT = "int8-block32"   # graph.embeddings.layout in the manifest: the layout above


def write_embeddings(path: str, table: np.ndarray) -> None:
    """Quantizes the fp32 table [vocab, d] to the file's layout and writes it."""
    vocab, d = table.shape
    if d % QBLOCK:
        raise ValueError(f"d_model {d} is not a multiple of the block size {QBLOCK}")
    q, scales = quantize_int8_blocks(np.asarray(table, np.float32))
    save_file({"q8": np.ascontiguousarray(q.reshape(vocab, d)), "scales": scales}, path,
              metadata={"format": "versatileffn-embeddings", "layout": EMBEDDINGS_LAYOUT})
    os.chmod(path, 0o644)   # save_file creates it 0600; the folder's other files are readable by all


class EmbeddingRows:
    """The table of a model folder's embeddings file, for the Python tools (the backend reads
    rows from the file instead: backend/src/engine/embeddingRows.ts)."""

    def __init__(self, path: str):
        with safe_open(path, framework="np") as f:
            self.q8 = f.get_tensor("q8")
            self.scales = f.get_tensor("scales")
        if self.q8.dtype != np.uint8 or self.scales.dtype != np.float32 or \
                self.scales.shape != (self.q8.shape[0], self.q8.shape[1] // QBLOCK):
            raise ValueError(f"{path}: not an embeddings file of this format (q8 {self.q8.dtype} {self.q8.shape}, "
                             f"scales {self.scales.dtype} {self.scales.shape})")
        self.vocab, self.d_model = self.q8.shape

    def rows(self, ids) -> np.ndarray:
        """float32 [1, T, d_model] for token ids [T] or [1, T]."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        blocks = self.q8[ids].reshape(len(ids), -1, QBLOCK).astype(np.float32) - np.float32(128.0)
        return (blocks * self.scales[ids][..., None]).reshape(1, len(ids), self.d_model)
