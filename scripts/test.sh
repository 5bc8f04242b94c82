#!/usr/bin/env bash
# Install everything the test suite needs, then lint and run both tiers of tests:
#   1. the ROS-free suite (test/, minus test/real_ros) in ./.venv;
#   2. the real-ROS tier (test/real_ros): ROS 2 Jazzy, this package built with colcon (build/ros/),
#      the installed node driven through real rclpy + Fast DDS, ros2 launch and the ros2 CLI.
# Used verbatim by CI (.ci/run) and by developers on a fresh machine. Fails if either tier fails, if
# pytest collects nothing, or if any test is skipped (everything it needs is installed here).
#
# ROS 2 Jazzy comes from, in this order: a sourced Jazzy (ROS_DISTRO=jazzy with rclpy importable),
# /opt/ros/jazzy (a Pi 5 with ROS from apt), else the shared rig built from PyPI wheels
# ($ACT_POLICY_ROS_RIG, default ../shared/ros_rig beside this clone; it honours ROS_RIG_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
TORCH_REQUIREMENT="${ACT_POLICY_TORCH:-torch==2.13.0}"  # never unpinned: an unpinned torch pulls a CUDA build

python3 -m venv .venv
# torch is pinned to the CPU build first so no dependency can pull a multi-GB CUDA build.
.venv/bin/pip install --quiet --disable-pip-version-check "$TORCH_REQUIREMENT"
.venv/bin/pip install --quiet --disable-pip-version-check -e '.[onnx,openvino,replay,test]'

.venv/bin/ruff check .

# pytest_tier NAME PYTHON ARGS...: run pytest, failing on "no tests" (exit 5) and on any skipped test.
pytest_tier() {
  local name="$1" python="$2" log status
  shift 2
  log=$(mktemp)
  set +e
  "$python" -m pytest -q -p no:cacheprovider -rfEs "$@" | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -eq 5 ]; then
    echo "$name: pytest collected no tests: failing on purpose" >&2
    return 1
  fi
  if [ "$status" -eq 0 ] && grep -q "^SKIPPED" "$log"; then
    echo "$name: some tests were skipped although everything they need should be installed: failing" >&2
    return 1
  fi
  return "$status"
}

ros_free=0
pytest_tier "ROS-free tests" .venv/bin/python test --ignore=test/real_ros "$@" || ros_free=$?

# ------------------------------------------------------------------ real ROS 2 Jazzy
set +u  # ROS setup scripts read unset variables
if [ "${ROS_DISTRO:-}" != jazzy ] && [ -f /opt/ros/jazzy/setup.bash ]; then
  . /opt/ros/jazzy/setup.bash
fi
if [ "${ROS_DISTRO:-}" = jazzy ] && python3 -c "import rclpy" 2>/dev/null; then
  echo "ROS 2: the system's Jazzy ($(command -v python3))"
  # the node's Python dependencies in a venv that sees the system's rclpy (COLCON_IGNORE: not a package)
  python3 -m venv --system-site-packages build/ros/venv && touch build/ros/venv/COLCON_IGNORE
  ROS_PYTHON="$REPO/build/ros/venv/bin/python"
else
  RIG="${ACT_POLICY_ROS_RIG:-$REPO/../shared/ros_rig}"
  [ -f "$RIG/setup.sh" ] || { echo "no ROS 2 Jazzy: neither sourced, nor /opt/ros/jazzy, nor $RIG/setup.sh" \
                                   "(set ACT_POLICY_ROS_RIG to the shared ros_rig folder)" >&2; exit 1; }
  bash "$RIG/setup.sh"
  . "${ROS_RIG_DIR:-/tmp/ros2ws}/env.sh"
  ROS_PYTHON="$ROS_RIG_DIR/venv/bin/python"
fi
set -u
# What the node imports at run time (setup.cfg's install_requires and onnx extra) and what the tests
# import; torch first and pinned (above). act_policy itself is NOT installed here: it comes from colcon.
mapfile -t RUNTIME_REQUIREMENTS < <(python3 - <<'PY'
import configparser
cfg = configparser.ConfigParser()
cfg.read("setup.cfg")
extras = cfg["options.extras_require"]
wanted = cfg["options"]["install_requires"].split() + extras["onnx"].split()
wanted += [r for r in extras["test"].split() if r.startswith(("pytest", "pyyaml", "py-spy"))]
print("\n".join(r for r in wanted if not r.startswith("torch")))
PY
)
"$ROS_PYTHON" -m pip install --quiet --disable-pip-version-check "$TORCH_REQUIREMENT"
"$ROS_PYTHON" -m pip install --quiet --disable-pip-version-check "${RUNTIME_REQUIREMENTS[@]}"

colcon --log-base build/ros/log build --paths "$REPO" --build-base build/ros/build --install-base build/ros/install \
  --event-handlers console_cohesion- summary+ --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$(command -v python3)"
set +u
. build/ros/install/setup.bash
set -u
if [ -d build/ros/venv ]; then export PATH="$REPO/build/ros/venv/bin:$PATH"; fi  # the node's `python3`

real_ros=0
# PYTHONSAFEPATH: the repository folder must not shadow the colcon-installed act_policy (with act_policy.msg)
PYTHONSAFEPATH=1 pytest_tier "real-ROS tests" "$ROS_PYTHON" test/real_ros --junitxml=build/ros/real_ros.xml || real_ros=$?
# the tier must have run: count the tests that executed (a collection problem must not pass as "nothing to do")
ran=$("$ROS_PYTHON" -c "
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suite = root if root.tag == 'testsuite' else root.find('testsuite')
print(int(suite.get('tests')) - int(suite.get('skipped')))" build/ros/real_ros.xml 2>/dev/null || echo 0)
echo "real-ROS tests executed: $ran"
if [ "$ran" -eq 0 ]; then
  echo "the real-ROS tier did not run: failing" >&2
  real_ros=1
fi

if [ "$ros_free" -ne 0 ] || [ "$real_ros" -ne 0 ]; then
  echo "FAILED: ROS-free tests exit $ros_free, real-ROS tests exit $real_ros" >&2
  exit 1
fi
