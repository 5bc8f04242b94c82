"""Which optional package provides which module, and what to install for it — in one place.

The robot side needs numpy, safetensors and onnxruntime only (plus HailoRT for the NPU); torch is
needed to read a LeRobot checkpoint, export, and run ``cpu_fp32`` / ``torch_dynamic_int8``. Every
place that can meet a missing module turns it into a :class:`MissingDependencyError` through
:func:`missing_dependency`, so the user reads what to install instead of a traceback.

Pip requirement strings are read from the installed package's metadata (setup.cfg's extras), so
they are never restated here; a colcon install has no such metadata and reads setup.cfg itself, which
CMakeLists.txt installs into ``share/act_policy``.
"""

from __future__ import annotations

import configparser
import importlib
import importlib.metadata
import importlib.util
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from act_policy.core.errors import MissingDependencyError

DISTRIBUTION = "act_policy"
# not resolved: files of a `colcon build --symlink-install` link into the source tree, the prefix is where they lie
PACKAGE_DIR = Path(__file__).parents[1]
SETUP_CFG = "setup.cfg"  # the one declaration of the extras' requirements (CMakeLists.txt installs it too)

# importable top-level module → (setup.cfg extra, pip distribution)
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("torch", "torch"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("robot", "onnxruntime"),
    "onnxslim": ("onnx", "onnxslim"),
    "openvino": ("openvino", "openvino"),
    "pyarrow": ("replay", "pyarrow"),
    "av": ("replay", "av"),
    "matplotlib": ("replay", "matplotlib"),
    "rosbags": ("replay", "rosbags"),
    "yaml": ("replay", "pyyaml"),
}

# Plain `pip install torch` is wrong on both of our platforms: it pulls a multi-GB CUDA build
# (x86_64 by default; aarch64 for every torch >= 2.11 on PyPI). PyTorch's CPU index has CPU-only wheels.
TORCH_HINT = ("install a CPU-only torch: `pip install torch==2.13.0 --index-url "
              "https://download.pytorch.org/whl/cpu` (x86_64 and aarch64; never a plain `pip install torch` on a "
              "Raspberry Pi: PyPI's aarch64 torch >= 2.11 are CUDA builds), or run a deploy bundle with backend "
              "onnx_fp32, cpu_int8 or hailo, which need no torch (docs/install.md)")
SYSTEM_HINTS = {
    "hailo_platform": "HailoRT's Python API is not on PyPI: `sudo apt install hailo-all` on Raspberry Pi OS, or "
                      "Hailo's .deb packages and the hailort wheel for this Python on Ubuntu 24.04, and a venv "
                      "created with `python3 -m venv --system-site-packages` (docs/hailo.md)",
    "rclpy": "rclpy comes with ROS 2 Jazzy: `source /opt/ros/jazzy/setup.bash`, and a venv created with "
             "`python3 -m venv --system-site-packages` (docs/ros.md)",
}
OPTIONAL_MODULES = {*EXTRAS, *SYSTEM_HINTS}


def _extra_requirements(extra: str) -> list[str]:
    """Requirement strings of ``act_policy[extra]``: from the installed metadata, else from setup.cfg (a colcon
    install has no such metadata: its egg-info is rosidl's), else []."""
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        requires = []
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    return [r.split(";")[0].strip() for r in requires if marker.search(r)] or _setup_cfg_requirements(extra)


def installed_setup_cfg() -> Path | None:
    """The setup.cfg that came with this act_policy package (:data:`PACKAGE_DIR`), or None.

    Looked for where CMakeLists.txt installs it, ``<prefix>/share/act_policy`` of a colcon install (the package
    is ``<prefix>/lib/pythonX.Y/site-packages/act_policy``), then beside the package (a source tree), then in
    the share folder the ament index names (needs ament_index_python; no ROS import otherwise).
    """
    candidates = [PACKAGE_DIR.parent / SETUP_CFG]
    if len(PACKAGE_DIR.parents) > 3:
        candidates.insert(0, PACKAGE_DIR.parents[3] / "share" / DISTRIBUTION / SETUP_CFG)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        candidate = Path(get_package_share_directory(DISTRIBUTION)) / SETUP_CFG
    except PackageNotFoundError:
        return None
    return candidate if candidate.is_file() else None


