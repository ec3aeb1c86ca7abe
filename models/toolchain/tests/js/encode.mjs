// Encode/decode texts with @huggingface/tokenizers (the library the TypeScript backend uses).
// Usage: node encode.mjs TOKENIZER_DIR < texts.json  (a JSON array of strings)
// Prints a JSON array of {ids, decoded}.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";

const dir = process.argv[2];
const tokenizer = new Tokenizer(
  JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")),
  JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8")),
);
const texts = JSON.parse(readFileSync(0, "utf8"));
const out = texts.map((t) => {
  const ids = tokenizer.encode(t, { add_special_tokens: false }).ids;
  // decode([]) throws in 0.2.0 ("token_ids must be a non-empty array"): callers must guard.
  return { ids, decoded: ids.length ? tokenizer.decode(ids) : "" };
});
process.stdout.write(JSON.stringify(out));
