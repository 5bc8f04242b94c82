"""The ``hailo`` backend on the fake HailoRT: numerics of the hybrid and full paths, sharing, errors, shutdown.

HEFs are produced from a real deploy bundle by the kit's ``hailo_compile.sh`` driven by the fake
DFC, so these tests cover the whole round trip except the real compiler and chip. Numbers are
*emulated*: the fake quantizes every NPU input and output to 8 bits but computes inside in float.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
from pathlib import Path

import hailo_testing
import numpy as np
import pytest

from act_policy.backends import BackendOptions, create_backend
from act_policy.core.errors import BackendError, CheckpointError
from act_policy.core.policy import Policy
from act_policy.core.synthetic import synthetic_observations
from act_policy.export import load_bundle
from act_policy.hailo.layout import PixelNormalization

hailort = hailo_testing.hailort  # fixtures, bound here so pytest finds them
hailo_bundle = hailo_testing.hailo_bundle
quantized_hailo_bundle = hailo_testing.quantized_hailo_bundle


def policy(bundle: Path, backend: str = "hailo", **extra) -> Policy:
    if backend == "hailo":  # the fake "NPU" runs on this CPU: under load it exceeded the 1 s default timeout
        extra.setdefault("timeout_ms", 600_000)
    artifacts = load_bundle(bundle)
    return Policy(artifacts, create_backend(backend, artifacts, BackendOptions(num_threads=1, extra=extra)))


def relative_errors(a: Policy, b: Policy, n: int = 3) -> list[float]:
    spec, stats = a.artifacts.spec, a.artifacts.input_stats
    errors = []
    for obs in synthetic_observations(spec, stats, n, seed=42):
        expected, actual = a.predict_chunk(obs), b.predict_chunk(obs)
        errors.append(float(np.linalg.norm(actual - expected) / np.linalg.norm(expected)))
    return errors


def edited_hef(bundle: Path, tmp_path: Path, name: str, **input_changes) -> Path:
    """Copy of a compiled fake HEF with its first input stream's fields changed."""
    hef = json.loads((bundle / "hailo" / f"{name}.hef").read_text())
    hef["inputs"][0].update(input_changes)
    path = tmp_path / f"{name}.hef"
    path.write_text(json.dumps(hef))
    return path


def test_hybrid_path_matches_cpu_fp32_up_to_emulated_8bit_io(hailort, hailo_bundle: Path) -> None:
    reference, npu = policy(hailo_bundle, "cpu_fp32"), policy(hailo_bundle)
    errors = relative_errors(reference, npu)
    assert max(errors) < 0.02, errors
    assert min(errors) > 1e-5, errors  # the 8-bit quantization really happened
    assert npu.describe()["npu"] is True and npu.describe()["arch"] == "HAILO8L"
    npu.close()


def test_same_resolution_cameras_share_one_hef_in_one_batched_run(hailort, hailo_bundle: Path) -> None:
    npu = policy(hailo_bundle)
    backbones = npu.backend.pipeline.backbones
    assert [(b.group.name, b.cameras) for b in backbones] == [("backbone_64x80", (0, 1)), ("backbone_48x64", (2,))]
    npu.predict_chunk(next(synthetic_observations(npu.spec, npu.artifacts.input_stats, 1)))
    assert hailort.runs == 3  # three camera frames, two HEFs
    npu.close()


def test_uint8_outputs_dequantized_here_equal_hailort_float32_outputs(hailort, hailo_bundle: Path) -> None:
    obs = next(synthetic_observations(load_bundle(hailo_bundle).spec, load_bundle(hailo_bundle).input_stats, 1))
    chunks = []
    for fmt in ("float32", "uint8"):
        npu = policy(hailo_bundle, output_format=fmt)
        chunks.append(npu.predict_chunk(obs))
        npu.close()
    np.testing.assert_allclose(chunks[0], chunks[1], rtol=1e-5, atol=1e-5)


def test_normalized_images_turn_back_into_the_exact_camera_pixels(hailo_bundle: Path) -> None:
    artifacts = load_bundle(hailo_bundle)
    camera = artifacts.spec.cameras[0].name
    pixels = PixelNormalization.for_camera(artifacts, camera)
    image = np.arange(64 * 80 * 3, dtype=np.int64).reshape(64, 80, 3).__mod__(256).astype(np.uint8)
    normalized = artifacts.input_normalizer().image_to_input(camera, image)
    np.testing.assert_array_equal(pixels.to_uint8(normalized), image)
    np.testing.assert_allclose(pixels.mean, [123.675, 116.28, 103.53], atol=1e-3)  # ImageNet × 255
    np.testing.assert_allclose(pixels.std, [58.395, 57.12, 57.375], atol=1e-3)


