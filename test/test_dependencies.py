"""A missing optional package is reported with what to install, from one map, never as a traceback."""

from __future__ import annotations

import configparser
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from bundle_helpers import make_bundle
from dataset_layout import EpisodeData, write_v21

from act_policy.core import dependencies
from act_policy.core.dependencies import EXTRAS, install_hint, missing_dependency, needs, require_all
from act_policy.core.errors import ActPolicyError, MissingDependencyError

ROOT = Path(__file__).resolve().parents[1]
# Everything the README's first command (torch + `pip install -e .`) does not install.
NOT_IN_BASE_INSTALL = sorted({"hailo_platform", *(m for m in EXTRAS if m != "torch")})


def setup_cfg_extra(name: str) -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return [line.strip() for line in parser["options.extras_require"][name].splitlines() if line.strip()]


@pytest.mark.parametrize("module", ["onnx", "onnxruntime", "openvino", "pyarrow", "yaml"])
def test_the_hint_lists_the_requirements_of_the_extra_in_setup_cfg(module: str) -> None:
    """Version ranges included, each quoted for the shell: `pip install 'openvino<2026.5,>=2026.4.1'`."""
    extra = EXTRAS[module][0]
    hint = install_hint(module)
    assert f"'.[{extra}]'" in hint
    for requirement in setup_cfg_extra(extra):
        assert f"'{requirement}'" in hint


