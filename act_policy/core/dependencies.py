"""Which optional package provides which module, and what to install for it — in one place.

The robot side needs numpy, safetensors and onnxruntime only (plus HailoRT for the NPU); torch is
needed to read a LeRobot checkpoint, export, and run ``cpu_fp32`` / ``torch_dynamic_int8``. Every
place that can meet a missing module turns it into a :class:`MissingDependencyError` through
:func:`missing_dependency`, so the user reads what to install instead of a traceback.

Pip requirement strings are read from the installed package's metadata (setup.cfg's extras), so
they are never restated here; a colcon install has no metadata and gets the bare package names.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from act_policy.core.errors import MissingDependencyError

DISTRIBUTION = "act_policy"

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
    """Requirement strings of ``act_policy[extra]`` from the installed metadata ([] without metadata)."""
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    return [r.split(";")[0].strip() for r in requires if marker.search(r)]


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
    if not requirements:  # e.g. a colcon install: its egg-info (rosidl's) lists no requirements
        return (f"pip install {distribution} (in the version range of act_policy's `{extra}` extra in its source's "
                f"setup.cfg: this install's metadata carries no version ranges; or {clone})")
    quoted = " ".join(f"'{r}'" if set(r) & set("<>=!~") else r for r in requirements)
    return f"pip install {quoted} (act_policy's `{extra}` extra: {clone})"


def missing_dependency(exc: ImportError, purpose: str) -> MissingDependencyError:
    """The user-facing error for ``exc`` raised while doing ``purpose`` (e.g. "backend 'cpu_fp32'")."""
    if isinstance(exc, MissingDependencyError):
        return exc
    module = getattr(exc, "name", None) or "an optional package"
    if isinstance(exc, ModuleNotFoundError):
        message = f"{purpose} needs the Python module {module!r}, which is not installed: {install_hint(module)}"
    else:  # installed but broken, e.g. a CUDA torch without its CUDA libraries on a Pi
        message = f"{purpose} cannot import {module!r} ({exc}); replace that install: {install_hint(module)}"
    error = MissingDependencyError(message)
    error.name = module
    return error


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