def _setup_cfg_requirements(extra: str) -> list[str]:
    path = installed_setup_cfg()
    if path is None:
        return []
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    lines = parser.get("options.extras_require", extra, fallback="")
    return [line.strip() for line in lines.splitlines() if line.strip()]


def install_hint(module: str) -> str:
    """What to install so that ``import module`` works, as one sentence for an error message."""
    top = module.split(".")[0]
    if top == "torch":
        return TORCH_HINT
    if top in SYSTEM_HINTS:
        return SYSTEM_HINTS[top]
    if top not in EXTRAS:
        return f"pip install {top}"
    extra, distribution = EXTRAS[top]
    clone = f"`pip install -e '.[{extra}]'` in a clone"
    requirements = _extra_requirements(extra)
    if not requirements:  # neither metadata nor setup.cfg: e.g. the package's files copied somewhere alone
        return (f"pip install {distribution} (in the version range of act_policy's `{extra}` extra in its source's "
                f"setup.cfg, which this install does not carry; or {clone})")
    quoted = " ".join(f"'{r}'" if set(r) & set("<>=!~") else r for r in requirements)
    return f"pip install {quoted} (act_policy's `{extra}` extra: {clone})"


def missing_dependency(exc: ImportError, purpose: str) -> MissingDependencyError:
    """The user-facing error for ``exc`` raised while doing ``purpose`` (e.g. "backend 'cpu_fp32'")."""
    if isinstance(exc, MissingDependencyError):
        return exc
    module = getattr(exc, "name", None) or "an optional package"
    if isinstance(exc, ModuleNotFoundError):
        return _not_installed(purpose, [module])
    # installed but broken, e.g. a CUDA torch without its CUDA libraries on a Pi
    error = MissingDependencyError(f"{purpose} cannot import {module!r} ({exc}); replace that install: "
                                   f"{install_hint(module)}")
    error.name = module
    return error


def _not_installed(purpose: str, modules: list[str]) -> MissingDependencyError:
    hints: dict[str, None] = {}
    covered: set[str] = set()  # pip distributions an earlier hint's extra installs (onnx's has onnxruntime)
    for module in modules:
        extra, distribution = EXTRAS.get(module.split(".")[0], ("", ""))
        if distribution not in covered:
            hints[install_hint(module)] = None
        if extra:
            covered.update(re.match(r"[\w.-]+", r)[0] for r in _extra_requirements(extra))
    names = ", ".join(repr(m) for m in modules)
    what = f"module {names}, which is" if len(modules) == 1 else f"modules {names}, which are"
    error = MissingDependencyError(f"{purpose} needs the Python {what} not installed: {'; and '.join(hints)}")
    error.name = modules[0]
    return error


def require_all(modules: Iterable[str], purpose: str) -> None:
    """Before any work of ``purpose`` starts: a :class:`MissingDependencyError` naming every one of the
    (top-level) ``modules`` that is not installed, with what to install; nothing is imported."""
    missing = [m for m in modules if not available(m)]
    if missing:
        raise _not_installed(purpose, missing)


@contextmanager
def needs(purpose: str) -> Iterator[None]:
    """Turn an optional module found missing inside the block into :func:`missing_dependency`.

    Only absent optional modules are translated: a module that exists but fails to import (a broken
    install, a CUDA torch without its libraries) or a missing module of our own keeps its own error.
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in OPTIONAL_MODULES:
            raise
        raise missing_dependency(exc, purpose) from exc


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def installed_version(distribution: str) -> str | None:
    """The installed version of pip distribution ``distribution`` (from its metadata, so nothing is
    imported), or None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def require(module: str, purpose: str) -> ModuleType:
    """``importlib.import_module(module)``, or a :class:`MissingDependencyError` naming ``purpose``."""
    with needs(purpose):
        return importlib.import_module(module)
