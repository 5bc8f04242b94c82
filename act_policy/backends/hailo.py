"""``hailo``: the policy on a Hailo-8L / Hailo-8 NPU through HailoRT's InferModel API (HailoRT ≥ 4.18).

Modes (``BackendOptions.extra["mode"]``):

* ``hybrid`` (default): each camera's ResNet backbone runs on the NPU from a backbone HEF compiled
  with the kit (``act-policy hailo-prepare``); the transformer head runs on the CPU with
  onnxruntime, from the bundle's ``head_int8.onnx`` (written by ``act-policy quantize``) or
  ``head.onnx`` (option ``head``: ``int8`` or ``fp32``; default int8 when the bundle has it).
  Convolutions are what the NPU does best, and a LayerNorm/attention graph that the Dataflow
  Compiler cannot parse never blocks deployment.
* ``full``: the whole network from one HEF (``act_full.hef``), for users whose DFC compiled it.

Other options (all in ``extra``): ``hef`` (a path, or ``{backbone group, camera name or
"full": path}``; default ``<bundle>/hailo/<name>.hef``), ``timeout_ms`` (1000),
``output_format`` (``float32``: HailoRT dequantizes; ``uint8``: we dequantize with
``qp_scale``/``qp_zp``), ``group_id`` (``"SHARED"``: VDevices with the same id share the chip
through the ROUND_ROBIN scheduler), ``multi_process`` (through the ``hailort`` service, so
several processes can share the device),
``fallback_backend`` (e.g. ``cpu_int8``, used with a loud warning whenever HailoRT, the driver,
the device, or HailoRT's loading and configuring of the HEF fails — whatever exception HailoRT
raised; a deployment that does not belong to this policy — a missing HEF, or one compiled from
another bundle or resolution — always raises).

HailoRT's async rules, which this backend follows (hailo-ai/hailort v4.23.0, cited in
``test/fake_hailo_platform``): ``run_async`` fails with HAILO_QUEUE_IS_FULL — and shuts the
configured model down — when the model's async queue (``get_async_queue_size()``) is full, so every
batch is preceded by ``wait_for_async_ready``; ``AsyncInferJob.wait`` never raises the inference's
error (it arrives only in the callback's ``completion_info``) and may take twice its timeout (it
waits for the job, then for the callback), so it is given half of what is left of ``timeout_ms``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np

from act_policy.backends.base import Backend, BackendOptions, ModelInputs, no_spinning
from act_policy.core.artifacts import PolicyArtifacts
from act_policy.core.errors import BackendError, BackendOptionsError
from act_policy.hailo.hailort_status import explain
from act_policy.hailo.layout import (
    FULL_MODEL,
    HAILORT_OF_DFC,
    SIDECAR_SUFFIX,
    BackboneGroup,
    backbone_groups,
    default_hef,
    release,
)

log = logging.getLogger(__name__)

MIN_HAILORT = (4, 18)
MODES = ("hybrid", "full")
OPTIONS = {"mode", "hef", "head", "timeout_ms", "output_format", "group_id", "multi_process", "fallback_backend"}
HEADS = ("int8", "fp32")
# The HEF's input range must cover camera pixels; a HEF compiled without on-chip normalization
# (calibrated on normalized values) can represent only a few units and is rejected.
MIN_PIXEL_RANGE = 200.0
MONITOR_HINT = ("`hailortcli monitor` shows the device's load only while the inferring process runs with "
                "HAILO_MONITOR=1 in its environment (with multi_process: in /etc/default/hailort_service)")
T = TypeVar("T")


class NpuUnavailable(BackendError):
    """HailoRT, its driver or the device is missing, mismatched or busy, or HailoRT refused to load or
    configure the HEF: the cases a fallback backend may take over."""


def _hailort(what: str, call: Callable[..., T], *args: Any) -> T:
    """``call(*args)``; any failure, whatever its type (HailoRT raises bare status numbers too), becomes
    :class:`NpuUnavailable` naming ``what``, the status and, for known statuses, the fix."""
    try:
        return call(*args)
    except Exception as exc:
        raise NpuUnavailable(f"{what} failed: {explain(exc)}") from exc


@dataclass(frozen=True)
class HailoSettings:
    mode: str = "hybrid"
    hef: str | Mapping[str, str] | None = None
    head: str | None = None  # hybrid only; None: int8 when the bundle has head_int8.onnx, else fp32
    timeout_ms: int = 1000
    output_format: str = "float32"
    group_id: str = "SHARED"
    multi_process: bool = False
    fallback_backend: str | None = None

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> HailoSettings:
        unknown = set(extra) - OPTIONS
        if unknown:
            raise BackendOptionsError(f"hailo backend: unknown option(s) {sorted(unknown)}; allowed: {sorted(OPTIONS)}")
        settings = cls(**dict(extra))
        if settings.mode not in MODES:
            raise BackendError(f"hailo backend: mode {settings.mode!r}; expected one of {MODES}")
        if settings.head is not None and settings.head not in HEADS:
            raise BackendError(f"hailo backend: head {settings.head!r}; expected one of {HEADS} (the CPU part of "
                               "hybrid mode: head_int8.onnx or head.onnx)")
        if settings.head is not None and settings.mode != "hybrid":
            raise BackendError(f"hailo backend: option head applies to mode=hybrid only (mode is {settings.mode!r}: "
                               "the whole network runs on the NPU)")
        if settings.output_format not in ("float32", "uint8"):
            raise BackendError(f"hailo backend: output_format {settings.output_format!r}; expected float32 or uint8")
        if not isinstance(settings.timeout_ms, int) or settings.timeout_ms <= 0:
            raise BackendError(f"hailo backend: timeout_ms must be a positive integer, got {settings.timeout_ms!r}")
        if settings.fallback_backend == "hailo":
            raise BackendError("hailo backend: fallback_backend cannot be 'hailo' itself")
        return settings


def import_hailort() -> ModuleType:
    """``hailo_platform``, checked to be new enough for the InferModel API."""
    try:
        import hailo_platform
    # Besides ImportError, hailo_platform raises its own MissingPyHRTLib (an Exception) when its compiled
    # library was built for another CPython version than the running one.
    except Exception as exc:
        raise NpuUnavailable(
            f"HailoRT's Python package 'hailo_platform' is not importable ({type(exc).__name__}: {exc}). Raspberry "
            "Pi OS: `sudo apt install hailo-all`, then create the venv with the system Python it was built for: "
            "`python3 -m venv --system-site-packages`. Ubuntu 24.04: install the hailort wheel for this Python "
            "(cp312) of the same release as the installed hailort .deb into the venv (docs/hailo.md)")
    version = str(getattr(hailo_platform, "__version__", "unknown"))
    if (release(version) or (0, 0)) < MIN_HAILORT or not hasattr(hailo_platform.VDevice, "create_infer_model"):
        raise NpuUnavailable(f"HailoRT {version} is too old: the hailo backend needs ≥ "
                             f"{'.'.join(map(str, MIN_HAILORT))} (InferModel API); update HailoRT, its driver and "
                             "its Python binding together (Raspberry Pi OS: `sudo apt update && sudo apt "
                             "full-upgrade`, package hailo-all; Ubuntu: Hailo's .deb packages and wheel)")
    return hailo_platform


class HailoDevice:
    """The chip as a VDevice with the ROUND_ROBIN scheduler: other models (and, through the hailort
    service, other processes) can share it."""

    def __init__(self, hailort: ModuleType, group_id: str, multi_process: bool) -> None:
        self.hailort = hailort
        self.version = release(str(getattr(hailort, "__version__", ""))) or (0, 0)
        ids = _hailort("scanning for Hailo devices (Device.scan())", hailort.Device.scan)
        if not ids:
            raise NpuUnavailable(
                "no Hailo device found (Device.scan() is empty): check `lspci | grep -i hailo`, "
                "`hailortcli fw-control identify`, `dmesg | grep -i hailo` (driver hailo_pci); on the AI Kit "
                "set `dtparam=pciex1_gen=3` in /boot/firmware/config.txt")
        self.device_id = ids[0]
        self.arch = self._identify(self.device_id)
        params = hailort.VDevice.create_params()
        params.scheduling_algorithm = hailort.HailoSchedulingAlgorithm.ROUND_ROBIN
        params.group_id = group_id
        if multi_process:
            params.multi_process_service = True
        self.vdevice = _hailort(f"opening Hailo device {self.device_id} ({self.arch}) as a VDevice",
                                hailort.VDevice, params)

    def _identify(self, device_id: str) -> str:
        # Only for messages and the sidecar's architecture check: if HailoRT cannot open the device, the
        # VDevice below fails too, with the status that decides the fallback.
        try:
            with self.hailort.Device(device_id) as device:
                return str(device.control.identify().device_architecture)
        except Exception as exc:  # Device(...) raises bare _pyhailort.HailoRTStatusException, among others
            log.warning("could not identify Hailo device %s: %s", device_id, explain(exc))
            return "unknown architecture"

    def close(self) -> None:
        self.vdevice.release()


@dataclass
class _Job:
    """One inference of one HEF: its bindings (they own the buffers), HailoRT's job handles (one per
    queue-sized chunk), the errors the callbacks reported, and the deadline (``time.monotonic()``)."""

    deadline: float
    bindings: list[Any] = field(default_factory=list)
    handles: list[Any] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)

    def remaining_ms(self) -> int:
        return max(1, int((self.deadline - time.monotonic()) * 1000))


@dataclass
class _Stream:
    name: str
    shape: tuple[int, ...]
    float_io: bool  # FLOAT32 user buffers (HailoRT quantizes / dequantizes on the host)
    scale: float
    zero_point: float


class HefModel:
    """One configured HEF: user formats, shape checks, batched inference within ``timeout_ms``."""

    def __init__(self, device: HailoDevice, path: Path, timeout_ms: int, source_sha256: str | None) -> None:
        self.path = path
        self.timeout_ms = timeout_ms
        _check_hef_file(path, device, source_sha256)
        self.infer_model = _hailort(f"{path}: loading the HEF", device.vdevice.create_infer_model, str(path))
        _hailort(f"{path}: set_batch_size(1)", self.infer_model.set_batch_size, 1)
        self.inputs = {s.name: tuple(s.shape) for s in self.infer_model.inputs}
        self.outputs = {s.name: tuple(s.shape) for s in self.infer_model.outputs}
        self.streams: dict[str, _Stream] = {}
        self.queue_size = 0
        self._configured = None
        self._device = device
        self._broken: str | None = None  # why HailoRT shut the configured model down

    def quant(self, name: str) -> tuple[float, float]:
        """(qp_scale, qp_zp) of stream ``name``; a real value is ``(q - zp) · scale``."""
        stream = self.infer_model.input(name) if name in self.inputs else self.infer_model.output(name)
        infos = stream.quant_infos
        if len(infos) != 1:
            raise BackendError(f"{self.path}: stream {name!r} has {len(infos)} quantization infos; "
                               "act_policy supports one per stream (compile without per-channel output scales)")
        return float(infos[0].qp_scale), float(infos[0].qp_zp)

    def configure(self, float_inputs: set[str], float_outputs: bool) -> None:
        """Set user formats (UINT8 unless asked otherwise) and configure on the device."""
        hailort = self._device.hailort
        for name, shape in {**self.inputs, **self.outputs}.items():
            is_input = name in self.inputs
            float_io = name in float_inputs if is_input else float_outputs
            stream = self.infer_model.input(name) if is_input else self.infer_model.output(name)
            if not float_io and stream.format.type != hailort.FormatType.UINT8:
                raise BackendError(f"{self.path}: stream {name!r} is {stream.format.type.name} on the device (a 16-bit "
                                   "layer, precision_mode=a16_w16); use backend option output_format=float32")
            stream.set_format_type(hailort.FormatType.FLOAT32 if float_io else hailort.FormatType.UINT8)
            self.streams[name] = _Stream(name, shape, float_io, *self.quant(name))
        what = f"{self.path}: configuring the HEF on the {self._device.arch} device"
        self._configured = _hailort(what, self.infer_model.configure)
        self.queue_size = int(_hailort(f"{self.path}: get_async_queue_size()",
                                       self._configured.get_async_queue_size))
        if self.queue_size < 1:
            raise NpuUnavailable(f"{self.path}: HailoRT reports an async queue of {self.queue_size} frames")

    def start(self, frames: list[dict[str, np.ndarray]]) -> _Job:
        """Queue ``frames`` (one dict of input buffers each) on the NPU, without waiting for results.

        Starting every HEF before waiting on any lets the scheduler run cameras of different
        resolutions back to back. Frames go in chunks of at most the model's async queue size, each
        after ``wait_for_async_ready`` — ``run_async`` itself does not wait and a full queue would
        shut the model down.
        """
        if self._broken is not None:
            raise BackendError(f"{self.path}: HailoRT shut this model down after an earlier failure ({self._broken}); "
                               "recreate the backend (restart the node)")
        job = _Job(deadline=time.monotonic() + self.timeout_ms / 1000.0)
        for frame in frames:
            outputs = {name: np.empty(self.streams[name].shape, np.float32 if self.streams[name].float_io
                                      else np.uint8) for name in self.outputs}
            b = self._configured.create_bindings(output_buffers=outputs)
            for name, buffer in frame.items():
                b.input(name).set_buffer(buffer)
            job.bindings.append(b)

        def done(completion_info: Any) -> None:
            # Runs on HailoRT's callback thread, where an exception would terminate the process: only record.
            if completion_info.exception is not None:
                job.errors.append(completion_info.exception)

        for i in range(0, len(job.bindings), self.queue_size):
            chunk = job.bindings[i:i + self.queue_size]
            try:
                self._configured.wait_for_async_ready(job.remaining_ms(), len(chunk))
            except Exception as exc:
                raise BackendError(f"{self.path}: the NPU did not accept {len(chunk)} more frame(s) within "
                                   f"{self.timeout_ms} ms ({explain(exc)}); earlier inferences are still queued. "
                                   f"{MONITOR_HINT}") from exc
            try:
                job.handles.append(self._configured.run_async(chunk, done))
            except Exception as exc:
                self._broken = explain(exc)  # HailoRT shuts the configured model down when run_async fails
                raise BackendError(f"{self.path}: NPU inference could not start: {self._broken}") from exc
        return job

    def finish(self, job: _Job) -> list[dict[str, np.ndarray]]:
        """Wait until ``job``'s deadline for its results; float32 outputs per frame."""
        for handle in job.handles:
            try:
                handle.wait(max(1, job.remaining_ms() // 2))  # a wait may last twice its timeout
            except Exception as exc:
                raise BackendError(f"{self.path}: NPU inference did not finish within {self.timeout_ms} ms "
                                   f"({explain(exc)}). Raise backend option timeout_ms, or look for other models "
                                   f"sharing the device: {MONITOR_HINT}") from exc
        if job.errors:
            self._broken = explain(job.errors[0])  # "In case of an error, the pipeline will be shut down"
            raise BackendError(f"{self.path}: NPU inference failed: {self._broken}")
        return [{name: self._real(name, b.output(name).get_buffer()) for name in self.outputs}
                for b in job.bindings]

    def run(self, frames: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return self.finish(self.start(frames))

    def _real(self, name: str, buffer: np.ndarray) -> np.ndarray:
        s = self.streams[name]
        if s.float_io:
            return buffer
        return (buffer.astype(np.float32) - np.float32(s.zero_point)) * np.float32(s.scale)

    def close(self) -> None:
        if self._configured is not None:
            self._configured.shutdown()
            self._configured = None


def _check_hef_file(path: Path, device: HailoDevice, source_sha256: str | None) -> None:
    """The HEF exists and its kit sidecar ``<hef>.json`` agrees with the bundle, the device and HailoRT.

    The sidecar records the sha256 of the bundle graph the HEF was compiled from (a HEF compiled
    from another checkpoint of the same shape would otherwise run and produce wrong actions: always
    an error), the architecture, and the Dataflow Compiler release (both checked before HailoRT
    does, so the error names the file and the fix; they are :class:`NpuUnavailable`, like HailoRT's
    own refusal they anticipate).
    """
    sidecar = Path(str(path) + SIDECAR_SUFFIX)
    if not path.is_file():
        raise BackendError(f"{path}: HEF not found. Compile it with the kit (`act-policy hailo-prepare BUNDLE ...`, "
                           "then `bash hailo_compile.sh` on an x86 machine with the DFC) and copy it there, "
                           "or pass backend option hef=PATH")
    if not sidecar.is_file():
        log.info("%s: no %s next to the HEF; architecture and compiler release are checked by HailoRT only", path,
                 sidecar.name)
        return
    try:
        facts = json.loads(sidecar.read_text())
        arch, compiled_from = str(facts.get("arch", "")), str(facts.get("source_onnx_sha256", ""))
        dfc = str(facts.get("dfc_version", ""))
    except (json.JSONDecodeError, AttributeError) as exc:
        raise BackendError(f"{sidecar}: not the JSON object hailo_compile.sh writes ({exc}); delete or fix it")
    if source_sha256 and compiled_from and compiled_from != source_sha256:
        raise BackendError(f"{path}: compiled from a graph with sha256 {compiled_from[:12]}… ({sidecar.name}) but this "
                           f"bundle's is {source_sha256[:12]}… (HEF/bundle mismatch: another checkpoint or export); "
                           "run hailo-prepare and hailo_compile.sh again for this bundle")
    allowed = {"HAILO8L": {"hailo8l"}, "HAILO8": {"hailo8", "hailo8l"}}.get(device.arch)
    if allowed is not None and arch not in allowed:
        raise NpuUnavailable(f"{path}: compiled for {arch} ({sidecar.name}) but the device is {device.arch}; "
                             f"recompile with `act-policy hailo-prepare ... --arch {device.arch.lower()}`")
    _check_compiler_release(path, sidecar, dfc, device.version)


def _check_compiler_release(path: Path, sidecar: Path, dfc: str, hailort: tuple[int, int]) -> None:
    """A HEF from a DFC made for a newer HailoRT than the installed one is refused with the versions to use."""
    made_for = HAILORT_OF_DFC.get(release(dfc) or (0, 0))
    if made_for is None:
        log.info("%s: compiler release %r (%s) is not one act_policy knows the HailoRT release of; not checked",
                 path, dfc or "unrecorded", sidecar.name)
        return
    runtime = ".".join(map(str, hailort))
    if made_for > hailort:
        fitting = next((".".join(map(str, d)) for d, r in HAILORT_OF_DFC.items() if r == hailort), None)
        raise NpuUnavailable(
            f"{path}: compiled by Dataflow Compiler {dfc} ({sidecar.name}), the release made for HailoRT "
            f"{'.'.join(map(str, made_for))}; this machine has HailoRT {runtime}, which refuses HEFs from newer "
            f"compilers (HAILO_HEF_NOT_SUPPORTED, HAILO_INVALID_HEF before 4.21). Recompile the kit with "
            f"{f'DFC {fitting}' if fitting else 'the DFC release made for this HailoRT'}, or upgrade HailoRT, its "
            "driver and its Python wheel together to the compiler's release")
    if made_for < hailort:
        log.warning("%s: compiled by Dataflow Compiler %s (made for HailoRT %s) and run on HailoRT %s; Hailo pairs "
                    "each DFC with one HailoRT release — recompile with the matching DFC if loading or results "
                    "misbehave", path, dfc, ".".join(map(str, made_for)), runtime)


def _pixel_input(model: HefModel, name: str, expected: tuple[int, int]) -> bool:
    """Check an image stream against the camera; return whether pixels must be sent as FLOAT32.

    The common case after on-chip normalization is an identity input quantization: uint8
    pixels go to the device untouched. Otherwise HailoRT quantizes float pixel values.
    """
    shape = model.inputs[name]
    if shape != (*expected, 3):
        raise BackendError(f"{model.path}: input {name!r} has shape {shape}; the bundle's camera is "
                           f"{expected[0]}x{expected[1]} RGB, expected {(*expected, 3)} (HEF/bundle mismatch)")
    scale, zp = model.quant(name)
    if 255.0 * scale < MIN_PIXEL_RANGE:
        raise BackendError(
            f"{model.path}: input {name!r} represents only [{-zp * scale:.3g}, {(255 - zp) * scale:.3g}]; this HEF "
            "expects normalized values, not camera pixels. Compile it with the kit's model script, whose "
            "normalization(...) line puts LeRobot's image normalization on the chip.")
    return not (abs(scale - 1.0) < 1e-6 and abs(zp) < 1e-6)


def _hef_path(settings: HailoSettings, bundle: Path | None, name: str, aliases: tuple[str, ...] = ()) -> Path:
    hef = settings.hef
    if isinstance(hef, Mapping):
        for key in (name, *aliases):
            if key in hef:
                return Path(hef[key])
        raise BackendError(f"hailo backend: option hef has no entry for {name!r} (keys tried: {[name, *aliases]}); "
                           f"got {sorted(hef)}")
    if hef is not None:
        return Path(hef)
    if bundle is None:
        raise BackendError("hailo backend: the policy was not loaded from a folder; pass backend option hef=PATH")
    return default_hef(bundle, name)


def _head_graph(bundle: Path, document: dict[str, Any], head: str | None) -> tuple[str, Path]:
    """(``int8`` or ``fp32``, verified path) of the head graph hybrid mode runs on the CPU."""
    from act_policy.export.bundle import HEAD_GRAPH, HEAD_INT8_GRAPH, verified_file

    if head is None:
        head = "int8" if HEAD_INT8_GRAPH in document["files"] else "fp32"
        if head == "fp32":
            log.info("%s: no %s in the bundle, running the float32 head (`act-policy quantize %s` adds the INT8 "
                     "head)", bundle, HEAD_INT8_GRAPH, bundle)
    return head, verified_file(bundle, HEAD_INT8_GRAPH if head == "int8" else HEAD_GRAPH, document)


def _bundle_folder(artifacts: PolicyArtifacts) -> Path | None:
    return artifacts.source if artifacts.source is not None and artifacts.source.is_dir() else None


@dataclass
class _Backbone:
    group: BackboneGroup
    model: HefModel
    input: str = ""
    output: str = ""
    float_pixels: bool = False
    cameras: tuple[int, ...] = ()  # indices into ModelInputs.images


class HybridPipeline:
    """Backbone HEF(s) on the NPU, ``head.onnx`` on the CPU."""

    def __init__(self, artifacts: PolicyArtifacts, device: HailoDevice, settings: HailoSettings,
                 options: BackendOptions) -> None:
        from act_policy.export.bundle import backbone_file, read_policy_document

        spec = artifacts.spec
        bundle = _bundle_folder(artifacts)
        if not spec.cameras:
            raise BackendError("hailo backend: hybrid mode runs image backbones on the NPU, but the policy has no "
                               "camera; use a CPU backend")
        if bundle is None or not (bundle / "policy.json").is_file():
            raise BackendError(f"hailo backend: hybrid mode needs a deploy bundle (with its head graph); "
                               f"{bundle} is not one: run `act-policy export` first")
        document = read_policy_document(bundle)
        self.head_precision, head_path = _head_graph(bundle, document, settings.head)
        self.head = _onnx_session(head_path, options.threads)
        head_shapes = {i.name: tuple(i.shape) for i in self.head.get_inputs()}
        self.head_inputs = list(head_shapes)
        expected = [f"{c.name}.features" for c in spec.cameras] + [
            f.name for f in (spec.state, spec.env_state) if f is not None]
        if self.head_inputs != expected:
            raise BackendError(f"{head_path}: inputs {self.head_inputs}, expected {expected} "
                               "(bundle from another act_policy version? re-export it)")
        index = {c.name: i for i, c in enumerate(spec.cameras)}
        groups = backbone_groups(artifacts)
        if settings.hef is not None and not isinstance(settings.hef, Mapping) and len(groups) > 1:
            raise BackendError(f"hailo backend: option hef is one path, but this policy needs {len(groups)} backbone "
                               f"HEFs ({', '.join(g.name for g in groups)}); pass {{name: path}}")
        self.backbones: list[_Backbone] = []
        try:
            for group in groups:
                model = HefModel(device, _hef_path(settings, bundle, group.name, group.cameras), settings.timeout_ms,
                                 document["files"].get(backbone_file(group.height, group.width)))
                backbone = _Backbone(group, model, cameras=tuple(index[c] for c in group.cameras))
                self.backbones.append(backbone)  # before any check, so close() releases it
                _, dim, h, w = head_shapes[f"{group.cameras[0]}.features"]
                self._bind(backbone, (h, w, dim))
                model.configure({backbone.input} if backbone.float_pixels else set(),
                                settings.output_format == "float32")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _bind(backbone: _Backbone, features: tuple[int, int, int]) -> None:
        model, group = backbone.model, backbone.group
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise BackendError(
                f"{model.path}: has inputs {sorted(model.inputs)} and outputs {sorted(model.outputs)}; a backbone "
                "HEF has one image input and one feature output (a full-model HEF needs mode=full)")
        (backbone.input,), (backbone.output,) = model.inputs, model.outputs
        backbone.float_pixels = _pixel_input(model, backbone.input, (group.height, group.width))
        if model.outputs[backbone.output] != features:
            raise BackendError(f"{model.path}: output {backbone.output!r} has shape {model.outputs[backbone.output]}; "
                               f"this bundle's head expects projected features {features} (HEF/bundle mismatch: "
                               "compiled from another checkpoint or resolution?)")

    def infer(self, inputs: ModelInputs) -> np.ndarray:
        jobs = []
        for b in self.backbones:
            pixels = b.group.pixels
            frames = [{b.input: np.ascontiguousarray(pixels.to_pixels(inputs.images[i])) if b.float_pixels
                       else pixels.to_uint8(inputs.images[i])} for i in b.cameras]
            jobs.append(b.model.start(frames))
        features: list[np.ndarray | None] = [None] * len(inputs.images)
        for b, job in zip(self.backbones, jobs, strict=True):
            for i, result in zip(b.cameras, b.model.finish(job), strict=True):
                features[i] = np.ascontiguousarray(result[b.output].transpose(2, 0, 1)[None], dtype=np.float32)
        vectors = [v for v in (inputs.state, inputs.env_state) if v is not None]
        feed = dict(zip(self.head_inputs, [*features, *vectors], strict=True))
        return self.head.run(None, feed)[0][0]

    def close(self) -> None:
        for b in self.backbones:
            b.model.close()


class FullPipeline:
    """The whole network from one HEF; inputs matched to cameras and state by shape, in input-name order."""

    def __init__(self, artifacts: PolicyArtifacts, device: HailoDevice, settings: HailoSettings) -> None:
        from act_policy.export.bundle import FP32_GRAPH, is_bundle, read_policy_document

        spec = artifacts.spec
        bundle = _bundle_folder(artifacts)
        source = read_policy_document(bundle)["files"].get(FP32_GRAPH) if bundle and is_bundle(bundle) else None
        self.model = HefModel(device, _hef_path(settings, bundle, FULL_MODEL, ("full",)), settings.timeout_ms, source)
        try:
            self._bind(artifacts, settings)
        except BaseException:
            self.model.close()
            raise
        self.chunk_shape = (spec.config.chunk_size, spec.action_dim)

    def _bind(self, artifacts: PolicyArtifacts, settings: HailoSettings) -> None:
        spec, model = artifacts.spec, self.model
        free = sorted(model.inputs, key=_natural_key)
        self.images: list[tuple[str, Any, bool]] = []
        for camera, group in _camera_groups(artifacts):
            _, h, w = camera.shape
            name = next((n for n in free if model.inputs[n] == (h, w, 3)), None)
            if name is None:
                raise BackendError(f"{model.path}: no {h}x{w}x3 input left for camera {camera.name!r}; HEF inputs "
                                   f"are {model.inputs} (HEF/bundle mismatch)")
            free.remove(name)
            self.images.append((name, group.pixels, _pixel_input(model, name, (h, w))))
        self.vectors: list[tuple[str, tuple[int, ...]]] = []
        for f in (spec.state, spec.env_state):
            if f is None:
                continue
            name = next((n for n in free if int(np.prod(model.inputs[n])) == f.shape[0]), None)
            if name is None:
                raise BackendError(f"{model.path}: no input with {f.shape[0]} values for {f.name!r}; HEF inputs "
                                   f"are {model.inputs} (HEF/bundle mismatch)")
            free.remove(name)
            self.vectors.append((name, model.inputs[name]))
        if free:
            raise BackendError(f"{model.path}: inputs {free} match nothing this policy provides (HEF/bundle mismatch)")
        size = spec.config.chunk_size * spec.action_dim
        if len(model.outputs) != 1 or int(np.prod(next(iter(model.outputs.values())))) != size:
            raise BackendError(f"{model.path}: outputs {model.outputs}; expected one output of {size} values "
                               f"(chunk {spec.config.chunk_size} × {spec.action_dim} actions)")
        self.output = next(iter(model.outputs))
        float_inputs = {n for n, _, f in self.images if f} | {n for n, _ in self.vectors}
        model.configure(float_inputs, settings.output_format == "float32")

    def infer(self, inputs: ModelInputs) -> np.ndarray:
        frame = {}
        for (name, pixels, float_pixels), image in zip(self.images, inputs.images, strict=True):
            frame[name] = np.ascontiguousarray(pixels.to_pixels(image)) if float_pixels else pixels.to_uint8(image)
        vectors = [v for v in (inputs.state, inputs.env_state) if v is not None]
        for (name, shape), vector in zip(self.vectors, vectors, strict=True):
            frame[name] = np.ascontiguousarray(vector.reshape(shape), dtype=np.float32)
        return self.model.run([frame])[0][self.output].reshape(self.chunk_shape)

    def close(self) -> None:
        self.model.close()


def _camera_groups(artifacts: PolicyArtifacts) -> list[tuple[Any, BackboneGroup]]:
    by_name = {c: g for g in backbone_groups(artifacts) for c in g.cameras}
    return [(c, by_name[c.name]) for c in artifacts.spec.cameras]


def _natural_key(name: str) -> list[Any]:
    """``input_layer2`` before ``input_layer10``: the DFC numbers inputs in ONNX input order."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    no_spinning(options)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class HailoBackend(Backend):
    name = "hailo"

    @classmethod
    def check_options(cls, extra: Mapping[str, Any]) -> None:
        HailoSettings.from_extra(extra)

    def __init__(self, artifacts: PolicyArtifacts, options: BackendOptions) -> None:
        super().__init__(artifacts, options)
        self.settings = HailoSettings.from_extra(options.extra)
        self.fallback: Backend | None = None
        self.fallback_reason: str | None = None
        self.device: HailoDevice | None = None
        self.pipeline: HybridPipeline | FullPipeline | None = None
        try:
            self.device = HailoDevice(import_hailort(), self.settings.group_id, self.settings.multi_process)
        except NpuUnavailable as exc:
            if self.settings.fallback_backend is None:
                raise
            self._fall_back(exc)
            return
        try:
            if self.settings.mode == "hybrid":
                self.pipeline = HybridPipeline(artifacts, self.device, self.settings, options)
            else:
                self.pipeline = FullPipeline(artifacts, self.device, self.settings)
        except NpuUnavailable as exc:  # HailoRT refused the HEF (version, architecture, ...)
            self.device.close()
            self.device = None
            if self.settings.fallback_backend is None:
                raise
            self._fall_back(exc)
        except BaseException:
            self.device.close()
            raise

    def _fall_back(self, reason: Exception) -> None:
        from act_policy.backends import create_backend

        self.fallback_reason = str(reason)
        log.warning("=" * 78)
        log.warning("HAILO NPU UNAVAILABLE — running on fallback backend %r instead.", self.settings.fallback_backend)
        log.warning("Reason: %s", reason)
        log.warning("Latency will be that of the CPU backend, not the NPU.")
        log.warning("=" * 78)
        options = dataclasses.replace(self.options, extra={})
        self.fallback = create_backend(self.settings.fallback_backend, self.artifacts, options)

    def infer(self, inputs: ModelInputs) -> np.ndarray:
        if self.fallback is not None:
            return self.fallback.infer(inputs)
        if self.pipeline is None:
            raise BackendError("hailo backend is closed")
        return self.pipeline.infer(inputs)

    def describe(self) -> dict[str, Any]:
        if self.fallback is not None:
            return {**self.fallback.describe(), "backend": self.name, "npu": False,
                    "fallback_backend": self.settings.fallback_backend, "fallback_reason": self.fallback_reason}
        facts = {**super().describe(), "npu": True, "mode": self.settings.mode}
        if isinstance(self.pipeline, HybridPipeline):
            facts["head"] = self.pipeline.head_precision
        if self.device is not None:
            hailort = self.device.hailort
            facts.update(device=self.device.device_id, arch=self.device.arch,
                         hailort=str(getattr(hailort, "__version__", "unknown")),
                         # A stand-in runtime (the test fake) marks itself: its timings are not the NPU's.
                         emulated=bool(getattr(hailort, "EMULATED", False)))
        return facts

    def close(self) -> None:
        if self.fallback is not None:
            self.fallback.close()
        if self.pipeline is not None:
            self.pipeline.close()
            self.pipeline = None
        if self.device is not None:
            self.device.close()
            self.device = None
