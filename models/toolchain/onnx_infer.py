"""
Runs an exported model folder (or a bare model.onnx) with onnxruntime in Python, the same
way the backend does: prefill, then one token at a time with the KV cache fed back.
Used by the parity test, make_test_models.py and bench_export.py.
"""
import json
import os

import numpy as np
import onnxruntime as ort

from embedding_file import EMBEDDINGS_FILE, EmbeddingRows


class OrtLM:
    """capacity: cache positions for graphs with kv "shared" (default: the folder's context_length,
    else 2048); their present outputs are bound to the past buffers, as the backend does."""

    def __init__(self, path: str, threads: int = 0, capacity: int = None):
        onnx_path = os.path.join(path, "model.onnx") if os.path.isdir(path) else path
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        # Spinning worker threads cost far more than they save on a shared 2-core machine.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        past = [i for i in self.sess.get_inputs() if i.name.startswith("past_key_")]
        self.n_layer = len(past)
        self.n_head, self.head_dim = past[0].shape[1], past[0].shape[3]
        self.shared = any(i.name == "past_length" for i in self.sess.get_inputs())
        # A graph that takes embedding rows: the table is the file beside it (FORMAT.md).
        self.embeddings = None
        if any(i.name == "inputs_embeds" for i in self.sess.get_inputs()):
            self.embeddings = EmbeddingRows(os.path.join(os.path.dirname(onnx_path), EMBEDDINGS_FILE))
        if self.shared and capacity is None:
            capacity = read_manifest(path)["architecture"]["context_length"] if os.path.isdir(path) else 2048
        self.capacity = capacity
        self.reset()

    def reset(self):
        self._length = 0
        if self.shared:
            self.past = {f"past_{k}_{i}": ort.OrtValue.ortvalue_from_numpy(
                np.zeros((1, self.n_head, self.capacity, self.head_dim), np.float32))
                for i in range(self.n_layer) for k in ("key", "value")}
            return
        empty = np.zeros((1, self.n_head, 0, self.head_dim), np.float32)
        self.past = {f"past_{k}_{i}": empty for i in range(self.n_layer) for k in ("key", "value")}

    @property
    def length(self) -> int:
        return self._length

    def step(self, ids, num_logits: int = 1) -> dict:
        """Feeds new token ids, keeps the cache, returns every output by FORMAT.md name
        (a shared cache's presents are its whole buffers)."""
        ids = np.asarray(ids, np.int64).reshape(1, -1)
        first = ("inputs_embeds", self.embeddings.rows(ids)) if self.embeddings else ("input_ids", ids)
        names = [o.name for o in self.sess.get_outputs()]
        if self.shared:
            if self._length + ids.shape[1] > self.capacity:
                raise ValueError(f"KV cache full: {self._length} + {ids.shape[1]} > {self.capacity} positions")
            b = self.sess.io_binding()
            b.bind_cpu_input(*first)
            b.bind_cpu_input("num_logits", np.array([num_logits], np.int64))
            b.bind_cpu_input("past_length", np.array([self._length], np.int64))
            for name, value in self.past.items():
                b.bind_ortvalue_input(name, value)
            for name in names:
                if name.startswith("present_"):
                    b.bind_ortvalue_output(name, self.past[name.replace("present", "past")])
                else:
                    b.bind_output(name)
            self.sess.run_with_iobinding(b)
            out = dict(zip(names, (v.numpy() for v in b.get_outputs())))
        else:
            out = dict(zip(names, self.sess.run(names, {first[0]: first[1], "num_logits": np.array([num_logits], np.int64),
                                                         **self.past})))
            for i in range(self.n_layer):
                for k in ("key", "value"):
                    self.past[f"past_{k}_{i}"] = out[f"present_{k}_{i}"]
        self._length += ids.shape[1]
        return out

    def greedy(self, prompt_ids, n_new: int):
        """Greedy decode; returns (new ids, per-step outputs)."""
        self.reset()
        outs = [self.step(prompt_ids, num_logits=len(prompt_ids))]
        ids = []
        for _ in range(n_new):
            ids.append(int(outs[-1]["logits"][0, -1].argmax()))
            outs.append(self.step([ids[-1]]))
        return ids, outs


def read_manifest(folder: str) -> dict:
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)
