"""
Runs an exported model folder (or a bare model.onnx) with onnxruntime in Python, the same
way the backend does: prefill, then one token at a time with the KV cache fed back.
Used by the parity test, make_test_models.py and bench_export.py.
"""
import json
import os

import numpy as np
import onnxruntime as ort


class OrtLM:
    def __init__(self, path: str, threads: int = 0):
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
        self.reset()

    def reset(self):
        empty = np.zeros((1, self.n_head, 0, self.head_dim), np.float32)
        self.past = {f"past_{k}_{i}": empty for i in range(self.n_layer) for k in ("key", "value")}

    @property
    def length(self) -> int:
        return self.past["past_key_0"].shape[2]

    def step(self, ids, num_logits: int = 1) -> dict:
        """Feeds new token ids, keeps the cache, returns every output by FORMAT.md name."""
        feeds = {"input_ids": np.asarray(ids, np.int64).reshape(1, -1),
                 "num_logits": np.array([num_logits], np.int64), **self.past}
        names = [o.name for o in self.sess.get_outputs()]
        out = dict(zip(names, self.sess.run(names, feeds)))
        for i in range(self.n_layer):
            for k in ("key", "value"):
                self.past[f"past_{k}_{i}"] = out[f"present_{k}_{i}"]
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
