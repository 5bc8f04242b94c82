"""--backend-option BACKEND.KEY=VALUE: one parser for benchmark, replay and demo; values per backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from act_policy import load_policy
from act_policy.core.errors import BackendError, BackendOptionsError
from act_policy.tools.cli import main
from act_policy.tools.options import parse_backend_options


def test_values_are_json_when_they_parse_and_strings_otherwise() -> None:
    options = parse_backend_options(
        ["hailo.timeout_ms=5000", "hailo.mode=full", "hailo.multi_process=true", "hailo.fallback_backend=cpu_int8",
         'hailo.hef={"backbone_480x640": "/x/a.hef"}', "hailo.group_id=a=b"],
        ["cpu_fp32", "cpu_int8", "hailo"])
    assert options == {
        "hailo": {"timeout_ms": 5000, "mode": "full", "multi_process": True, "fallback_backend": "cpu_int8",
                  "hef": {"backbone_480x640": "/x/a.hef"}, "group_id": "a=b"},  # only the first '=' separates
    }


@pytest.mark.parametrize(("item", "message"), [
    ("cpu_fp32.foo=1", r"backend 'cpu_fp32' takes no backend options, got \['foo'\]"),
    ("cpu_int8.threads=2", r"backend 'cpu_int8' takes no backend options"),
    ("hailo.moed=full", r"hailo backend: unknown option\(s\) \['moed'\]"),
    ("hailo.mode=fulll", r"hailo backend: mode 'fulll'"),
])
def test_options_a_backend_does_not_take_are_refused_not_ignored(item: str, message: str) -> None:
    with pytest.raises(BackendError, match=rf"--backend-option: {message}"):
        parse_backend_options([item], ["cpu_fp32", "cpu_int8", "hailo"])


def test_a_mistyped_hailo_option_is_refused_before_the_demo_is_exported(monkeypatch, capsys) -> None:
    import act_policy.export.demo_bundle as demo_bundle

    def export_must_not_start(*args, **kwargs):
        raise AssertionError("the demo was exported before its options were checked")

    monkeypatch.setattr(demo_bundle, "demo_bundle", export_must_not_start)
    for command in (["demo", "--backend", "hailo"], ["benchmark", "demo", "--backends", "hailo"]):
        assert main([*command, "--backend-option", "hailo.timeout=5"]) == 2
        assert "unknown option(s) ['timeout']" in capsys.readouterr().err


def test_each_option_goes_to_its_backend_only() -> None:
    options = parse_backend_options(["hailo.head=fp32"], ["cpu_fp32", "hailo"])
    assert "cpu_fp32" not in options and options["hailo"] == {"head": "fp32"}


@pytest.mark.parametrize(("item", "message"), [
    ("hailo.timeout_ms", r"'hailo.timeout_ms': expected BACKEND.KEY=VALUE"),
    ("timeout_ms=5", r"'timeout_ms=5': expected BACKEND.KEY=VALUE"),
    (".timeout_ms=5", r"expected BACKEND.KEY=VALUE"),
    ("hailo.=5", r"expected BACKEND.KEY=VALUE"),
    ("gpu_magic.x=1", r"unknown backend 'gpu_magic'; available: cpu_fp32"),
    ("cpu_int8.x=1", r"backend 'cpu_int8' is not run here \(backends: cpu_fp32, hailo\)"),
])
def test_malformed_and_misdirected_options_are_errors(item: str, message: str) -> None:
    with pytest.raises(BackendError, match=rf"--backend-option .*{message}"):
        parse_backend_options([item], ["cpu_fp32", "hailo"])


def test_another_backends_options_are_refused_as_such_in_the_python_api(tiny_bundle: Path) -> None:
    """``load_policy(..., backend_options=)``: the message says what the options look like, in Python's terms."""
    hailo_options = {"mode": "hybrid", "fallback_backend": "cpu_int8"}
    with pytest.raises(BackendOptionsError) as refused:
        load_policy(tiny_bundle, backend="onnx_fp32", backend_options=hailo_options)
    assert str(refused.value) == ("backend 'onnx_fp32' takes no backend options, got ['fallback_backend', 'mode']: "
                                  "these look like another backend's options, which do not carry over; give none")


def test_the_same_key_twice_is_an_error_not_a_silent_override() -> None:
    with pytest.raises(BackendError, match=r"hailo.mode is given twice"):
        parse_backend_options(["hailo.mode=full", "hailo.mode=hybrid"], ["hailo"])


@pytest.mark.parametrize("command", [
    ["benchmark", "demo", "--backends", "onnx_fp32"],
    ["replay", "CHECKPOINT", "--data", "DATA", "--backends", "onnx_fp32"],
    ["demo", "--backend", "onnx_fp32"],
])
def test_every_tool_that_runs_backends_checks_its_options_before_loading(command: list[str], tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    assert main([*command, "--backend-option", "hailo.mode=full"]) == 2
    err = capsys.readouterr().err
    assert f"act-policy {command[0]}: error: --backend-option 'hailo.mode=full': backend 'hailo' is not run" in err
