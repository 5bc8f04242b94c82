"""A computing fake of the slice of HailoRT's Python API (``hailo_platform``) that act_policy uses.

Test-only. Names, signatures and the rules below follow HailoRT's Python binding, read from
hailo-ai/hailort branch ``hailo8`` (v4.23.0) and tag v4.18.0:
``hailort/libhailort/bindings/python/platform/hailo_platform/pyhailort/pyhailort.py``,
``hailort/libhailort/bindings/python/src/{pyhailort.cpp,infer_model_api.cpp,bindings_common.hpp}``,
``hailort/libhailort/src/net_flow/pipeline/infer_model.cpp``, ``src/core_op/core_op.cpp``,
``src/vdevice/vdevice.cpp``, ``src/device_common/device_internal.cpp``. Where the real library's
behaviour could not be read from source the fake says so next to the rule. Line numbers below are
of tag v4.23.0 (``git show v4.23.0:<path>``); "pyhailort.py" is the file named above.

A "HEF" here is a JSON file written by the tests' fake DFC (``fake_dfc``): it names an ONNX
graph, the target architecture and per-stream 8-bit quantization parameters. Inference runs
the ONNX graph with onnxruntime between simulated uint8 asymmetric quantization of every input
and output, so results carry the I/O quantization error a real HEF has (not the error of
8-bit weights and activations inside the network).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import numpy as np

from hailo_platform.pyhailort import _pyhailort

# ----------------------------------------------------------------------------- exceptions
# Same hierarchy as pyhailort.py lines 55-113: every typed error subclasses HailoRTException, which
# derives from Exception only. _pyhailort.HailoRTStatusException is NOT one of them.


class HailoRTException(Exception):
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoRTStreamAborted(HailoRTException):
    pass


class HailoRTInvalidOperationException(HailoRTException):
    pass


class HailoRTInvalidArgumentException(HailoRTException):
    pass


class HailoRTNotFoundException(HailoRTException):
    pass


class HailoRTInvalidHEFException(HailoRTException):
    pass


class HailoRTHEFNotCompatibleWithDevice(HailoRTException):
    pass


class HailoRTDriverOperationFailedException(HailoRTException):
    pass


class HailoRTNetworkGroupNotActivatedException(HailoRTException):
    pass


class HailoRTStreamAbortedByUser(HailoRTException):
    pass


class HailoCommunicationClosedException(HailoRTException):
    pass


# pyhailort.py lines 125-167 (ExceptionWrapper.create_exception_from_status): status name -> typed exception;
# any other status becomes the base class with "libhailort failed with error: N (NAME)".
_TYPED = {
    "HAILO_TIMEOUT": (HailoRTTimeout, "Received a timeout - hailort has failed because a timeout had occurred"),
    "HAILO_STREAM_ABORT": (HailoRTStreamAborted, "Stream was aborted"),
    "HAILO_INVALID_OPERATION": (HailoRTInvalidOperationException,
                                "Invalid operation. See hailort.log for more information"),
    "HAILO_INVALID_ARGUMENT": (HailoRTInvalidArgumentException,
                               "Invalid argument. See hailort.log for more information"),
    "HAILO_NOT_FOUND": (HailoRTNotFoundException, "Item not found. See hailort.log for more information"),
    "HAILO_INVALID_HEF": (HailoRTInvalidHEFException, "Invalid HEF. See hailort.log for more information"),
    "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE": (
        HailoRTHEFNotCompatibleWithDevice,
        "HEF file is not compatible with device. See hailort.log for more information"),
    "HAILO_DRIVER_OPERATION_FAILED": (
        HailoRTDriverOperationFailedException,
        "Failure in hailort driver ioctl. run 'dmesg | grep hailo' for more information"),
}


class ExceptionWrapper:
    """pyhailort.py lines 115-179: a ``_pyhailort.HailoRTStatusException`` raised inside becomes the typed
    exception of its status, chained ``from`` the original; any other exception passes unchanged."""

    def __enter__(self) -> None:
        pass

    def __exit__(self, exception_type: Any, value: BaseException | None, traceback: Any) -> None:
        if value is not None and exception_type is _pyhailort.HailoRTStatusException:
            raise self.create_exception_from_status(int(value.args[0])) from value

    @staticmethod
    def create_exception_from_status(error_code: int) -> HailoRTException:
        name = _pyhailort.get_status_message(error_code)
        if name in _TYPED:
            cls, message = _TYPED[name]
            return cls(message)
        return HailoRTException(f"libhailort failed with error: {error_code} ({name})")


def _fail(status: str) -> None:
    """A C++ call failing with ``status`` (utils.hpp lines 34-59: only the number crosses into Python)."""
    raise _pyhailort.status_error(status)


# ----------------------------------------------------------------------------- enums


class HailoSchedulingAlgorithm(IntEnum):
    NONE = 0
    ROUND_ROBIN = 1


class FormatType(IntEnum):
    AUTO = 0
    UINT8 = 1
    UINT16 = 2
    FLOAT32 = 3


class FormatOrder(IntEnum):
    AUTO = 0
    NHWC = 1
    NC = 2


class DeviceArchitectureTypes(IntEnum):
    HAILO8_A0 = 0
    HAILO8 = 1
    HAILO8L = 2

    def __str__(self) -> str:
        return self.name


_DTYPES = {FormatType.UINT8: np.uint8, FormatType.UINT16: np.uint16, FormatType.FLOAT32: np.float32}
# device_internal.cpp is_hef_compatible(): a Hailo-8 runs hailo8 and hailo8l HEFs, a Hailo-8L only hailo8l.
_COMPATIBLE = {DeviceArchitectureTypes.HAILO8: {"hailo8", "hailo8l"}, DeviceArchitectureTypes.HAILO8L: {"hailo8l"}}


# ----------------------------------------------------------------------------- the fake machine


@dataclass
class FakeSystem:
    """What the tests control: the PCIe devices present, the library version, failures to inject."""

    devices: dict[str, DeviceArchitectureTypes] = field(
        default_factory=lambda: {"0001:01:00.0": DeviceArchitectureTypes.HAILO8L})
    version: str = "4.23.0"  # the hailo8 branch the fake was read from
    scan_failure: str | None = None  # status Device.scan() fails with (e.g. HAILO_DRIVER_INVALID_RESPONSE)
    open_failure: str | None = None  # status opening the driver fails with (e.g. HAILO_INVALID_DRIVER_VERSION)
    queue_size: int = 2  # ConfiguredInferModel.get_async_queue_size(); the real value depends on the HEF
    stall: bool = False  # inference never completes: the job and its callback never finish
    fail_with: str | None = None  # inference completes with this status (reported through completion_info)
    owners: dict[str, list] = field(default_factory=dict)  # device id -> [group id, open VDevices]
    runs: int = 0  # frames inferred, for tests that check batching
    vdevice_params: list[Any] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)  # timeout_ms of every AsyncInferJob.wait()
    ready_waits: list[tuple[int, int]] = field(default_factory=list)  # (timeout_ms, frames_count) per wait
    callback_errors: list[BaseException] = field(default_factory=list)  # see ConfiguredInferModel.run_async

    @property
    def release(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.version.split(".")[:2])

    def reset(self) -> None:
        self.__init__()


SYSTEM = FakeSystem()


# ----------------------------------------------------------------------------- HEF


@dataclass
class QuantInfo:
    qp_zp: float
    qp_scale: float
    limvals_min: float
    limvals_max: float


@dataclass
class HailoFormat:
    type: FormatType
    order: FormatOrder
    flags: int = 0


@dataclass
class _StreamInfo:
    name: str
    shape: tuple[int, ...]  # as InferStream.shape reports it: (H, W, C), or (C,) for NC
    onnx_name: str
    quant: QuantInfo
    normalization: tuple[np.ndarray, np.ndarray] | None = None  # on-chip (mean, std) per channel
    bits: int = 8  # 16 for a layer compiled with precision_mode=a16_w16

    @property
    def order(self) -> FormatOrder:
        return FormatOrder.NC if len(self.shape) == 1 else FormatOrder.NHWC

    @property
    def device_type(self) -> FormatType:
        return FormatType.UINT16 if self.bits == 16 else FormatType.UINT8


class _FakeHef:
    """Parsed fake HEF file; the real library raises HAILO_INVALID_HEF for files it cannot read."""

    def __init__(self, path: str) -> None:
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            _fail("HAILO_OPEN_FILE_FAILURE")  # HEF::create cannot open the file
        except (UnicodeDecodeError, json.JSONDecodeError):
            _fail("HAILO_INVALID_HEF")
        if raw.get("fake_hef_version") != 1:
            _fail("HAILO_INVALID_HEF")
        # A HEF from a newer compiler carries features this runtime does not know. src/hef/hef.cpp
        # Hef::Impl::validate_hef_extensions (lines 460-470) refuses it with HAILO_HEF_NOT_SUPPORTED; v4.18.0
        # (hef.cpp line 412) returned HAILO_INVALID_HEF for the same check. The fake HEF records the HailoRT
        # release its DFC was made for (hailo_model_zoo v2.18 docs/CHANGELOG.rst pairs the two).
        needs = tuple(int(n) for n in str(raw.get("hailort_release", "0.0")).split("."))
        if needs > SYSTEM.release:
            _fail("HAILO_HEF_NOT_SUPPORTED" if SYSTEM.release >= (4, 21) else "HAILO_INVALID_HEF")
        self.path = path
        self.arch: str = raw["arch"]
        self.network_group: str = raw["network_group"]
        onnx_path = Path(raw["onnx"])
        self.onnx_path = onnx_path if onnx_path.is_absolute() else Path(path).parent / onnx_path
        self.inputs = [self._stream(s) for s in raw["inputs"]]
        self.outputs = [self._stream(s) for s in raw["outputs"]]
        self._session = None

    @staticmethod
    def _stream(s: dict[str, Any]) -> _StreamInfo:
        q = s["quant"]
        norm = s.get("normalization")
        return _StreamInfo(s["name"], tuple(s["shape"]), s["onnx_name"],
                           QuantInfo(q["qp_zp"], q["qp_scale"], q["limvals_min"], q["limvals_max"]),
                           None if norm is None else (np.asarray(norm["mean"], np.float32),
                                                     np.asarray(norm["std"], np.float32)), s.get("bits", 8))

    def session(self):
        if self._session is None:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self._session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        return self._session

    def compute(self, quantized_inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """uint8 device inputs → uint8 device outputs: dequantize, (normalize), ONNX, quantize."""
        session = self.session()
        onnx_shapes = {i.name: i.shape for i in session.get_inputs()}
        feed = {}
        for info in self.inputs:
            x = (quantized_inputs[info.name].astype(np.float32) - info.quant.qp_zp) * info.quant.qp_scale
            if info.normalization is not None:
                mean, std = info.normalization
                x = (x - mean) / std
            target = onnx_shapes[info.onnx_name]
            if len(info.shape) == 3 and len(target) == 4:
                x = x.transpose(2, 0, 1)  # the device is NHWC; the ONNX graph NCHW
            feed[info.onnx_name] = np.ascontiguousarray(x.reshape(target), dtype=np.float32)
        results = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed), strict=True))
        out = {}
        for info in self.outputs:
            y = results[info.onnx_name]
            if len(info.shape) == 3 and y.ndim == 4:
                y = y[0].transpose(1, 2, 0)
            q = np.rint(y.reshape(info.shape) / info.quant.qp_scale + info.quant.qp_zp)
            out[info.name] = np.clip(q, 0, 2 ** info.bits - 1).astype(_DTYPES[info.device_type])
        return out


class HEF:
    def __init__(self, hef_source: str) -> None:
        if not isinstance(hef_source, str):
            raise ValueError("HEF can only be created from a file path (str) or a buffer (bytes)")
        with ExceptionWrapper():
            self._hef = _FakeHef(hef_source)
        self._path = hef_source

    @property
    def path(self) -> str:
        return self._path

    def get_network_group_names(self) -> list[str]:
        return [self._hef.network_group]


# ----------------------------------------------------------------------------- Device


class BoardInformation:
    def __init__(self, device_architecture: DeviceArchitectureTypes) -> None:
        self.device_architecture = device_architecture


class Control:
    def __init__(self, device_id: str) -> None:
        self._device_id = device_id
        self._identify_info = self.identify()  # pyhailort.py Control.__init__ identifies at once

    def identify(self) -> BoardInformation:
        with ExceptionWrapper():  # pyhailort.py lines 2154-2161
            return BoardInformation(SYSTEM.devices[self._device_id])


def _open_driver(device_id: str) -> None:
    """Device::create → HailoRTDriver::create: the driver refuses a library of another version
    (src/vdma/driver/hailort_driver.cpp lines 203-231: HAILO_INVALID_DRIVER_VERSION, "Driver version
    (...) is different from library version (...)"), or fails with whatever ``SYSTEM.open_failure`` says."""
    if SYSTEM.open_failure is not None:
        _fail(SYSTEM.open_failure)
    if device_id not in SYSTEM.devices:
        _fail("HAILO_NOT_FOUND")  # approximation: the status for an unknown id was not read from source


class Device:
    @classmethod
    def scan(cls) -> list[str]:
        # pyhailort.py lines 2537-2544: _pyhailort.Device.scan() is called OUTSIDE ExceptionWrapper, so a
        # failure surfaces as the raw _pyhailort.HailoRTStatusException (device_api.cpp lines 19-24).
        if SYSTEM.scan_failure is not None:
            _fail(SYSTEM.scan_failure)
        return list(SYSTEM.devices)

    def __init__(self, device_id: str | None = None) -> None:
        if device_id is None:
            ids = Device.scan()
            if not ids:
                raise HailoRTException("HailoRT device not found in the system")  # pyhailort.py line 2564
            device_id = ids[0]
        # pyhailort.py line 2568: _pyhailort.Device.create() is also outside ExceptionWrapper (raw status).
        _open_driver(device_id)
        self._device_id = device_id
        self._control_object = Control(device_id)

    @property
    def device_id(self) -> str:
        return self._device_id

    @property
    def control(self) -> Control:
        return self._control_object

    def release(self) -> None:
        pass

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *args: Any) -> bool:
        self.release()
        return False


