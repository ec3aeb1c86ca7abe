"""Special tokens: the names a model folder gives them (manifest tokenizer.special_tokens and
special_ids, models/FORMAT.md) and this project's own tokenizer's texts and ids. The one
definition in Python: export.py, data.py and corpus/ import it. (The upcycled default model
takes its source's texts and ids: upcycle/build.py.)"""

# The names every manifest carries (models/manifest.schema.json requires them), in the order of
# this project's ids: corpus/train_tokenizer.py adds the tokens first, so they get ids 0..5.
NAMES = ("eot", "pad", "fim_prefix", "fim_suffix", "fim_middle", "file_sep")
TOKENS = {"eot": "<|endoftext|>", "pad": "<|pad|>", "fim_prefix": "<|fim_prefix|>",
          "fim_suffix": "<|fim_suffix|>", "fim_middle": "<|fim_middle|>", "file_sep": "<|file_sep|>"}
IDS = {name: i for i, name in enumerate(NAMES)}
TOKEN_LIST = [TOKENS[n] for n in NAMES]   # in id order
EOT, PAD, FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, FILE_SEP = (IDS[n] for n in NAMES)
