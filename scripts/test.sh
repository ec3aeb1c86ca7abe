#!/usr/bin/env bash
# The one test command (README: `npm test`). Runs every layer even when an earlier one
# fails, then prints one summary line and exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=()
run() {
  local name=$1; shift
  printf '\n== %s: %s\n' "$name" "$*"
  if "$@"; then echo "-- $name: ok"; else echo "-- $name: FAILED"; failed+=("$name"); fi
}

run typecheck npx tsc -p . --noEmit
run build node scripts/build.mjs
run unit npm run --silent test:unit
run python .venv/bin/python -m pytest -q models/toolchain/tests
run e2e npm run --silent test:e2e

echo
if [ ${#failed[@]} -eq 0 ]; then
  echo "all test layers passed (typecheck, build, unit, python, e2e)"
  exit 0
fi
echo "failed layers: ${failed[*]}"
exit 1