# ----------------------------------------------------------------------------- VDevice


@dataclass
class VDeviceParams:
    # pyhailort.cpp VDeviceParams.default(): the Python default is HAILO_SCHEDULING_ALGORITHM_NONE.
    scheduling_algorithm: HailoSchedulingAlgorithm = HailoSchedulingAlgorithm.NONE
    group_id: str = "UNIQUE"
    multi_process_service: bool = False
    device_count: int = 1


class VDevice:
    def __init__(self, params: VDeviceParams | None = None, *, device_ids: list[str] | None = None) -> None:
        self._vdevice = None
        self._params = params or VDevice.create_params()
        SYSTEM.vdevice_params.append(self._params)
        # vdevice.cpp create_devices() lines 825-867: devices already in use (mark_as_used →
        # HAILO_DEVICE_IN_USE) are skipped; too few left → HAILO_OUT_OF_PHYSICAL_DEVICES, which pyhailort
        # raises as the base HailoRTException. A shared group id (not "UNIQUE") attaches to the VDevice
        # already holding the device.
        group = self._params.group_id

        def free(device: str) -> bool:
            holder = SYSTEM.owners.get(device)
            return holder is None or (group != "UNIQUE" and holder[0] == group)

        with ExceptionWrapper():  # pyhailort.py lines 3535-3540: VDevice creation IS wrapped
            for device in device_ids or SYSTEM.devices:
                _open_driver(device)  # vdevice.cpp line 836: Device::create for each candidate
            candidates = [d for d in (device_ids or SYSTEM.devices) if free(d)]
            if len(candidates) < self._params.device_count:
                _fail("HAILO_OUT_OF_PHYSICAL_DEVICES")
        self._device_id = candidates[0]
        holder = SYSTEM.owners.setdefault(self._device_id, [group, 0])
        holder[1] += 1
        self._vdevice = self._device_id

    @staticmethod
    def create_params() -> VDeviceParams:
        return VDeviceParams()

    def get_physical_devices_ids(self) -> list[str]:
        return [self._device_id]

    def create_infer_model(self, hef_source: str, name: str = "") -> InferModel:
        if self._vdevice is None:
            raise HailoRTException("VDevice was released")
        with ExceptionWrapper():  # pyhailort.py lines 3620-3626
            return InferModel(_FakeHef(hef_source), self)

    def release(self) -> None:
        if self._vdevice is not None:
            holder = SYSTEM.owners[self._device_id]
            holder[1] -= 1
            if holder[1] == 0:
                del SYSTEM.owners[self._device_id]
            self._vdevice = None

    def __enter__(self) -> VDevice:
        return self

    def __exit__(self, *args: Any) -> bool:
        self.release()
        return False


