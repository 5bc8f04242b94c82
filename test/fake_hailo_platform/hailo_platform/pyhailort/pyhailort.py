"""A computing fake of the slice of HailoRT's Python API (``hailo_platform``) that act_policy uses.

Test-only. Names, signatures and the rules below follow HailoRT's Python binding, read from
hailo-ai/hailort branch ``hailo8`` (v4.23.0) and tag v4.18.0:
``hailort/libhailort/bindings/python/platform/hailo_platform/pyhailort/pyhailort.py``,
``hailort/libhailort/bindings/python/src/{pyhailort.cpp,infer_model_api.cpp,bindings_common.hpp}``,
``hailort/libhailort/src/net_flow/pipeline/infer_model.cpp``, ``src/core_op/core_op.cpp``,
``src/vdevice/vdevice.cpp``, ``src/device_common/device_internal.cpp``. Where the real library's
behaviour could not be read from source the fake says so next to the rule.

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

# ----------------------------------------------------------------------------- exceptions
# Same hierarchy as pyhailort.py: every typed error subclasses HailoRTException.


class HailoRTException(Exception):
    pass


class HailoRTTimeout(HailoRTException):
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


class HailoRTNetworkGroupNotActivatedException(HailoRTException):
    pass


class HailoRTStreamAbortedByUser(HailoRTException):
    pass


class HailoCommunicationClosedException(HailoRTException):
    pass


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
    stall: bool = False  # inference never completes: run() / job.wait() time out
    fail_with: str | None = None  # inference completes with this error (reported through completion_info)
    owners: dict[str, list] = field(default_factory=dict)  # device id -> [group id, open VDevices]
    runs: int = 0  # frames inferred, for tests that check batching
    vdevice_params: list[Any] = field(default_factory=list)

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

    @property
    def order(self) -> FormatOrder:
        return FormatOrder.NC if len(self.shape) == 1 else FormatOrder.NHWC


class _FakeHef:
    """Parsed fake HEF file; the real library raises HAILO_INVALID_HEF for files it cannot read."""

    def __init__(self, path: str) -> None:
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            # HEF::create fails with HAILO_OPEN_FILE_FAILURE, which pyhailort maps to the base class.
            raise HailoRTException(f"libhailort failed with error: 13 (HAILO_OPEN_FILE_FAILURE) {path}") from None
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise HailoRTInvalidHEFException("Invalid HEF. See hailort.log for more information") from None
        if raw.get("fake_hef_version") != 1:
            raise HailoRTInvalidHEFException("Invalid HEF. See hailort.log for more information")
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
                                                     np.asarray(norm["std"], np.float32)))

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
            out[info.name] = np.clip(q, 0, 255).astype(np.uint8)
        return out


class HEF:
    def __init__(self, hef_source: str) -> None:
        if not isinstance(hef_source, str):
            raise ValueError("HEF can only be created from a file path (str) or a buffer (bytes)")
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

    def identify(self) -> BoardInformation:
        return BoardInformation(SYSTEM.devices[self._device_id])


class Device:
    @classmethod
    def scan(cls) -> list[str]:
        return list(SYSTEM.devices)

    def __init__(self, device_id: str | None = None) -> None:
        if device_id is None:
            ids = Device.scan()
            if not ids:
                raise HailoRTException("HailoRT device not found in the system")
            device_id = ids[0]
        if device_id not in SYSTEM.devices:
            raise HailoRTNotFoundException("Item not found. See hailort.log for more information")
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
        # vdevice.cpp create_devices(): devices already used by another VDevice are skipped; too few left →
        # HAILO_OUT_OF_PHYSICAL_DEVICES, which pyhailort raises as the base HailoRTException. A shared
        # group id (not "UNIQUE") attaches to the VDevice already holding the device.
        group = self._params.group_id

        def free(device: str) -> bool:
            holder = SYSTEM.owners.get(device)
            return holder is None or (group != "UNIQUE" and holder[0] == group)

        candidates = [d for d in (device_ids or SYSTEM.devices) if d in SYSTEM.devices and free(d)]
        if len(candidates) < self._params.device_count:
            raise HailoRTException("libhailort failed with error: 74 (HAILO_OUT_OF_PHYSICAL_DEVICES)")
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
            self._format.type = FormatType.UINT8 if type is FormatType.AUTO else type

        @property
        def quant_infos(self) -> list[QuantInfo]:
            return [self._info.quant]

    def __init__(self, hef: _FakeHef, vdevice: VDevice) -> None:
        self._hef = hef
        self._vdevice = vdevice
        # The default user buffer format is the device's: UINT8 ("AUTO ... usually UINT8").
        self._formats = {s.name: HailoFormat(FormatType.UINT8, s.order) for s in (*hef.inputs, *hef.outputs)}
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
        device_arch = SYSTEM.devices[self._vdevice._device_id]
        if self._hef.arch not in _COMPATIBLE.get(device_arch, set()):
            # HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE and its exception class exist since 4.21; before, the
            # same check returned HAILO_INVALID_HEF (v4.18.0 device_internal.cpp check_hef_is_compatible).
            if tuple(int(n) for n in SYSTEM.version.split(".")[:2]) < (4, 21):
                raise HailoRTInvalidHEFException("Invalid HEF. See hailort.log for more information")
            raise HailoRTHEFNotCompatibleWithDevice(
                "HEF file is not compatible with device. See hailort.log for more information")
        return ConfiguredInferModel(self)


# ----------------------------------------------------------------------------- ConfiguredInferModel


class AsyncInferCompletionInfo:
    def __init__(self, exception: Exception | None) -> None:
        self._exception = exception

    @property
    def exception(self) -> Exception | None:
        return self._exception


class AsyncInferJob:
    def __init__(self, thread: threading.Thread, state: dict[str, Any]) -> None:
        self._thread = thread
        self._state = state

    def wait(self, timeout_ms: int) -> None:
        if SYSTEM.stall:
            raise HailoRTTimeout("Received a timeout - hailort has failed because a timeout had occurred")
        self._thread.join(timeout_ms / 1000.0)
        if self._thread.is_alive():
            raise HailoRTTimeout("Received a timeout - hailort has failed because a timeout had occurred")
        if self._state.get("error") is not None:
            raise self._state["error"]


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
        if SYSTEM.fail_with is not None:
            raise RuntimeError(SYSTEM.fail_with)
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

    def run_async(self, bindings: list[ConfiguredInferModel.Bindings], callback: Any = None) -> AsyncInferJob:
        self._check_open()
        if not self._scheduled and not self._active:  # approximation: real behaviour without activation unread
            raise HailoRTNetworkGroupNotActivatedException("Network group is not activated")
        for b in bindings:
            for stream in b._inputs.values():
                self._validate(stream, "input")
            for stream in b._outputs.values():
                self._validate(stream, "output")
        state: dict[str, Any] = {}

        def work() -> None:
            error = None
            if not SYSTEM.stall:
                try:
                    for b in bindings:
                        self._infer_one(b)
                except Exception as exc:
                    error = HailoRTException(f"fake inference failed: {exc}")
            try:
                if callback is not None:  # pyhailort.py: "The callback must accept a 'completion_info' keyword"
                    callback(completion_info=AsyncInferCompletionInfo(error))
            except Exception as exc:
                state["error"] = exc
            state.setdefault("error", error)

        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        return AsyncInferJob(thread, state)

    def run(self, bindings: list[ConfiguredInferModel.Bindings], timeout: int) -> None:
        self.run_async(bindings).wait(timeout)

    def wait_for_async_ready(self, timeout_ms: int = 1000, frames_count: int = 1) -> None:
        if SYSTEM.stall:
            raise HailoRTTimeout("Received a timeout - hailort has failed because a timeout had occurred")

    def shutdown(self) -> None:
        self._configured_infer_model = None