def test_identity_input_quantization_sends_uint8_pixels_unchanged(hailort, hailo_bundle: Path, tmp_path: Path) -> None:
    identity = {"qp_scale": 1.0, "qp_zp": 0.0, "limvals_min": 0.0, "limvals_max": 255.0}
    hefs = {"backbone_64x80": str(edited_hef(hailo_bundle, tmp_path, "backbone_64x80", quant=identity)),
            "backbone_48x64": str(hailo_bundle / "hailo" / "backbone_48x64.hef")}
    npu = policy(hailo_bundle, hef=hefs)
    assert [b.float_pixels for b in npu.backend.pipeline.backbones] == [False, True]
    assert max(relative_errors(policy(hailo_bundle, "cpu_fp32"), npu)) < 0.02
    npu.close()


def test_full_mode_runs_the_whole_network_from_one_hef(hailort, hailo_bundle: Path) -> None:
    npu = policy(hailo_bundle, mode="full")
    errors = relative_errors(policy(hailo_bundle, "cpu_fp32"), npu)
    assert 1e-5 < max(errors) < 0.02, errors
    npu.close()


def without_sidecar(bundle: Path, tmp_path: Path, name: str) -> str:
    """A compiled HEF copied without its ``.hef.json``, so only the HEF's own structure is checked."""
    path = tmp_path / f"{name}.hef"
    path.write_text((bundle / "hailo" / f"{name}.hef").read_text())
    return str(path)


def test_a_full_model_hef_in_hybrid_mode_is_refused(hailort, hailo_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match="mode=full"):
        policy(hailo_bundle, hef={"backbone_64x80": without_sidecar(hailo_bundle, tmp_path, "act_full"),
                                  "backbone_48x64": str(hailo_bundle / "hailo" / "backbone_48x64.hef")})
    assert hailort.owners == {}  # the device was released despite the failure


def test_hef_compiled_for_another_resolution_is_a_named_mismatch(hailort, hailo_bundle: Path,
                                                                 tmp_path: Path) -> None:
    swapped = {"backbone_64x80": str(hailo_bundle / "hailo" / "backbone_48x64.hef"),
               "backbone_48x64": str(hailo_bundle / "hailo" / "backbone_48x64.hef")}
    with pytest.raises(BackendError, match=r"backbone_48x64.hef: compiled from a graph.*HEF/bundle mismatch"):
        policy(hailo_bundle, hef=swapped)  # caught by the sidecar's graph hash first
    swapped["backbone_64x80"] = without_sidecar(hailo_bundle, tmp_path, "backbone_48x64")
    with pytest.raises(BackendError, match=r"backbone_48x64.hef.*\(64, 80, 3\).*HEF/bundle mismatch"):
        policy(hailo_bundle, hef=swapped)  # and by the stream shapes without it


def test_hef_compiled_without_on_chip_normalization_is_refused(hailort, hailo_bundle: Path, tmp_path: Path) -> None:
    normalized = {"qp_scale": 4.7 / 255, "qp_zp": 115.0, "limvals_min": -2.1, "limvals_max": 2.6}
    path = edited_hef(hailo_bundle, tmp_path, "backbone_48x64", quant=normalized)
    hefs = {"backbone_64x80": str(hailo_bundle / "hailo" / "backbone_64x80.hef"), "backbone_48x64": str(path)}
    with pytest.raises(BackendError, match="normalization"):
        policy(hailo_bundle, hef=hefs)


def test_wrong_architecture_is_explained_from_the_sidecar_or_from_hailort(hailort, hailo_bundle: Path,
                                                                          tmp_path: Path) -> None:
    for name in ("backbone_64x80", "backbone_48x64"):
        (tmp_path / f"{name}.hef").write_text(
            (hailo_bundle / "hailo" / f"{name}.hef").read_text().replace('"hailo8l"', '"hailo8"'))
    hefs = {n: str(tmp_path / f"{n}.hef") for n in ("backbone_64x80", "backbone_48x64")}
    with pytest.raises(BackendError, match=r"another architecture.*--arch hailo8l"):
        policy(hailo_bundle, hef=hefs)  # no sidecar: HailoRT's HEFNotCompatibleWithDevice, explained
    hailort.version = "4.18.0"
    with pytest.raises(BackendError, match=r"Invalid HEF.*another architecture"):
        policy(hailo_bundle, hef=hefs)  # before 4.21 HailoRT calls the same mismatch an invalid HEF
    (tmp_path / "backbone_64x80.hef.json").write_text(json.dumps({"arch": "hailo8"}))
    with pytest.raises(BackendError, match=r"compiled for hailo8 .*device is HAILO8L"):
        policy(hailo_bundle, hef=hefs)