# ----------------------------------------------------------------------------- InferModel


class InferModel:
    class InferStream:
        def __init__(self, info: _StreamInfo, fmt: HailoFormat) -> None:
            self._info = info
            self._format = fmt

        @property
        def name(self) -> str:
            return self._info.name

        @property
        def shape(self) -> list[int]:
            # bindings_common.hpp get_pybind_shape(): [h, w, features], or [features] for NC.
            return list(self._info.shape)

        @property
        def format(self) -> HailoFormat:
            return self._format

        def set_format_type(self, type: FormatType) -> None:  # "type": the real parameter name
            if not isinstance(type, FormatType):
                raise TypeError(f"set_format_type(): incompatible function arguments: {type!r}")
            self._format.type = self._info.device_type if type is FormatType.AUTO else type

        @property
        def quant_infos(self) -> list[QuantInfo]:
            return [self._info.quant]

    def __init__(self, hef: _FakeHef, vdevice: VDevice) -> None:
        self._hef = hef
        self._vdevice = vdevice
        # The default user buffer format is the device's: UINT8 ("AUTO ... usually UINT8"), UINT16 for 16-bit layers.
        self._formats = {s.name: HailoFormat(s.device_type, s.order) for s in (*hef.inputs, *hef.outputs)}
        self._batch_size = 0

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self._hef.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self._hef.outputs]

    @property
    def inputs(self) -> list[InferModel.InferStream]:
        return [self.InferStream(s, self._formats[s.name]) for s in self._hef.inputs]

    @property
    def outputs(self) -> list[InferModel.InferStream]:
        return [self.InferStream(s, self._formats[s.name]) for s in self._hef.outputs]

    def _stream(self, streams: list[_StreamInfo], name: str, kind: str) -> InferModel.InferStream:
        if name == "":
            # infer_model.cpp InferModelBase::input(): "Model has more than one input!" (HAILO_INVALID_OPERATION)
            if len(streams) != 1:
                raise HailoRTInvalidOperationException("Invalid operation. See hailort.log for more information")
            name = streams[0].name
        for s in streams:
            if s.name == name:
                return self.InferStream(s, self._formats[name])
        raise HailoRTNotFoundException(f"Item not found. See hailort.log for more information ({kind} {name})")

    def input(self, name: str = "") -> InferModel.InferStream:
        return self._stream(self._hef.inputs, name, "input")

    def output(self, name: str = "") -> InferModel.InferStream:
        return self._stream(self._hef.outputs, name, "output")

    def set_batch_size(self, batch_size: int) -> None:
        self._batch_size = batch_size

    def configure(self) -> ConfiguredInferModel:
        with ExceptionWrapper():  # pyhailort.py lines 2869-2871
            device_arch = SYSTEM.devices[self._vdevice._device_id]
            if self._hef.arch not in _COMPATIBLE.get(device_arch, set()):
                # HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE exists since 4.21; before, the same check returned
                # HAILO_INVALID_HEF (v4.18.0 device_internal.cpp check_hef_is_compatible).
                _fail("HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE" if SYSTEM.release >= (4, 21) else "HAILO_INVALID_HEF")
            # Approximation (not read from source): a UINT8 user buffer for a 16-bit output is refused.
            if any(s.bits == 16 and self._formats[s.name].type is FormatType.UINT8 for s in self._hef.outputs):
                _fail("HAILO_INVALID_ARGUMENT")
            # src/net_flow/pipeline/infer_model.cpp lines 333-337: batch bigger than the internal queue.
            if self._batch_size > SYSTEM.queue_size:
                _fail("HAILO_INVALID_OPERATION")
            self._hef.session()  # the network is loaded at configure, as on a device, not at the first frame
            return ConfiguredInferModel(self)


