"""
Training data: memory-mapped flat uint16 token files, random packed windows, and the
fill-in-the-middle (FIM) transformation of Bavarian et al. 2022, all vectorized with
numpy so that building a batch never loops over samples in Python.

A batch is a pure function of (seed, stream, rank, step, micro): resuming at step N
sees exactly the batches a straight run would, and DDP ranks see different ones.

FIM works on the documents inside each sampled window (segments between <|endoftext|>
tokens; the first and last are cut by the window edges), as Megatron/StarCoder do:
  PSM: <|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|> middle [<|endoftext|>]
  SPM: <|fim_prefix|> <|fim_suffix|> suffix <|fim_middle|> prefix middle [<|endoftext|>]
Each FIM'd document grows by 3 tokens, so the transformed window is cropped back to its
length.
"""
import json
import os
import queue
import sys
import threading

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from special_tokens import EOT, FILE_SEP, FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX, PAD  # noqa: E402,F401  (ids 0..5)

TRAIN_STREAM, VAL_STREAM = 0, 1
_SLOTS = 7  # pieces per document: 3 sentinels, 3 content ranges, the trailing EOT


def open_tokens(path: str, vocab_size: int | None = None) -> np.ndarray:
    """Memory-map a flat uint16 token file, checking it is usable."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"token file {path} does not exist: build the corpus and tokenize it first "
            f"(see models/README.md), or point --data_dir at a folder holding train.bin and val.bin")
    size = os.path.getsize(path)
    if size % 2:
        raise ValueError(f"token file {path} has an odd size ({size} bytes): it is not a uint16 array "
                         f"(truncated while writing?); re-run the tokenization step")
    if size < 4:
        raise ValueError(f"token file {path} is empty; re-run the tokenization step")
    tokens = np.memmap(path, dtype=np.uint16, mode="r")
    if vocab_size is not None:
        top = int(tokens.max())
        if top >= vocab_size:
            raise ValueError(f"token file {path} holds id {top} but the model's vocab_size is {vocab_size}: "
                             f"it was tokenized with another tokenizer, or vocab_size is wrong")
    return tokens


def read_meta(data_dir: str) -> dict:
    """meta.json beside the token files (vocab_size and provenance); {} if absent."""
    path = os.path.join(data_dir, "meta.json")
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); re-run the tokenization step") from e


def batch_rng(seed: int, stream: int, rank: int, step: int, micro: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, rank, step, micro]))


def sample_windows(tokens: np.ndarray, rng: np.random.Generator, batch_size: int, length: int) -> np.ndarray:
    """[batch_size, length] int64 windows at uniformly random offsets (packed documents)."""
    n = len(tokens)
    if n < length:
        raise ValueError(f"token file has {n} tokens, fewer than one window of {length}; "
                         f"use more data or a smaller context_length")
    offsets = rng.integers(0, n - length + 1, size=batch_size)
    return tokens[offsets[:, None] + np.arange(length)].astype(np.int64)


def fim_transform(windows: np.ndarray, rng: np.random.Generator, fim_rate: float, spm_rate: float) -> np.ndarray:
    """Apply FIM to about fim_rate of the documents in each row (SPM for spm_rate of
    those), then crop each row back to its length. Vectorized over all documents."""
    B, W = windows.shape
    flat = windows.reshape(-1)

    # Documents: a new one starts at each row start and after each EOT.
    is_start = np.zeros(B * W, dtype=bool)
    is_start[::W] = True
    after_eot = np.flatnonzero(flat == EOT) + 1
    is_start[after_eot[after_eot % W != 0]] = True
    starts = np.flatnonzero(is_start)
    ends = np.append(starts[1:], B * W)
    has_eot = (flat[ends - 1] == EOT).astype(np.int64)
    content = ends - starts - has_eot

    S = len(starts)
    fim = (rng.random(S) < fim_rate) & (content >= 2)
    spm = rng.random(S) < spm_rate
    a = rng.integers(0, content + 1)
    b = rng.integers(0, content + 1)
    i, j = np.minimum(a, b), np.maximum(a, b)   # prefix = [0,i), middle = [i,j), suffix = [j,content)

    # Seven pieces per document: (source start, length, sentinel value or -1).
    src = np.zeros((S, _SLOTS), dtype=np.int64)
    length = np.zeros((S, _SLOTS), dtype=np.int64)
    value = np.full((S, _SLOTS), -1, dtype=np.int64)
    s = starts
    psm, spm_ = fim & ~spm, fim & spm

    # Plain documents: the whole segment as one piece.
    src[~fim, 0], length[~fim, 0] = s[~fim], (ends - starts)[~fim]
    # PSM: PRE prefix SUF suffix MID middle EOT
    _set(value, length, psm, 0, FIM_PREFIX)
    src[psm, 1], length[psm, 1] = s[psm], i[psm]
    _set(value, length, psm, 2, FIM_SUFFIX)
    src[psm, 3], length[psm, 3] = (s + j)[psm], (content - j)[psm]
    _set(value, length, psm, 4, FIM_MIDDLE)
    src[psm, 5], length[psm, 5] = (s + i)[psm], (j - i)[psm]
    # SPM: PRE SUF suffix MID prefix+middle EOT
    _set(value, length, spm_, 0, FIM_PREFIX)
    _set(value, length, spm_, 1, FIM_SUFFIX)
    src[spm_, 2], length[spm_, 2] = (s + j)[spm_], (content - j)[spm_]
    _set(value, length, spm_, 3, FIM_MIDDLE)
    src[spm_, 4], length[spm_, 4] = s[spm_], j[spm_]
    # The document's own trailing EOT (absent when the window cut it).
    src[fim, 6], length[fim, 6] = (s + content)[fim], has_eot[fim]

    # Expand pieces to tokens: piece p contributes length[p] consecutive outputs.
    L = length.reshape(-1)
    total = int(L.sum())
    piece_start = np.cumsum(L) - L
    offset = np.arange(total) - np.repeat(piece_start, L)
    is_sentinel = np.repeat(value.reshape(-1) >= 0, L)
    source = np.repeat(src.reshape(-1), L) + offset
    out = np.where(is_sentinel, np.repeat(value.reshape(-1), L), flat[np.where(is_sentinel, 0, source)])

    # Crop each row back to W tokens (rows only grow: +3 per FIM'd document).
    row = starts // W
    row_len = np.bincount(row, weights=length.sum(1), minlength=B).astype(np.int64)
    row_start = np.cumsum(row_len) - row_len
    pos_in_row = np.arange(total) - np.repeat(row_start, row_len)
    return out[pos_in_row < W].reshape(B, W)


def _set(value, length, mask, slot, token):
    value[mask, slot] = token
    length[mask, slot] = 1


def get_batch(tokens: np.ndarray, *, seed: int, stream: int, rank: int, step: int, micro: int,
              batch_size: int, context_length: int, fim_rate: float, spm_rate: float):
    """(x, y) int64 arrays of shape [batch_size, context_length]; y is x shifted by one."""
    rng = batch_rng(seed, stream, rank, step, micro)
    windows = sample_windows(tokens, rng, batch_size, context_length + 1)
    if fim_rate > 0:
        windows = fim_transform(windows, rng, fim_rate, spm_rate)
    return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])


class Prefetcher:
    """Builds the batches of steps start_step, start_step+1, ... (grad_accum each) in a
    background thread, in order, so the next batch is ready when the device asks for it
    (numpy releases the GIL in its array work). make(step, micro) -> (x, y)."""

    def __init__(self, make, start_step: int, grad_accum: int, depth: int):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(make, start_step, grad_accum), daemon=True)
        self._thread.start()

    def _run(self, make, step, grad_accum):
        try:
            while not self._stop.is_set():
                for micro in range(grad_accum):
                    item = (step, micro, make(step, micro))
                    while not self._stop.is_set():
                        try:
                            self._queue.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            pass
                step += 1
        except BaseException as e:  # surfaced by get()
            self._queue.put((None, None, e))

    def get(self, step: int, micro: int):
        got_step, got_micro, item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        assert (got_step, got_micro) == (step, micro), "prefetcher out of step with the training loop"
        return item

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
