#!/usr/bin/env bash
# Install everything the test suite needs into ./.venv, then lint and run the tests.
# Used verbatim by CI (.ci/run) and by developers on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's ROS 2 interface tooling for test/test_ros_package.py (rosidl parses msg/*.msg, catkin_pkg
# validates package.xml); it lives in the system Python, which that test runs as /usr/bin/python3.
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-rosidl python3-empy python3-catkin-pkg >/dev/null
fi

python3 -m venv .venv
# torch is pinned to the CPU build first so no dependency can pull a multi-GB CUDA build.
.venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[onnx,replay,test]'

.venv/bin/ruff check .
log=$(mktemp)
set +e
.venv/bin/python -m pytest test -q -p no:cacheprovider -rfEs "$@" | tee "$log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
# Everything above installs every optional dependency, so a skipped test means an install broke.
if [ "$status" -eq 0 ] && grep -q "^SKIPPED" "$log"; then
  echo "some tests were skipped although every dependency should be installed: failing" >&2
  exit 1
fi
exit "$status"