# ----------------------------------------------------------------------------- ConfiguredInferModel


class AsyncInferCompletionInfo:
    def __init__(self, exception: Exception | None) -> None:
        self._exception = exception

    @property
    def exception(self) -> Exception | None:
        return self._exception


class AsyncInferJob:
    """One ``run_async`` call: ``job_done`` when every frame finished, ``callback_done`` after the callback."""

    def __init__(self, job_done: threading.Event, callback_done: threading.Event) -> None:
        self._job_done = job_done
        self._callback_done = callback_done

    def wait(self, timeout_ms: int) -> None:
        # bindings/python/src/infer_model_api.cpp lines 411-419 (AsyncInferJobWrapper::wait): first the job,
        # then the callback, each with the full timeout ("TODO: currently waiting for 2 TIMEOUT (worst
        # case)"), so one wait can last 2 x timeout_ms. Each part that runs out raises HAILO_TIMEOUT.
        # The inference's own status is NOT raised here: infer_model.cpp lines 1061-1070 only wait for the
        # callback to have been called; the error reaches the caller through completion_info alone.
        SYSTEM.waits.append(timeout_ms)
        with ExceptionWrapper():
            for event in (self._job_done, self._callback_done):
                if not event.wait(timeout_ms / 1000.0):
                    _fail("HAILO_TIMEOUT")


