"""The fake ``hailo_platform`` enforces what HailoRT's InferModel API enforces, and computes.

Sources of each rule (hailo-ai/hailort, branch ``hailo8`` = v4.23.0, unless noted):

- names ``VDevice``, ``HailoSchedulingAlgorithm``, ``FormatType``, ``HailoRTException`` and the
  typed subclasses (``HailoRTTimeout``, ``HailoRTInvalidOperationException``,
  ``HailoRTNotFoundException``, ``HailoRTHEFNotCompatibleWithDevice``):
  ``hailort/libhailort/bindings/python/platform/hailo_platform/pyhailort/pyhailort.py`` and the
  package ``__init__.py``; usage as in hailo-ai/Hailo-Application-Code-Examples
  ``runtime/python/common/hailo_inference.py`` (ROUND_ROBIN + ``group_id = "SHARED"``) and
  hailo-ai/hailo-rpi5-examples ``community_projects/dynamic_captioning/caption.py``
  (``input(name).set_format_type(FormatType.FLOAT32)`` before ``configure()``).
- ``VDevice.create_params()`` defaults to scheduling NONE in Python: ``bindings/python/src/pyhailort.cpp``
  (``VDeviceParams.default``).
- ``input()`` without a name on a multi-input model: ``src/net_flow/pipeline/infer_model.cpp``
  ``InferModelBase::input()`` → HAILO_INVALID_OPERATION; an unknown name → HAILO_NOT_FOUND.
- Buffers must be C-contiguous: ``pyhailort.py`` ``Bindings.InferStream._validate_c_contiguous``.
- Byte size must match the current format type: ``infer_model.cpp`` ``validate_bindings``
  ("Input buffer size {} is different than expected {}") at ``run_async``.
- Shapes are per frame, without batch, ``[h, w, features]``: ``bindings_common.hpp`` ``get_pybind_shape``.
- Default user format UINT8: ``pyhailort.cpp`` ``FormatType.AUTO`` "usually UINT8".
- ``activate()`` is invalid under the scheduler: ``src/core_op/core_op.cpp`` ("Manually activate a
  core-op is not allowed when the core-op scheduler is active!").
- The ``run_async`` callback is called as ``callback(completion_info=...)``: ``pyhailort.py`` ``run_async``.
- A Hailo-8L accepts only hailo8l HEFs, checked at configure: ``src/device_common/device_internal.cpp``
  ``is_hef_compatible``, called from ``src/vdevice/vdevice.cpp`` ``create_local_config_params``; the
  failure is HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE since v4.21.0, HAILO_INVALID_HEF in v4.18.0.
- C-contiguity is checked in Python since v4.19.0 (v4.18.0 passes the raw pointer on).
- A device held by another VDevice is skipped, leaving HAILO_OUT_OF_PHYSICAL_DEVICES:
  ``src/vdevice/vdevice.cpp`` ``create_devices``.

Rules added from v4.23.0 (line numbers of that tag; "pyhailort.py" as above, "bindings/" =
``hailort/libhailort/bindings/python/src/``, "src/" = ``hailort/libhailort/src/``):

- ``Device.scan()`` (pyhailort.py lines 2537-2544) and ``Device(...)`` (line 2568) call ``_pyhailort``
  outside ``ExceptionWrapper``: failures are ``_pyhailort.HailoRTStatusException`` carrying only the
  status number (bindings/utils.hpp lines 25-59), registered without a base class
  (bindings/pyhailort.cpp lines 1069-1071). VDevice creation, HEF loading and ``configure`` are
  wrapped (pyhailort.py lines 3535-3540, 3620-3626, 2869-2871): typed ``HailoRTException`` errors
  raised ``from`` the status exception (pyhailort.py lines 115-179).
- Driver/library mismatch is status 76 HAILO_INVALID_DRIVER_VERSION ("Driver version ... is different
  from library version ..."): src/vdma/driver/hailort_driver.cpp lines 203-231.
- A HEF from a newer compiler: HAILO_HEF_NOT_SUPPORTED (src/hef/hef.cpp lines 460-470); v4.18.0
  returned HAILO_INVALID_HEF for the same check (v4.18.0 hef.cpp line 412).
- ``AsyncInferJob.wait`` waits for the job, then for the callback, each with the full timeout
  (bindings/infer_model_api.cpp lines 411-419, "currently waiting for 2 TIMEOUT (worst case)"), and
  never raises the inference's status (src/net_flow/pipeline/infer_model.cpp lines 1061-1070); the
  error reaches the user only as ``completion_info.exception`` (pyhailort.py lines 3341-3348).
- ``run_async`` does not wait for room: each binding takes a queue slot and a full queue is
  HAILO_QUEUE_IS_FULL (src/net_flow/pipeline/async_infer_runner.cpp lines 282-289); any ``run_async``
  failure shuts the configured model down (infer_model.cpp lines 590-600), after which it refuses
  with HAILO_STREAM_ABORT (async_infer_runner.cpp lines 216-222, 284-286). ``wait_for_async_ready``
  blocks until there is room or times out (infer_model.cpp lines 815-837); more frames than
  ``get_async_queue_size()`` always time out (pyhailort.py lines 3267-3286). Python's ``run`` is
  ``run_async`` + ``wait`` without waiting for room (pyhailort.py lines 3288-3303).
- An exception escaping the user callback is not caught (bindings/infer_model_api.cpp lines 254-258,
  378-409: a C++ worker thread, so the process would terminate): the fake records it in
  ``SYSTEM.callback_errors`` and never marks the callback done.
"""

