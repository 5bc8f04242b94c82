#!/usr/bin/env bash
# Install everything the test suite needs into ./.venv, then lint and run the tests.
# Used verbatim by CI (.ci/run) and by developers on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
# torch is pinned to the CPU build first so no dependency can pull a multi-GB CUDA build.
.venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[onnx,test]'

.venv/bin/ruff check .
set +e
.venv/bin/python -m pytest test -q -p no:cacheprovider "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$status"