def without_metadata(metadata: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make importlib.metadata see no requirements of act_policy (None: none listed; else raise ``metadata``)."""
    def requires(distribution: str) -> None:
        if isinstance(metadata, Exception):
            raise metadata

    monkeypatch.setattr(importlib.metadata, "requires", requires)


WITHOUT_METADATA = pytest.mark.parametrize(
    "metadata", [None, importlib.metadata.PackageNotFoundError("act_policy")],
    ids=["colcon install (egg-info without requirements)", "no metadata (a bare clone)"])


@WITHOUT_METADATA
@pytest.mark.parametrize("layout", ["colcon install (setup.cfg in share/act_policy)", "source tree"])
def test_without_installed_requirements_the_hint_quotes_the_range_from_the_installed_setup_cfg(
        metadata: object, layout: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """CMakeLists.txt installs setup.cfg into <prefix>/share/act_policy; the package lies in
    <prefix>/lib/python3.X/site-packages/act_policy. Without ament_index_python (the ROS-free core)."""
    without_metadata(metadata, monkeypatch)
    monkeypatch.setitem(sys.modules, "ament_index_python", None)  # an import of it fails
    if layout == "source tree":
        package, setup_cfg = tmp_path / "clone" / "act_policy", tmp_path / "clone" / "setup.cfg"
    else:
        package = tmp_path / "lib" / "python3.12" / "site-packages" / "act_policy"
        setup_cfg = tmp_path / "share" / "act_policy" / "setup.cfg"
    package.mkdir(parents=True)
    setup_cfg.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "setup.cfg", setup_cfg)
    monkeypatch.setattr(dependencies, "PACKAGE_DIR", package)
    assert dependencies.installed_setup_cfg() == setup_cfg
    hint = install_hint("openvino")
    assert hint.startswith(f"pip install '{setup_cfg_extra('openvino')[0]}' (act_policy's `openvino` extra")
    assert "'openvino<2026.5,>=2026.4.1'" in hint  # README's range: a change of it must be made in both


@WITHOUT_METADATA
def test_without_metadata_or_setup_cfg_the_hint_names_the_package_and_where_its_range_is(
        metadata: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    without_metadata(metadata, monkeypatch)
    monkeypatch.setitem(sys.modules, "ament_index_python", None)
    monkeypatch.setattr(dependencies, "PACKAGE_DIR", tmp_path / "lib" / "python3.12" / "site-packages" / "act_policy")
    hint = install_hint("openvino")
    assert hint.startswith("pip install openvino (in the version range of act_policy's `openvino` extra in its "
                           "source's setup.cfg")
    assert "'.[openvino]'" in hint


def test_require_all_names_every_missing_module_with_one_hint_per_extra() -> None:
    require_all(["numpy", "json"], "anything")  # installed: nothing happens
    with pytest.raises(MissingDependencyError) as raised:
        require_all(["numpy", "no_such_module_a", "no_such_module_b"], "exporting")
    assert str(raised.value) == ("exporting needs the Python modules 'no_such_module_a', 'no_such_module_b', which "
                                 "are not installed: pip install no_such_module_a; and pip install no_such_module_b")
    assert raised.value.name == "no_such_module_a"


def test_torch_is_never_suggested_from_pypi() -> None:
    """PyPI's x86_64 default and every aarch64 torch >= 2.11 are CUDA builds: point at PyTorch's CPU index."""
    hint = install_hint("torch.nn")
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in hint
    assert "onnx_fp32, cpu_int8 or hailo" in hint


def test_only_missing_optional_modules_are_translated() -> None:
    with (pytest.raises(MissingDependencyError, match=r"exporting needs the Python module 'onnxslim'.*pip install"),
          needs("exporting")):
        raise ModuleNotFoundError("No module named 'onnxslim'", name="onnxslim")
    with pytest.raises(ModuleNotFoundError) as raised, needs("exporting"):  # our own bug stays a bug
        raise ModuleNotFoundError("No module named 'act_policy.nope'", name="act_policy.nope")
    assert not isinstance(raised.value, ActPolicyError)


def test_a_broken_install_keeps_its_reason_next_to_the_hint() -> None:
    """PyPI's aarch64 torch >= 2.11 imports only with CUDA's libraries: the user must read both facts."""
    broken = ImportError("libcudart.so.13: cannot open shared object file", name="torch")
    message = str(missing_dependency(broken, "backend 'cpu_fp32'"))
    assert "libcudart.so.13" in message and "download.pytorch.org/whl/cpu" in message


def test_every_readme_command_works_or_says_what_to_install(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """After the README's first command (torch, no extras), each command either runs or exits 2 naming the
    package and the pip line — export, quantize and hailo-prepare before they start any work (no progress line,
    no output folder) — checked with every optional package hidden, in one interpreter."""
    bundle = make_bundle(tmp_path / "bundle")
    commands = {
        "export": ["export", tiny_checkpoint, "--out", tmp_path / "out"],
        "quantize": ["quantize", bundle],
        "benchmark": ["benchmark", bundle, "--runs", "1", "--warmup", "0", "--held-out", "1"],
        "hailo-prepare": ["hailo-prepare", bundle, "--calib", "synthetic", "--arch", "hailo8l", "--out",
                          tmp_path / "kit", "--calib-size", "2"],
        "replay": ["replay", bundle, "--data", write_v21(tmp_path / "dataset", [EpisodeData(
            np.zeros((2, 6), np.float32), np.zeros((2, 6), np.float32),
            {"observation.images.front": np.zeros((2, 64, 80, 3), np.uint8)})], camera_dtype="image")],
        "demo": ["demo", "--backend", "onnx_fp32", "--duration", "0.2"],
        "info": ["info", tiny_checkpoint],
    }
    code = f"""
import sys
class Hide:  # an absent package, as importlib.util.find_spec and import both see it
    def __init__(self, inner):
        self.inner = inner
    def find_spec(self, name, path=None, target=None):
        return None if name.split('.')[0] in {NOT_IN_BASE_INSTALL!r} else self.inner.find_spec(name, path, target)
    def __getattr__(self, attr):
        return getattr(self.inner, attr)
sys.meta_path[:] = [Hide(f) for f in sys.meta_path]
from act_policy.tools.cli import main
for name, argv in {({k: [str(a) for a in v] for k, v in commands.items()})!r}.items():
    print(f"=== {{name}} exit", main(argv), flush=True)
    print(f"=== {{name}} end", file=sys.stderr, flush=True)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    exits = dict(line.split()[1::2] for line in done.stdout.splitlines() if line.startswith("=== "))
    assert exits["info"] == "0"
    needs_extra = {"export": "onnx", "quantize": "onnx", "benchmark": "onnxruntime", "hailo-prepare": "onnx",
                   "replay": "pyarrow", "demo": "onnx"}
    stderr = done.stderr
    for command, module in needs_extra.items():
        assert exits[command] == "2", command
        message, stderr = stderr.split(f"=== {command} end", 1)
        assert f"act-policy {command}: error:" in message, message
        assert re.search(rf"needs the Python modules? ('\w+', )*'{module}'", message), message
        assert "pip install '" in message, message
        if command in ("export", "quantize", "hailo-prepare"):  # minutes of work each, so they check first
            assert "[act-policy]" not in message, f"{command} started work before it said what is missing: {message}"
    assert not (tmp_path / "out").exists() and not (tmp_path / "kit").exists()
