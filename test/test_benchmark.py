"""act-policy benchmark: the report has the documented fields and sane relations between them."""

from __future__ import annotations

import json
from pathlib import Path

import hailo_testing
import pytest
from bundle_helpers import tiny_policy_artifacts

from act_policy.backends.torch_fp32 import build_prepared_model
from act_policy.core.macs import count_macs
from act_policy.export.bundle import MACS_FIELD, POLICY_FILE
from act_policy.tools.cli import main

hailort = hailo_testing.hailort  # fixtures, bound here so pytest finds them
hailo_bundle = hailo_testing.hailo_bundle
quantized_hailo_bundle = hailo_testing.quantized_hailo_bundle
LATENCY_COLUMNS = ("p50 ms", "p95 ms", "p99 ms", "speedup", "GMAC/s")
# The fake HailoRT runs the "NPU" on this CPU: on a loaded machine one inference exceeded HailoRT's
# default 1000 ms timeout and failed the run. These tests are not about timeouts (test_hailo_backend is).
NO_NPU_TIMEOUT = ("--backend-option", "hailo.timeout_ms=600000")


@pytest.fixture
def bundle(tiny_quantized_bundle: Path) -> Path:
    return tiny_quantized_bundle


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
                                      "max_abs_bias_normalized", "per_joint", "observations", "normalized_unit"}
        assert len(r["fidelity"]["per_joint"]) == report["action_dim"]
        assert r["gmac_per_s"] == pytest.approx(r["macs"] / r["p50_ms"] / 1e6)
    baseline = report["backends"]["cpu_fp32"]
    assert baseline["speedup_vs_cpu_fp32"] == 1 and baseline["fidelity"]["max_abs"] == 0
    assert report["bars"]["onnx_fp32_max_abs_normalized"] <= 1e-4
    assert report["bars"]["cpu_int8_rel_l2"] == report["backends"]["cpu_int8"]["fidelity"]["rel_l2"]
    int8 = report["backends"]["cpu_int8"]["fidelity"]
    assert report["bars"]["cpu_int8_rel_l2_normalized"] == int8["rel_l2_normalized"]
    assert report["bars"]["cpu_int8_max_abs_bias_normalized"] == int8["max_abs_bias_normalized"]
    printed = capsys.readouterr()
    assert "| cpu_int8 " in printed.out and "relative L2" in printed.out
    # a bundle's MACs are the ones recorded at export: read, not counted again
    recorded = json.loads((bundle / POLICY_FILE).read_text())[MACS_FIELD]
    assert {r["macs"] for r in report["backends"].values()} == {recorded}
    assert report["macs_source"] == "recorded in policy.json at export"
    assert "counting MACs" not in printed.err
    assert f"{recorded / 1e9:.2f} GMAC per inference (recorded in policy.json at export)" in printed.out


def test_unknown_backend_is_refused(bundle: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["benchmark", str(bundle), "--backends", "gpu_magic"]) == 2
    assert "unknown backend(s) ['gpu_magic']" in capsys.readouterr().err


def test_macs_are_counted_on_the_deployed_network_without_its_precomputed_work() -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = build_prepared_model(tiny_policy_artifacts()).requires_grad_(False)
    images, state = [torch.zeros(1, 3, 64, 80)], torch.zeros(1, 6)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.forward_reference(images, state)
    reference_macs = counter.get_total_flops() // 2
    stem = 64 * 3 * 7 * 7 * 32 * 40  # ResNet's first 7x7 conv alone, 64x80 input → 32x40 output
    assert stem < count_macs(model) < reference_macs


def table_rows(printed: str) -> dict[str, dict[str, str]]:
    """The printed markdown table as {row label: {column: cell}}."""
    lines = [line for line in printed.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[1:]]
    return {row["backend"]: row for row in rows}


def test_an_emulated_backend_gets_fidelity_but_no_latency_figure(hailort, quantized_hailo_bundle: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report.json"
    assert main(["benchmark", str(quantized_hailo_bundle), "--backends", "hailo,onnx_fp32", "--runs", "2",
                 "--warmup", "0", "--threads", "1", "--held-out", "2", "--json", str(out), *NO_NPU_TIMEOUT]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {"cpu_fp32", "hailo (emulated)", "onnx_fp32"}
    assert [rows["hailo (emulated)"][c] for c in LATENCY_COLUMNS] == ["emulated"] * len(LATENCY_COLUMNS)
    assert all(rows["onnx_fp32"][c] != "emulated" for c in LATENCY_COLUMNS)
    assert rows["hailo (emulated)"]["rel L2"].endswith(" %") and rows["hailo (emulated)"]["rel L2 norm"].endswith(" %")
    report = json.loads(out.read_text())["backends"]
    hailo = report["hailo"]
    assert hailo["emulated"] is True and hailo["runs"] == 0 and hailo["head"] == "int8"
    assert all(hailo[k] is None for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "gmac_per_s",
                                          "speedup_vs_cpu_fp32"))
    assert 0 < hailo["fidelity"]["rel_l2"] < 0.10
    assert report["onnx_fp32"]["emulated"] is False and report["onnx_fp32"]["p50_ms"] > 0


def test_backend_options_reach_the_named_backend(hailort, quantized_hailo_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert main(["benchmark", str(quantized_hailo_bundle), "--backends", "hailo", "--runs", "1", "--warmup", "0",
                 "--threads", "1", "--held-out", "1", "--json", str(out), "--backend-option", "hailo.head=fp32",
                 *NO_NPU_TIMEOUT]) == 0
    assert json.loads(out.read_text())["backends"]["hailo"]["head"] == "fp32"