def test_one_hef_path_for_a_policy_needing_several_is_refused(hailort, hailo_bundle: Path) -> None:
    with pytest.raises(BackendError, match="needs 2 backbone HEFs"):
        policy(hailo_bundle, hef=str(hailo_bundle / "hailo" / "backbone_64x80.hef"))


def test_hef_compiled_from_another_bundle_is_refused_by_its_sidecar(hailort, hailo_bundle: Path,
                                                                    tmp_path: Path) -> None:
    hefs = {}
    for name in ("backbone_64x80", "backbone_48x64"):
        hefs[name] = str(tmp_path / f"{name}.hef")
        (tmp_path / f"{name}.hef").write_text((hailo_bundle / "hailo" / f"{name}.hef").read_text())
        sidecar = json.loads((hailo_bundle / "hailo" / f"{name}.hef.json").read_text())
        (tmp_path / f"{name}.hef.json").write_text(json.dumps({**sidecar, "source_onnx_sha256": "0" * 64}))
    with pytest.raises(BackendError, match=r"compiled from a graph with sha256 000000000000.*HEF/bundle mismatch"):
        policy(hailo_bundle, hef=hefs)


def test_missing_hef_names_the_path_and_the_kit(hailort, hailo_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendError, match=r"nothing\.hef: HEF not found.*hailo-prepare"):
        policy(hailo_bundle, hef={"observation.images.front": str(tmp_path / "nothing.hef"),
                                  "backbone_48x64": str(hailo_bundle / "hailo" / "backbone_48x64.hef")})


def test_no_device_is_an_error_or_a_loud_fallback(hailort, hailo_bundle: Path, caplog) -> None:
    hailort.devices = {}
    with pytest.raises(BackendError, match="no Hailo device found"):
        policy(hailo_bundle)
    with caplog.at_level(logging.WARNING, logger="act_policy.backends.hailo"):
        fallback = policy(hailo_bundle, fallback_backend="cpu_fp32")
    assert "HAILO NPU UNAVAILABLE" in caplog.text and "cpu_fp32" in caplog.text
    facts = fallback.describe()
    assert facts["npu"] is False and facts["fallback_backend"] == "cpu_fp32"
    assert relative_errors(policy(hailo_bundle, "cpu_fp32"), fallback, 1) == [0.0]


