"""The act-policy command line: demo and info on a small checkpoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from act_policy.tools.cli import main


def test_demo_streams_through_the_full_path_and_reports_latency(tiny_checkpoint: Path, capsys) -> None:
    assert main(["demo", "--checkpoint", str(tiny_checkpoint), "--duration", "0.5", "--rate", "50",
                 "--n-action-steps", "5", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    for stage in ("preprocess", "inference", "postprocess", "control tick"):
        assert re.search(rf"^{stage}\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+$", out, re.M), stage
    ticks, seconds, hz = re.search(r"control: (\d+) ticks in ([\d.]+) s = ([\d.]+) Hz achieved", out).groups()
    # how many ticks fit depends on the machine's speed: at most one per 20 ms period, at least one
    assert 1 <= int(ticks) <= 26 and float(hz) == pytest.approx(int(ticks) / float(seconds), rel=0.1)
    # overruns are the demo's synchronous schedule, not a slow machine alone: the report says so
    assert re.search(r"\d+ ticks overran the 20\.0 ms period, by design: as in LeRobot's loop, a refill tick "
                     r"waits for inference \(the ROS node infers ahead\)", out)


def test_demo_help_says_where_the_node_infers_instead(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "infers ahead of the control loop, by default in a child process, ``inference_isolation: process``" \
        in help_text
    assert "worker thread" not in help_text


def test_info_reports_features_and_measured_macs(tiny_checkpoint: Path, capsys) -> None:
    assert main(["info", str(tiny_checkpoint), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["cameras"] == ["observation.images.front"]
    assert {f["name"]: f["normalization"] for f in info["features"]}["action"] == "MEAN_STD"
    # ResNet18 at 64x80 alone is ~0.19 GMAC (1.82 GMAC at 224x224, scaled by pixels)
    assert 0.15e9 < info["macs_per_inference"] < 0.25e9


def test_info_on_a_bundle_reads_the_macs_recorded_at_export_and_counts_parameters_from_the_file(
        tiny_checkpoint: Path, tiny_bundle: Path, capsys) -> None:
    """The bundle holds the checkpoint's architecture (other weights): the same counts, read, not computed."""
    assert main(["info", str(tiny_checkpoint), "--json"]) == 0
    counted = json.loads(capsys.readouterr().out)
    assert main(["info", str(tiny_bundle), "--json"]) == 0
    read = json.loads(capsys.readouterr().out)
    assert counted["macs_source"] == "counted on the torch model"
    assert read["macs_source"] == "recorded in policy.json at export"
    assert read["macs_per_inference"] == counted["macs_per_inference"]
    assert read["parameters"] == counted["parameters"] > 0


def test_errors_are_reported_without_a_traceback(tmp_path: Path, capsys) -> None:
    assert main(["info", str(tmp_path / "nowhere")]) == 2
    assert "act-policy info: error:" in capsys.readouterr().err


def test_demo_exports_the_embedded_policy_once_into_the_user_cache(monkeypatch, tmp_path: Path, capsys) -> None:
    from conftest import tiny_spec

    import act_policy.export.demo_bundle as demo_bundle
    from act_policy.core.synthetic import demo_artifacts

    monkeypatch.setattr(demo_bundle, "demo_artifacts", lambda seed=0: demo_artifacts(tiny_spec(), seed))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    command = ["demo", "--backend", "onnx_fp32", "--duration", "0.3", "--n-action-steps", "5", "--threads", "1"]
    assert main(command) == 0
    first = capsys.readouterr()
    assert "exporting the demo policy into the cache" in first.err
    assert str(tmp_path / "cache" / "act_policy" / "demo") in first.err
    assert re.search(r"^inference\s+\d+", first.out, re.M)
    assert main(command) == 0
    second = capsys.readouterr()
    assert "exporting" not in second.err and "using the cached demo bundle" in second.err


def test_demo_and_info_need_no_optional_dependency(tiny_checkpoint: Path) -> None:
    """The README's first command installs torch alone: no other command's extras may be imported."""
    import subprocess
    import sys

    blocked = ["onnx", "onnxruntime", "onnxslim", "av", "pyarrow", "matplotlib", "rosbags", "hailo_platform", "yaml"]
    code = f"""
import importlib.abc, importlib.machinery, sys
class Missing(importlib.abc.Loader):  # behaves like an absent package when imported
    def create_module(self, spec):
        raise ModuleNotFoundError('No module named ' + repr(spec.name) + ' (hidden by the test)')
    def exec_module(self, module):
        pass
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            return importlib.machinery.ModuleSpec(name, Missing(), origin=None)
sys.meta_path.insert(0, Hide())
from act_policy.tools.cli import main
assert main(['info', {str(tiny_checkpoint)!r}]) == 0
assert main(['demo', '--checkpoint', {str(tiny_checkpoint)!r}, '--duration', '0.2', '--threads', '1']) == 0
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "control:" in done.stdout
