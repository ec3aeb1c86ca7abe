"""
Adds measured sections to an exported model's card (README.md) and re-hashes it in the
manifest, so the folder still passes the backend's checks.

  # the ten fixed example prompts, completed by the model through the real backend CLI
  python models/toolchain/card_sections.py examples models/NAME
  # any markdown file (e.g. evaluate.py's table) under a heading
  python models/toolchain/card_sections.py append models/NAME "Evaluation" report.md

Sections are delimited by HTML comments, so running again replaces a section rather than
adding a copy. Files are written to a temporary name and renamed.
"""
import json
import subprocess
import sys
from pathlib import Path

from atomic import atomic_write_text
from fileinfo import file_entry

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "models" / "toolchain" / "examples" / "card_examples.jsonl"


def set_section(model_dir: Path, title: str, body: str):
    card = model_dir / "README.md"
    text = card.read_text(encoding="utf-8")
    start, end = f"<!-- section: {title} -->", f"<!-- end: {title} -->"
    block = f"{start}\n## {title}\n\n{body.strip()}\n{end}\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + block + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    atomic_write_text(card, text)
    rehash(model_dir, "README.md")


def rehash(model_dir: Path, name: str):
    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"][name] = file_entry(str(model_dir / name))
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2) + "\n")


def fence(text: str) -> str:
    return "```\n" + text.replace("```", "`\u200b``") + "\n```"


def examples_section(model_dir: Path) -> str:
    cli = REPO / "dist" / "cli.js"
    if not cli.exists():
        sys.exit(f"{cli} is missing: build first with `node scripts/build.mjs`")
    requests = EXAMPLES.read_text(encoding="utf-8")
    run = subprocess.run(["node", str(cli), "complete", "--jsonl", "--model", str(model_dir)],
                         input=requests, capture_output=True, text=True, timeout=300)
    if run.returncode != 0:
        sys.exit(f"the backend CLI failed on {model_dir}:\n{run.stderr[-2000:]}")
    results = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    lines = ["Ten prompts fixed before any trained model's output was seen "
             "(models/toolchain/examples/card_examples.jsonl), completed greedily by this model "
             "through the backend CLI (`node dist/cli.js complete --jsonl`). `█` marks the cursor."]
    for i, (req, res) in enumerate(zip(map(json.loads, requests.splitlines()), results), 1):
        shown = req["prefix"][-300:] + "█" + req["suffix"][:120]
        lines += [f"\n**{i}. {req['language']}**: prompt", fence(shown),
                  f"completion (stop: {res.get('stopReason')}, {res['timings']['generatedTokens']} tokens, "
                  f"{res['timings']['totalMs']:.0f} ms):", fence(res.get("completion") or "(empty)")]
    return "\n".join(lines)


def main(argv):
    if len(argv) >= 2 and argv[0] == "examples":
        model_dir = Path(argv[1])
        set_section(model_dir, "Examples", examples_section(model_dir))
    elif len(argv) == 4 and argv[0] == "append":
        model_dir, title, body_file = Path(argv[1]), argv[2], Path(argv[3])
        set_section(model_dir, title, body_file.read_text(encoding="utf-8"))
    else:
        sys.exit(__doc__)
    print(f"updated {model_dir / 'README.md'} and its sha256 in the manifest")


if __name__ == "__main__":
    main(sys.argv[1:])
