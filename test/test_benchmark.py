"""act-policy benchmark: the report has the documented fields and sane relations between them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bundle_helpers import make_bundle, tiny_policy_artifacts

from act_policy.tools.benchmark import count_macs
from act_policy.tools.cli import main


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bench") / "bundle", quantized=True)


def test_report_has_every_documented_field(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report.json"
    code = main(["benchmark", str(bundle), "--backends", "onnx_fp32,cpu_int8,torch_dynamic_int8",
                 "--runs", "3", "--warmup", "1", "--threads", "1", "--held-out", "2", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert list(report["backends"]) == ["cpu_fp32", "onnx_fp32", "cpu_int8", "torch_dynamic_int8"]
    assert {"cpu", "machine", "cores", "torch", "onnxruntime"} <= set(report["machine"])
    for name, r in report["backends"].items():
        assert {"p50_ms", "p95_ms", "p99_ms", "mean_ms", "speedup_vs_cpu_fp32", "threads", "macs", "gmac_per_s",
                "runs", "warmup"} <= set(r), name
        assert r["threads"] == 1 and r["runs"] == 3
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"]
        assert set(r["fidelity"]) == {"max_abs", "max_abs_normalized", "mean_abs", "rel_l2", "rel_l2_normalized",
                                      "observations"}
        assert r["gmac_per_s"] == pytest.approx(r["macs"] / r["p50_ms"] / 1e6)
    baseline = report["backends"]["cpu_fp32"]
    assert baseline["speedup_vs_cpu_fp32"] == 1 and baseline["fidelity"]["max_abs"] == 0
    assert report["bars"]["onnx_fp32_max_abs_normalized"] <= 1e-4
    assert report["bars"]["cpu_int8_rel_l2"] == report["backends"]["cpu_int8"]["fidelity"]["rel_l2"]
    printed = capsys.readouterr().out
    assert "| cpu_int8 " in printed and "relative L2" in printed


def test_unknown_backend_is_refused(bundle: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["benchmark", str(bundle), "--backends", "gpu_magic"]) == 2
    assert "unknown backend(s) ['gpu_magic']" in capsys.readouterr().err


def test_macs_are_counted_on_the_prepared_network() -> None:
    artifacts = tiny_policy_artifacts()
    stem = 64 * 3 * 7 * 7 * 32 * 40  # ResNet's first 7x7 conv alone, 64x80 input → 32x40 output
    decoder_ff = 2 * 10 * 32 * 64  # chunk x dim x ff, two layers
    assert count_macs(artifacts) > stem + decoder_ff