class ConfiguredInferModel:
    class Bindings:
        class InferStream:
            def __init__(self, info: _StreamInfo, fmt: FormatType) -> None:
                self._info = info
                self._type = fmt
                self._buffer: np.ndarray | None = None

            def set_buffer(self, buffer: np.ndarray) -> None:
                # pyhailort.py _validate_c_contiguous, since 4.19 (4.18 silently reads such a buffer wrong)
                if not buffer.flags.c_contiguous:
                    raise HailoRTException("Buffer must be C_CONTIGUOUS")
                self._buffer = buffer

            def get_buffer(self, tf_format: bool | None = False) -> np.ndarray | None:
                return self._buffer

        def __init__(self, model: ConfiguredInferModel) -> None:
            self._model = model
            self._inputs = {s.name: self.InferStream(s, model._formats[s.name]) for s in model._hef.inputs}
            self._outputs = {s.name: self.InferStream(s, model._formats[s.name]) for s in model._hef.outputs}

        def _get(self, streams: dict[str, Any], name: str) -> ConfiguredInferModel.Bindings.InferStream:
            if name == "" and len(streams) == 1:
                name = next(iter(streams))
            if name not in streams:
                raise HailoRTNotFoundException("Item not found. See hailort.log for more information")
            return streams[name]

        def input(self, name: str = "") -> ConfiguredInferModel.Bindings.InferStream:
            return self._get(self._inputs, name)

        def output(self, name: str = "") -> ConfiguredInferModel.Bindings.InferStream:
            return self._get(self._outputs, name)

    def __init__(self, model: InferModel) -> None:
        self._configured_infer_model = model
        self._hef = model._hef
        # configure() captures the formats: set_format_type() on the InferModel afterwards has no effect.
        self._formats = {name: f.type for name, f in model._formats.items()}
        self._scheduled = model._vdevice._params.scheduling_algorithm != HailoSchedulingAlgorithm.NONE
        self._active = False
        self._buffer_guards: deque = deque()
        self._pending = 0  # frames queued and not yet completed
        self._aborted = False  # after shutdown() or a failed run_async: the pipeline is shut down
        self._changed = threading.Condition()

    def __enter__(self) -> ConfiguredInferModel:
        return self

    def __exit__(self, *args: Any) -> None:
        self._configured_infer_model = None

    def _check_open(self) -> None:
        if self._configured_infer_model is None:  # the real object's C++ handle is None after __exit__
            raise AttributeError("'NoneType' object has no attribute 'run_async'")

    def activate(self) -> None:
        # core_op.cpp: "Manually activate a core-op is not allowed when the core-op scheduler is active!"
        if self._scheduled:
            raise HailoRTInvalidOperationException("Invalid operation. See hailort.log for more information")
        self._active = True

    def deactivate(self) -> None:
        if self._scheduled:
            raise HailoRTInvalidOperationException("Invalid operation. See hailort.log for more information")
        self._active = False

    def create_bindings(self, input_buffers: dict[str, np.ndarray] | None = None,
                        output_buffers: dict[str, np.ndarray] | None = None) -> ConfiguredInferModel.Bindings:
        self._check_open()
        bindings = self.Bindings(self)
        for name, buffer in (input_buffers or {}).items():
            bindings.input(name).set_buffer(buffer)
        for name, buffer in (output_buffers or {}).items():
            bindings.output(name).set_buffer(buffer)
        return bindings

    def _validate(self, stream: ConfiguredInferModel.Bindings.InferStream, kind: str) -> np.ndarray:
        # infer_model.cpp validate_bindings(): the byte size must equal the frame size of the current
        # format type (HAILO_INVALID_OPERATION). The real library checks bytes only; the fake is stricter
        # and also requires the stream's shape (no batch dimension) and the format's dtype, so layout
        # bugs that keep the byte count (NCHW vs NHWC, a batch dim of 1) fail here instead of silently.
        info, buffer = stream._info, stream._buffer
        if buffer is None:
            raise HailoRTNotFoundException(f"Couldnt find {kind} buffer for '{info.name}'")
        dtype = _DTYPES[stream._type]
        expected = int(np.prod(info.shape)) * np.dtype(dtype).itemsize
        if buffer.nbytes != expected:
            raise HailoRTInvalidOperationException(
                f"{kind.capitalize()} buffer size {buffer.nbytes} is different than expected {expected} "
                f"for {kind} '{info.name}'")
        if tuple(buffer.shape) != info.shape or buffer.dtype != dtype:
            raise HailoRTInvalidOperationException(
                f"fake: {kind} '{info.name}' buffer is {buffer.dtype}{tuple(buffer.shape)}, "
                f"stream is {np.dtype(dtype)}{info.shape}")
        return buffer

    def _infer_one(self, bindings: ConfiguredInferModel.Bindings) -> None:
        quantized = {}
        for name, stream in bindings._inputs.items():
            buffer, q = stream._buffer, stream._info.quant
            if stream._type is FormatType.FLOAT32:  # host-side quantization, as HailoRT's transform does
                buffer = np.clip(np.rint(buffer / q.qp_scale + q.qp_zp), 0, 255)
            quantized[name] = np.asarray(buffer).astype(np.uint8)
        results = self._hef.compute(quantized)
        for name, stream in bindings._outputs.items():
            q = stream._info.quant
            if stream._type is FormatType.FLOAT32:
                stream._buffer[...] = (results[name].astype(np.float32) - q.qp_zp) * q.qp_scale
            else:
                stream._buffer[...] = results[name]
        SYSTEM.runs += 1

    def get_async_queue_size(self) -> int:
        # infer_model.cpp lines 998-1001 → CoreOp::infer_queue_size (core_op.cpp lines 406-420): the smallest
        # async queue of the HEF's streams. Not a constant; the fake takes it from SYSTEM.queue_size.
        return SYSTEM.queue_size

    def wait_for_async_ready(self, timeout_ms: int = 1000, frames_count: int = 1) -> None:
        # infer_model.cpp lines 815-837: block until the pipeline can take frames_count more frames, else
        # HAILO_TIMEOUT. pyhailort.py lines 3267-3286: frames_count > get_async_queue_size() always times out.
        SYSTEM.ready_waits.append((timeout_ms, frames_count))
        with ExceptionWrapper(), self._changed:
            if not self._changed.wait_for(lambda: self._aborted or self._pending + frames_count <= SYSTEM.queue_size,
                                          timeout_ms / 1000.0):
                _fail("HAILO_TIMEOUT")
            if self._aborted:  # approximation: can_push_buffers on a shut-down pipeline was not read
                _fail("HAILO_STREAM_ABORT")

    def run_async(self, bindings: list[ConfiguredInferModel.Bindings], callback: Any = None) -> AsyncInferJob:
        self._check_open()
        if not self._scheduled and not self._active:  # approximation: real behaviour without activation unread
            raise HailoRTNetworkGroupNotActivatedException("Network group is not activated")
        for b in bindings:
            for stream in b._inputs.values():
                self._validate(stream, "input")
            for stream in b._outputs.values():
                self._validate(stream, "output")
        with ExceptionWrapper(), self._changed:
            # async_infer_runner.cpp lines 282-289: a shut-down pipeline refuses (its status, STREAM_ABORT after
            # abort(), lines 216-222); each binding takes one queue slot (infer_model.cpp lines 632-656 call
            # run_async per binding) and a full queue is HAILO_QUEUE_IS_FULL — run_async does not wait.
            # infer_model.cpp lines 590-600: any run_async failure shuts the configured model down.
            if self._aborted:
                _fail("HAILO_STREAM_ABORT")
            if self._pending + len(bindings) > SYSTEM.queue_size:
                self._aborted = True
                _fail("HAILO_QUEUE_IS_FULL")
            self._pending += len(bindings)
        job_done, callback_done = threading.Event(), threading.Event()

        def work() -> None:
            status = None
            if SYSTEM.stall:
                return  # never completes: the frames keep their queue slots
            if SYSTEM.fail_with is not None:
                status = SYSTEM.fail_with
            else:
                for b in bindings:
                    self._infer_one(b)
            with self._changed:
                self._pending -= len(bindings)
                if status is not None:  # pyhailort.py run_async docstring: "In case of an error, the pipeline
                    self._aborted = True  # will be shut down."
                self._changed.notify_all()
            job_done.set()
            error = None if status is None else ExceptionWrapper.create_exception_from_status(
                int(_pyhailort.status_error(status).args[0]))
            try:
                # pyhailort.py lines 3341-3348: callback(completion_info=AsyncInferCompletionInfo(exception)).
                if callback is not None:
                    callback(completion_info=AsyncInferCompletionInfo(error))
            except BaseException as exc:
                # infer_model_api.cpp lines 254-258 and 378-409: the callback runs on a C++ worker thread with
                # no handler; an exception escaping it terminates the process and the job is never marked
                # done. The fake records it (tests require none) and leaves callback_done unset.
                SYSTEM.callback_errors.append(exc)
                return
            callback_done.set()

        threading.Thread(target=work, daemon=True).start()
        return AsyncInferJob(job_done, callback_done)

    def run(self, bindings: list[ConfiguredInferModel.Bindings], timeout: int) -> None:
        # pyhailort.py lines 3288-3303: run_async, then wait — without wait_for_async_ready first.
        self.run_async(bindings).wait(timeout)

    def shutdown(self) -> None:
        with self._changed:
            self._aborted = True
            self._changed.notify_all()
        self._configured_infer_model = None