def test_old_or_missing_hailort_is_reported_as_unavailable(hailort, hailo_bundle: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    hailort.version = "4.17.1"
    with pytest.raises(BackendError, match=r"HailoRT 4\.17\.1 is too old.*4\.18"):
        policy(hailo_bundle)
    monkeypatch.setitem(sys.modules, "hailo_platform", None)
    with pytest.raises(BackendError, match=r"hailo_platform.*apt install hailo-all"):
        policy(hailo_bundle)


def test_inference_that_does_not_complete_times_out_with_a_clear_error(hailort, hailo_bundle: Path) -> None:
    npu = policy(hailo_bundle, timeout_ms=50)
    hailort.stall = True
    obs = next(synthetic_observations(npu.spec, npu.artifacts.input_stats, 1))
    with pytest.raises(BackendError, match="did not finish within 50 ms"):
        npu.predict_chunk(obs)
    npu.close()


def test_a_failed_inference_is_an_error_not_a_stale_chunk(hailort, hailo_bundle: Path) -> None:
    npu = policy(hailo_bundle)
    hailort.fail_with = "PCIe DMA transfer failed"
    obs = next(synthetic_observations(npu.spec, npu.artifacts.input_stats, 1))
    with pytest.raises(BackendError, match=r"NPU inference failed.*PCIe DMA transfer failed"):
        npu.predict_chunk(obs)
    npu.close()


def test_device_is_shared_through_the_scheduler_and_released_on_close(hailort, hailo_bundle: Path) -> None:
    first, second = policy(hailo_bundle), policy(hailo_bundle)
    import hailo_platform as hp

    assert all(p.scheduling_algorithm == hp.HailoSchedulingAlgorithm.ROUND_ROBIN for p in hailort.vdevice_params)
    obs = next(synthetic_observations(first.spec, first.artifacts.input_stats, 1))
    np.testing.assert_array_equal(first.predict_chunk(obs), second.predict_chunk(obs))
    with pytest.raises(BackendError, match="Another process probably holds it"):
        policy(hailo_bundle, group_id="UNIQUE")
    first.close()
    second.close()
    second.close()  # idempotent
    assert hailort.owners == {}
    with pytest.raises(BackendError, match="closed"):
        second.predict_chunk(obs)


def test_unknown_options_and_modes_are_rejected(hailort, hailo_bundle: Path) -> None:
    with pytest.raises(BackendError, match=r"unknown option.*hef_path"):
        policy(hailo_bundle, hef_path="x.hef")
    with pytest.raises(BackendError, match="mode 'npu'"):
        policy(hailo_bundle, mode="npu")


def test_hybrid_mode_needs_a_bundle_not_a_bare_checkpoint(hailort, hailo_bundle: Path, tmp_path: Path) -> None:
    artifacts = dataclasses.replace(load_bundle(hailo_bundle), source=tmp_path)
    shutil.copytree(hailo_bundle / "hailo", tmp_path / "hailo")
    with pytest.raises(BackendError, match="needs a deploy bundle"):
        create_backend("hailo", artifacts, BackendOptions())


def test_8bit_inside_emulation_costs_more_accuracy_than_io_only(hailort, hailo_bundle: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from act_policy.hailo.kit import write_kit

    artifacts = load_bundle(hailo_bundle)
    write_kit(artifacts, tmp_path / "kit", "hailo8l", hailo_testing.calibration(artifacts, 4), calib_size=4)
    monkeypatch.setenv("FAKE_DFC_QUANTIZE_INSIDE", "1")
    result = hailo_testing.run_compile(tmp_path / "kit", hailo_testing.fake_dfc_path(tmp_path / "bin"))
    assert result.returncode == 0, result.stderr
    hefs = {n: str(tmp_path / "kit/hef" / f"{n}.hef") for n in ("backbone_64x80", "backbone_48x64")}
    reference = policy(hailo_bundle, "cpu_fp32")
    io_only = relative_errors(reference, policy(hailo_bundle))
    inside = relative_errors(reference, policy(hailo_bundle, hef=hefs))
    assert max(inside) < 0.10, inside
    assert np.mean(inside) > np.mean(io_only), (inside, io_only)


def test_hybrid_runs_the_int8_head_by_default_once_the_bundle_has_one(hailort, quantized_hailo_bundle: Path) -> None:
    reference = policy(quantized_hailo_bundle, "cpu_fp32")
    int8, fp32 = policy(quantized_hailo_bundle), policy(quantized_hailo_bundle, head="fp32")
    assert int8.describe()["head"] == "int8" and fp32.describe()["head"] == "fp32"
    assert int8.describe()["emulated"] is True
    int8_errors, fp32_errors = relative_errors(reference, int8), relative_errors(reference, fp32)
    assert max(int8_errors) < 0.10, int8_errors  # loose: tiny random model, 8 synthetic calibration frames
    assert int8_errors != fp32_errors  # the INT8 head really ran
    for p in (int8, fp32):
        p.close()


def test_without_an_int8_head_hybrid_runs_fp32_and_says_so(hailort, hailo_bundle: Path, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="act_policy.backends.hailo"):
        npu = policy(hailo_bundle)
    assert npu.describe()["head"] == "fp32"
    assert "no head_int8.onnx in the bundle, running the float32 head" in caplog.text
    npu.close()
    with pytest.raises(CheckpointError, match=r"bundle has no 'head_int8.onnx' \(run `act-policy quantize`"):
        policy(hailo_bundle, head="int8")


def test_head_option_values_are_checked(hailort, hailo_bundle: Path) -> None:
    with pytest.raises(BackendError, match=r"head 'int4'; expected one of \('int8', 'fp32'\)"):
        policy(hailo_bundle, head="int4")
    with pytest.raises(BackendError, match="option head applies to mode=hybrid only"):
        policy(hailo_bundle, mode="full", head="fp32")