from __future__ import annotations

import json
from pathlib import Path

import hailo_testing
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

hailort = hailo_testing.hailort  # the fake-HailoRT fixture, bound here so pytest finds it

H, W, C_OUT = 4, 6, 2
LONG = 120_000  # ms: a timeout no healthy run reaches, however loaded the machine
WEIGHT = np.array([[1.0, 0.5, -0.25], [0.0, -1.0, 2.0]], np.float32)


def conv_onnx(path: Path) -> Path:
    """1x1 convolution (1, 3, H, W) → (1, 2, H, W): enough to check layouts and quantization."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [C_OUT, 3, 1, 1], WEIGHT.ravel().tolist())
    graph = helper.make_graph([helper.make_node("Conv", ["image", "w"], ["features"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, H, W])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, C_OUT, H, W])],
                              [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, str(path))
    return path


def quant(scale: float, zp: float) -> dict:
    return {"qp_scale": scale, "qp_zp": zp, "limvals_min": -zp * scale, "limvals_max": (255 - zp) * scale}


def write_hef(folder: Path, arch: str = "hailo8l", in_quant: dict | None = None, extra_input: bool = False,
              hailort_release: str = "4.18", output_bits: int = 8) -> str:
    onnx_path = conv_onnx(folder / "conv.onnx")
    inputs = [{"name": "net/input_layer1", "onnx_name": "image", "shape": [H, W, 3],
               "quant": in_quant or quant(1.0, 0.0), "normalization": {"mean": [0, 0, 0], "std": [255, 255, 255]}}]
    if extra_input:
        inputs.append({"name": "net/input_layer2", "onnx_name": "state", "shape": [5], "quant": quant(0.1, 128)})
    scale = 4.0 / (2 ** output_bits - 1)
    hef = {"fake_hef_version": 1, "arch": arch, "network_group": "net", "onnx": str(onnx_path), "inputs": inputs,
           "hailort_release": hailort_release,
           "outputs": [{"name": "net/conv1", "onnx_name": "features", "shape": [H, W, C_OUT], "bits": output_bits,
                        "quant": {**quant(scale, 85.0 * 257 if output_bits == 16 else 85.0)}}]}
    path = folder / f"net_{arch}.hef"
    path.write_text(json.dumps(hef))
    return str(path)


def scheduled_vdevice(hp):
    params = hp.VDevice.create_params()
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    return hp.VDevice(params)


def bound(configured, image: np.ndarray, out_dtype=np.uint8):
    bindings = configured.create_bindings(output_buffers={"net/conv1": np.empty((H, W, C_OUT), out_dtype)})
    bindings.input().set_buffer(image)
    return bindings


def test_infers_the_onnx_graph_between_quantized_inputs_and_outputs(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp

    image = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    with scheduled_vdevice(hp) as vdevice:
        model = vdevice.create_infer_model(write_hef(tmp_path))
        assert model.input().format.type == hp.FormatType.UINT8  # the default user format
        model.output().set_format_type(hp.FormatType.FLOAT32)
        with model.configure() as configured:
            bindings = bound(configured, image, np.float32)
            configured.run([bindings], LONG)
            result = bindings.output().get_buffer()
    expected = np.einsum("hwc,oc->hwo", image / 255.0, WEIGHT)
    q = model.output().quant_infos[0]
    assert np.abs(result - expected).max() <= q.qp_scale / 2 + 1e-6  # only the output's 8-bit rounding
    assert not np.allclose(result, expected, atol=1e-6)  # and that rounding is really there


def test_uint8_output_dequantizes_with_qp_scale_and_zero_point(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp

    image = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    results = {}
    with scheduled_vdevice(hp) as vdevice:
        for fmt in (hp.FormatType.UINT8, hp.FormatType.FLOAT32):
            model = vdevice.create_infer_model(write_hef(tmp_path))
            model.output().set_format_type(fmt)
            with model.configure() as configured:
                bindings = bound(configured, image, np.uint8 if fmt == hp.FormatType.UINT8 else np.float32)
                configured.run([bindings], LONG)
                results[fmt] = bindings.output().get_buffer()
            q = model.output().quant_infos[0]
    dequantized = (results[hp.FormatType.UINT8].astype(np.float32) - q.qp_zp) * q.qp_scale
    np.testing.assert_allclose(dequantized, results[hp.FormatType.FLOAT32], atol=1e-6)


def test_buffers_must_be_contiguous_and_sized_for_the_current_format(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp
    from hailo_platform.pyhailort.pyhailort import HailoRTInvalidOperationException

    with scheduled_vdevice(hp) as vdevice:
        model = vdevice.create_infer_model(write_hef(tmp_path))
        with model.configure() as configured:
            bindings = configured.create_bindings(output_buffers={"net/conv1": np.empty((H, W, C_OUT), np.uint8)})
            with pytest.raises(hp.HailoRTException, match="C_CONTIGUOUS"):
                bindings.input().set_buffer(np.zeros((W, H, 3), np.uint8).transpose(1, 0, 2))
            bindings.input().set_buffer(np.zeros((H, W, 3), np.float32))  # UINT8 stream: 4x too many bytes
            with pytest.raises(HailoRTInvalidOperationException, match="size"):
                configured.run([bindings], LONG)
            bindings.input().set_buffer(np.zeros((1, H, W, 3), np.uint8))  # batch dim: bytes fit, shape not
            with pytest.raises(HailoRTInvalidOperationException, match="stream is"):
                configured.run([bindings], LONG)


def test_input_without_name_fails_on_a_multi_input_model(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp
    from hailo_platform.pyhailort.pyhailort import HailoRTInvalidOperationException, HailoRTNotFoundException

    with scheduled_vdevice(hp) as vdevice:
        model = vdevice.create_infer_model(write_hef(tmp_path, extra_input=True))
        with pytest.raises(HailoRTInvalidOperationException):
            model.input()
        with pytest.raises(HailoRTNotFoundException):
            model.input("net/no_such_layer")
        assert model.input("net/input_layer2").shape == [5]


def test_scheduler_makes_activate_invalid_and_is_needed_to_run_without_it(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp
    from hailo_platform.pyhailort.pyhailort import HailoRTInvalidOperationException

    hef = write_hef(tmp_path)
    with (scheduled_vdevice(hp) as vdevice, vdevice.create_infer_model(hef).configure() as configured,
          pytest.raises(HailoRTInvalidOperationException)):
        configured.activate()
    assert hp.VDevice.create_params().scheduling_algorithm == hp.HailoSchedulingAlgorithm.NONE
    with hp.VDevice() as vdevice, vdevice.create_infer_model(hef).configure() as configured:
        with pytest.raises(hp.HailoRTException):
            configured.run([bound(configured, np.zeros((H, W, 3), np.uint8))], LONG)
        configured.activate()
        configured.run([bound(configured, np.zeros((H, W, 3), np.uint8))], LONG)


def test_run_async_calls_back_with_the_completion_info_keyword(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp

    seen = []
    with scheduled_vdevice(hp) as vdevice, vdevice.create_infer_model(write_hef(tmp_path)).configure() as configured:
        job = configured.run_async([bound(configured, np.zeros((H, W, 3), np.uint8))],
                                   lambda completion_info: seen.append(completion_info.exception))
        job.wait(LONG)
        assert seen == [None]
        assert hailort.callback_errors == []
        # A callback that raises (here: the wrong keyword) would terminate the real process; the fake records
        # it, and the job's callback never counts as done, so wait() times out (it does not re-raise).
        job = configured.run_async([bound(configured, np.zeros((H, W, 3), np.uint8))], lambda info: None)
        with pytest.raises(hp.HailoRTException) as timeout:
            job.wait(50)
        assert type(timeout.value).__name__ == "HailoRTTimeout"
        assert [type(e) for e in hailort.callback_errors] == [TypeError]


def test_device_failures_outside_the_wrapper_are_bare_status_numbers(hailort) -> None:
    import hailo_platform as hp
    from hailo_platform.pyhailort._pyhailort import HailoRTStatusException

    hailort.scan_failure = "HAILO_DRIVER_INVALID_RESPONSE"
    with pytest.raises(HailoRTStatusException) as scan:
        hp.Device.scan()
    assert scan.value.args == ("85",) and not isinstance(scan.value, hp.HailoRTException)
    hailort.scan_failure = None
    hailort.open_failure = "HAILO_INVALID_DRIVER_VERSION"  # the common Pi failure: driver != library release
    with pytest.raises(HailoRTStatusException) as opened:
        hp.Device("0001:01:00.0")
    assert str(opened.value) == "76"
    mismatch = r"libhailort failed with error: 76 \(HAILO_INVALID_DRIVER_VERSION\)"
    with pytest.raises(hp.HailoRTException, match=mismatch) as vdev:
        hp.VDevice()
    assert isinstance(vdev.value.__cause__, HailoRTStatusException)  # ExceptionWrapper chains the original


def test_inference_errors_arrive_only_through_completion_info_and_end_the_model(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp
    from hailo_platform.pyhailort.pyhailort import HailoRTDriverOperationFailedException, HailoRTStreamAborted

    seen = []
    hailort.fail_with = "HAILO_DRIVER_OPERATION_FAILED"
    with scheduled_vdevice(hp) as vdevice, vdevice.create_infer_model(write_hef(tmp_path)).configure() as configured:
        job = configured.run_async([bound(configured, np.zeros((H, W, 3), np.uint8))],
                                   lambda completion_info: seen.append(completion_info.exception))
        job.wait(LONG)  # returns normally: wait() does not re-raise the inference's error
        assert [type(e) for e in seen] == [HailoRTDriverOperationFailedException]
        hailort.fail_with = None
        with pytest.raises(HailoRTStreamAborted):  # "In case of an error, the pipeline will be shut down"
            configured.run_async([bound(configured, np.zeros((H, W, 3), np.uint8))], lambda completion_info: None)


def test_run_async_on_a_full_queue_fails_and_shuts_the_model_down(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp
    from hailo_platform.pyhailort.pyhailort import HailoRTStreamAborted

    hailort.queue_size, hailort.stall = 1, True  # one slot, and the first frame never completes

    def frame():
        return [bound(configured, np.zeros((H, W, 3), np.uint8))]

    with scheduled_vdevice(hp) as vdevice, vdevice.create_infer_model(write_hef(tmp_path)).configure() as configured:
        assert configured.get_async_queue_size() == 1
        configured.wait_for_async_ready(50, 1)  # room for one
        configured.run_async(frame(), lambda completion_info: None)
        with pytest.raises(hp.HailoRTException) as full_wait:
            configured.wait_for_async_ready(50, 1)  # no room: waits, then HAILO_TIMEOUT
        assert type(full_wait.value).__name__ == "HailoRTTimeout"
        with pytest.raises(hp.HailoRTException, match=r"82 \(HAILO_QUEUE_IS_FULL\)"):
            configured.run_async(frame(), lambda completion_info: None)  # run_async itself does not wait
        with pytest.raises(HailoRTStreamAborted):
            configured.run_async(frame(), lambda completion_info: None)  # the failure shut the model down
    hailort.stall = False
    with (scheduled_vdevice(hp) as vdevice, vdevice.create_infer_model(write_hef(tmp_path)).configure() as configured,
          pytest.raises(hp.HailoRTException)):
        configured.wait_for_async_ready(50, 2)  # more frames than the queue holds never fit


def test_wait_covers_the_job_and_then_the_callback(hailort, tmp_path: Path) -> None:
    import threading

    import hailo_platform as hp

    release = threading.Event()
    with scheduled_vdevice(hp) as vdevice, vdevice.create_infer_model(write_hef(tmp_path)).configure() as configured:
        job = configured.run_async([bound(configured, np.zeros((H, W, 3), np.uint8))],
                                   lambda completion_info: release.wait(10))
        with pytest.raises(hp.HailoRTException):
            job.wait(50)  # the frame is done but the callback is still running: a second timeout, then raise
        release.set()
        job.wait(LONG)
    assert hailort.waits == [50, LONG]


def test_a_hef_from_a_newer_compiler_is_refused_by_an_older_hailort(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp
    from hailo_platform.pyhailort.pyhailort import HailoRTInvalidHEFException

    hef = write_hef(tmp_path, hailort_release="4.23")
    hailort.version = "4.22.0"
    with scheduled_vdevice(hp) as vdevice, pytest.raises(hp.HailoRTException, match=r"92 \(HAILO_HEF_NOT_SUPPORTED\)"):
        vdevice.create_infer_model(hef)
    hailort.version = "4.20.0"
    with scheduled_vdevice(hp) as vdevice, pytest.raises(HailoRTInvalidHEFException):
        vdevice.create_infer_model(hef)
    hailort.version = "4.23.0"
    with scheduled_vdevice(hp) as vdevice:
        vdevice.create_infer_model(hef)


def test_a_16bit_output_streams_uint16_and_is_finer_than_8bit(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp

    image = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
    expected = np.einsum("hwc,oc->hwo", image / 255.0, WEIGHT)
    errors = {}
    with scheduled_vdevice(hp) as vdevice:
        for bits in (8, 16):
            (tmp_path / str(bits)).mkdir()
            model = vdevice.create_infer_model(write_hef(tmp_path / str(bits), output_bits=bits))
            assert model.output().format.type == (hp.FormatType.UINT16 if bits == 16 else hp.FormatType.UINT8)
            model.output().set_format_type(hp.FormatType.FLOAT32)
            with model.configure() as configured:
                bindings = bound(configured, image, np.float32)
                configured.run([bindings], LONG)
                errors[bits] = np.abs(bindings.output().get_buffer() - expected).max()
        model = vdevice.create_infer_model(write_hef(tmp_path / "16", output_bits=16))
        model.output().set_format_type(hp.FormatType.UINT8)
        with pytest.raises(hp.HailoRTException):
            model.configure()
    assert errors[16] < errors[8] / 50, errors


def test_hailo8l_refuses_hailo8_hefs_and_hailo8_runs_both(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp
    from hailo_platform.pyhailort.pyhailort import (
        DeviceArchitectureTypes,
        HailoRTHEFNotCompatibleWithDevice,
        HailoRTInvalidHEFException,
    )

    with scheduled_vdevice(hp) as vdevice, pytest.raises(HailoRTHEFNotCompatibleWithDevice):
        vdevice.create_infer_model(write_hef(tmp_path, arch="hailo8")).configure()
    hailort.version = "4.18.0"  # before 4.21 the same check reported HAILO_INVALID_HEF
    with scheduled_vdevice(hp) as vdevice, pytest.raises(HailoRTInvalidHEFException):
        vdevice.create_infer_model(write_hef(tmp_path, arch="hailo8")).configure()
    hailort.devices = {"0001:01:00.0": DeviceArchitectureTypes.HAILO8}
    with scheduled_vdevice(hp) as vdevice:
        for arch in ("hailo8", "hailo8l"):
            vdevice.create_infer_model(write_hef(tmp_path, arch=arch)).configure()


def test_a_held_device_is_shared_only_by_the_same_group_id(hailort, tmp_path: Path) -> None:
    import hailo_platform as hp

    def params(group: str):
        p = hp.VDevice.create_params()
        p.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
        p.group_id = group
        return p

    first = hp.VDevice(params("SHARED"))
    second = hp.VDevice(params("SHARED"))
    with pytest.raises(hp.HailoRTException, match="OUT_OF_PHYSICAL_DEVICES"):
        hp.VDevice(params("UNIQUE"))
    first.release()
    second.release()
    hp.VDevice(params("UNIQUE")).release()
    hailort.devices = {}
    assert hp.Device.scan() == []
    with pytest.raises(hp.HailoRTException, match="OUT_OF_PHYSICAL_DEVICES"):
        hp.VDevice(params("SHARED"))
