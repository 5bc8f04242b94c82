"""Every node parameter, declared once as data, and the atomic validation of proposed changes.

The table :data:`PARAMETERS` is the single source for the ROS declarations (type, default,
range, read-only), for validation of ``ros2 param set`` requests, for ``docs/parameters.md``
and for the tests. Validation never mutates anything: :func:`apply_changes` returns a new
:class:`Settings` or raises :class:`ParameterError` naming the parameter and what was expected,
so a refused request leaves the node exactly as it was.

Doubles accept integers (``ros2 param set /act_policy control_rate_hz 15`` sends an INTEGER),
and double arrays accept integer arrays, for the same reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from act_policy.core.config import IMAGE_PREFIX
from act_policy.core.errors import SettingError
from act_policy.core.scheduling import AGGREGATIONS
from act_policy.runtime.cpu_scheduling import SLICE_RANGE_US

CAMERA_PREFIX = IMAGE_PREFIX + "s."  # LeRobot camera features are "observation.images.<name>"


class ParameterError(SettingError):
    """A parameter value (or a combination of values) is invalid; the message names the parameter."""


class ParamType(str, Enum):
    BOOL = "bool"
    INT = "integer"
    DOUBLE = "double"
    STRING = "string"
    STRING_ARRAY = "string[]"
    DOUBLE_ARRAY = "double[]"


@dataclass(frozen=True)
class ParamSpec:
    """One node parameter. ``read_only`` ones are fixed at configure time; the others are live."""

    name: str
    type: ParamType
    default: Any
    description: str
    read_only: bool = False
    unit: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    from_checkpoint: bool = False  # the string CHECKPOINT stands for the checkpoint's value

    def range_text(self) -> str:
        if self.choices:
            return ", ".join(self.choices)
        if self.min is not None and self.max is not None:
            return f"[{_fmt(self.min)}, {_fmt(self.max)}]" + (f" or {CHECKPOINT}" if self.from_checkpoint else "")
        return ""


COMMAND_TYPES = ("float64_multi_array", "joint_state", "joint_trajectory")
CHECKPOINT = "checkpoint"  # a value that means "as trained": what the checkpoint's config.json says
SCHEDULE_MODES = (CHECKPOINT, "async", "sync", "temporal_ensemble")
INFERENCE_ISOLATION = ("process", "thread")
DEFAULT_ENSEMBLE_COEFF = 0.01  # ACT's and LeRobot's default, for checkpoints trained without ensembling

P = ParamSpec
T = ParamType
UNSET_IN_DUMPS = "null"  # an empty array parameter after `ros2 param dump` and reloading the file
NODE_NAME = "act_policy"  # the node's default name: `ros2 param set /act_policy ...`, params file sections

PARAMETERS: tuple[ParamSpec, ...] = (
    # ---------------------------------------------------------------- read-only (configure time)
    P("model_path", T.STRING, "", "LeRobot `pretrained_model` folder or act_policy deploy bundle. `demo` loads "
      "the seeded demo policy (random weights: for plumbing tests only, never on a robot)", read_only=True),
    P("backend", T.STRING, "cpu_fp32", "inference backend, a name from `act_policy.backends.BACKENDS` "
      "(e.g. cpu_fp32, cpu_int8, hailo)", read_only=True),
    P("backend_options", T.STRING, "{}", "backend-specific settings as a JSON object "
      "(e.g. `{\"fallback_backend\": \"cpu_int8\"}`)", read_only=True),
    P("num_threads", T.INT, 0, "inference threads (torch and ONNX Runtime); 0 = one less than the CPUs this "
      "process may use (`os.sched_getaffinity`), at least 1, at most 4: a CPU stays free for the control loop "
      "and the drivers", read_only=True, min=0, max=64),
    P("inference_isolation", T.STRING, "process", "where the backend runs: `process` = a child process, which "
      "shares neither the GIL nor a crash with the node and ends at once with it; `thread` = a thread of the "
      "node (about 40 MB less memory, one process to profile), which shares the node's session: under CPU "
      "stress its control timing measured worse (docs/ros.md, \"Scheduling design\")",
      read_only=True, choices=INFERENCE_ISOLATION),
    P("inference_nice", T.INT, 5, "how many nice levels inference (the child process, or the inference thread, "
      "and the torch / ONNX Runtime threads they create) runs below the control, input and service threads; "
      "0 = same priority. The child process leads its own session and lowers the session too: with Linux's "
      "autogroups a nice value counts only within its session, so inference then also yields to the drivers "
      "and other programs. Never needs a privilege", read_only=True, min=0, max=19),
    P("sched_slice_us", T.INT, 300, "scheduling slice the node's control, executor and handover threads ask "
      "Linux's EEVDF scheduler for (Linux >= 6.12, no privilege): a waking thread with a shorter slice than the "
      "running one may preempt it (when it is owed CPU time), at the same share of the CPU. 0 = the kernel's "
      "default (1.4 ms on the 2-CPU test machine); else 100-100000. On other systems a warning says it was not applied",
      read_only=True, unit="us", min=0, max=SLICE_RANGE_US[1]),
    P("control_realtime_priority", T.INT, 0, "SCHED_FIFO priority of the control thread; 0 = normal scheduling. "
      "Needs CAP_SYS_NICE or an rtprio limit (`ulimit -r`); refused with a warning, the thread then runs at "
      "normal priority", read_only=True, min=0, max=99),
    P("device", T.STRING, "cpu", "torch device for torch backends (`cpu`, `cuda`)", read_only=True),
    P("allow_missing_stats", T.BOOL, False, "run a policy whose training config normalizes a feature it has no "
      "statistics for (that feature then passes through unnormalized, as in LeRobot); false refuses it at "
      "configure", read_only=True),
    P("camera_topics", T.STRING_ARRAY, (), "one `camera=topic` entry per camera feature of the policy, e.g. "
      "`front=/camera/image_raw` (camera is the feature name with or without `observation.images.`); a topic "
      "ending in `/compressed` is read as sensor_msgs/CompressedImage", read_only=True),
    P("allow_resize", T.BOOL, False, "resize camera images to the trained resolution (bilinear, pure NumPy) "
      "instead of refusing them", read_only=True),
    P("joint_state_topic", T.STRING, "/joint_states", "sensor_msgs/JointState input", read_only=True),
    P("joint_names", T.STRING_ARRAY, (), "the policy's state/action joints in training order; joint states "
      "are matched by these names, never by message order", read_only=True),
    P("joint_scale", T.DOUBLE_ARRAY, (), "policy_value = ros_value * scale + offset (e.g. 57.29578 for a "
      "policy trained in degrees); one value for every joint or one per joint; empty = 1", read_only=True),
    P("joint_offset", T.DOUBLE_ARRAY, (), "offset of the same mapping, in policy units; one value for every "
      "joint or one per joint; empty = 0", read_only=True),
    P("command_type", T.STRING, "float64_multi_array", "output message: std_msgs/Float64MultiArray (ros2_control "
      "forward position controller), sensor_msgs/JointState, or trajectory_msgs/JointTrajectory (one point)",
      read_only=True, choices=COMMAND_TYPES),
    P("command_topic", T.STRING, "/forward_position_controller/commands", "where commands are published",
      read_only=True),
    P("schedule_mode", T.STRING, CHECKPOINT, "checkpoint: as trained (temporal_ensemble when the checkpoint has "
      "a temporal_ensemble_coeff, else async); async: infer ahead in a worker and skip actions whose time "
      "passed; sync: LeRobot's select_action timing (the arm holds while a chunk is inferred); "
      "temporal_ensemble: infer every tick and average overlapping chunks", read_only=True,
      choices=SCHEDULE_MODES),
    P("diagnostics_period_s", T.DOUBLE, 1.0, "period of /diagnostics messages", read_only=True, unit="s",
      min=0.1, max=60.0),
    # ---------------------------------------------------------------- live (ros2 param set)
    P("enabled", T.BOOL, True, "publish commands; false holds (also via the ~/enable service)"),
    P("control_rate_hz", T.DOUBLE, 30.0, "control ticks per second (one action per tick); usually the "
      "dataset fps", unit="Hz", min=0.5, max=1000.0),
    P("n_action_steps", T.INT, 0, "actions executed per inferred chunk; 0 = the checkpoint's value; "
      "must not exceed chunk_size", min=0, max=10000),
    P("refill_threshold", T.INT, -1, "async mode: request the next chunk when this many queued actions "
      "remain; -1 = n_action_steps // 2", min=-1, max=10000),
    P("temporal_ensemble_coeff", T.DOUBLE, CHECKPOINT, "ACT's exp(-coeff * i) weight, i = 0 the oldest "
      "prediction, of temporal_ensemble mode and chunk_aggregation weighted; checkpoint = the checkpoint's "
      f"value, {DEFAULT_ENSEMBLE_COEFF} if it has none", min=-10.0, max=10.0, from_checkpoint=True),
    P("chunk_aggregation", T.STRING, "blend", "async/sync: how a new chunk merges with the older chunks' "
      "actions for the same steps: latest (replace, as LeRobot), average, weighted (ACT's exp(-coeff * i) "
      "weights over the chunks available), blend (cross-fade over blend_steps); when to use which: "
      "docs/replay.md#chunk-aggregation", choices=AGGREGATIONS),
    P("blend_steps", T.INT, 10, "chunk_aggregation blend: steps over which the command fades from the old "
      "chunk to the new one (0 = latest)", min=0, max=10000),
    P("joint_lower_limits", T.DOUBLE_ARRAY, (), "per joint lower command limit (ROS units); empty = none",
      unit="rad"),
    P("joint_upper_limits", T.DOUBLE_ARRAY, (), "per joint upper command limit (ROS units); empty = none",
      unit="rad"),
    P("max_joint_step", T.DOUBLE_ARRAY, (), "largest change of a joint command per tick; one value for every "
      "joint or one per joint; empty = unlimited", unit="rad"),
    P("max_image_age_ms", T.DOUBLE, 500.0, "watchdog: hold when a camera's latest image is older",
      unit="ms", min=1.0, max=60000.0),
    P("max_joint_state_age_ms", T.DOUBLE, 200.0, "watchdog: hold when a joint's latest state is older",
      unit="ms", min=1.0, max=60000.0),
    P("record_dir", T.STRING, "", "when set, save the observations the policy sees there (calibration "
      "`.npz` format); empty = off"),
    P("record_every_n", T.INT, 1, "record one inference observation in every n", min=1, max=100000),
    P("record_max_samples", T.INT, 1000, "stop recording after this many files", min=1, max=10_000_000),
)
del P, T

SPECS: dict[str, ParamSpec] = {p.name: p for p in PARAMETERS}


@dataclass(frozen=True)
class PolicyContext:
    """What the loaded policy adds to validation (unknown before configure)."""

    chunk_size: int
    n_action_steps: int  # the checkpoint's value
    camera_features: tuple[str, ...]
    action_dim: int
    rename_map: Mapping[str, str] = field(default_factory=dict)  # the checkpoint's robot-side → policy names
    temporal_ensemble_coeff: float | None = None  # the checkpoint's value (None: trained without ensembling)


class Settings(Mapping[str, Any]):
    """An immutable, fully validated set of parameter values."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Settings({self._values!r})"


def defaults() -> dict[str, Any]:
    return {p.name: p.default for p in PARAMETERS}


def coerce(spec: ParamSpec, value: Any) -> Any:
    """Return ``value`` in the parameter's canonical Python type or raise ParameterError.

    Empty arrays may arrive as ``None`` (ROS cannot type an empty list, see ros_default), or as the
    string ``"null"``: that is how ``ros2 param dump`` writes them and how rcl's YAML parser reads the
    dump back, so a dumped configuration must load again.
    """
    def fail(expected: str) -> ParameterError:
        shown = value.tolist() if hasattr(value, "tolist") else value  # rclpy hands arrays over as array('d', ...)
        return ParameterError(f"{spec.name}: expected {expected}, got {shown!r}")

    if spec.type is ParamType.BOOL:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if spec.type is ParamType.INT:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        _check_range(spec, value)
        return value
    if spec.type is ParamType.DOUBLE:
        if spec.from_checkpoint and value == CHECKPOINT:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail("a finite number")
        _check_range(spec, float(value))
        return float(value)
    if spec.type is ParamType.STRING:
        if not isinstance(value, str):
            raise fail("a string")
        if spec.choices and value not in spec.choices:
            raise fail("one of " + ", ".join(spec.choices))
        return value
    if value is None or (isinstance(value, str) and value == UNSET_IN_DUMPS):
        return ()
    if not isinstance(value, (list, tuple)) and not hasattr(value, "tolist"):
        raise fail("a list")
    items = list(value.tolist() if hasattr(value, "tolist") else value)
    if spec.type is ParamType.STRING_ARRAY:
        if not all(isinstance(v, str) for v in items):
            raise fail("a list of strings")
        return tuple(items)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items):
        raise fail("a list of finite numbers")
    return tuple(float(v) for v in items)


def _check_range(spec: ParamSpec, value: float) -> None:
    if spec.min is not None and spec.max is not None and not spec.min <= value <= spec.max:
        unit = f" {spec.unit}" if spec.unit else ""
        raise ParameterError(f"{spec.name}: expected a value in {spec.range_text()}{unit}, got {value!r}")


def validate(values: Mapping[str, Any], context: PolicyContext | None = None) -> Settings:
    """Check a complete set of values (types, ranges, cross-parameter rules) and return Settings."""
    unknown = sorted(set(values) - set(SPECS))
    if unknown:
        raise ParameterError(f"unknown parameter(s): {', '.join(unknown)}")
    merged = defaults()
    merged.update({name: coerce(SPECS[name], value) for name, value in values.items()})
    _check_rules(merged, context)
    return Settings(merged)


def apply_changes(current: Settings, changes: Mapping[str, Any], context: PolicyContext | None = None,
                  *, allow_read_only: bool = False) -> Settings:
    """All of ``changes`` applied to ``current``, or ParameterError and nothing applied."""
    unknown = sorted(set(changes) - set(SPECS))
    if unknown:
        raise ParameterError(f"{', '.join(unknown)}: not a parameter of this node")
    coerced = {name: coerce(SPECS[name], value) for name, value in changes.items()}
    for name, value in coerced.items():
        if SPECS[name].read_only and not allow_read_only and value != current[name]:
            raise ParameterError(f"{name}: read-only; set it in the params file and reconfigure the node")
    merged = {**current, **coerced}
    _check_rules(merged, context)
    return Settings(merged)


# ---------------------------------------------------------------------------- derived values
def effective_schedule_mode(s: Mapping[str, Any], context: PolicyContext) -> str:
    """``schedule_mode`` with ``checkpoint`` resolved: temporal ensembling when the checkpoint was trained for it."""
    if s["schedule_mode"] != CHECKPOINT:
        return s["schedule_mode"]
    return "async" if context.temporal_ensemble_coeff is None else "temporal_ensemble"


def effective_ensemble_coeff(s: Mapping[str, Any], context: PolicyContext) -> float:
    """``temporal_ensemble_coeff`` with ``checkpoint`` resolved (ACT's 0.01 when the checkpoint has none)."""
    if s["temporal_ensemble_coeff"] != CHECKPOINT:
        return s["temporal_ensemble_coeff"]
    coeff = context.temporal_ensemble_coeff
    return DEFAULT_ENSEMBLE_COEFF if coeff is None else coeff


def effective_n_action_steps(s: Mapping[str, Any], context: PolicyContext) -> int:
    if effective_schedule_mode(s, context) == "temporal_ensemble":
        return 1
    return s["n_action_steps"] or context.n_action_steps


def effective_refill_threshold(s: Mapping[str, Any], context: PolicyContext) -> int:
    n = effective_n_action_steps(s, context)
    return n // 2 if s["refill_threshold"] < 0 else s["refill_threshold"]


def camera_feature_name(key: str) -> str:
    return key if key.startswith(IMAGE_PREFIX) else CAMERA_PREFIX + key


def camera_topic_map(entries: Sequence[str], rename_map: Mapping[str, str] | None = None) -> dict[str, str]:
    """``["front=/cam/image_raw"]`` → ``{"observation.images.front": "/cam/image_raw"}``.

    A camera may be named as the robot names it when the checkpoint's ``rename_map`` (LeRobot's
    ``rename_observations_processor``) maps that name to a policy feature, as LeRobot does.
    """
    mapping: dict[str, str] = {}
    for entry in entries:
        key, sep, topic = entry.partition("=")
        key, topic = key.strip(), topic.strip()
        if not sep or not key or not topic:
            raise ParameterError(f"camera_topics: expected entries like 'front=/camera/image_raw', got {entry!r}")
        feature = camera_feature_name(key)
        feature = (rename_map or {}).get(feature, feature)
        if feature in mapping:
            raise ParameterError(f"camera_topics: camera {key!r} is listed twice")
        mapping[feature] = topic
    return mapping


def _check_rules(s: Mapping[str, Any], context: PolicyContext | None) -> None:
    """Cross-parameter rules; the first violation is reported."""
    from act_policy.backends import BACKENDS

    if s["backend"] not in BACKENDS:
        raise ParameterError(f"backend: expected one of {', '.join(BACKENDS)}, got {s['backend']!r}")
    try:
        options = json.loads(s["backend_options"])
    except json.JSONDecodeError as exc:
        raise ParameterError(f"backend_options: expected a JSON object, got {s['backend_options']!r} ({exc})")
    if not isinstance(options, dict):
        raise ParameterError(f"backend_options: expected a JSON object, got {s['backend_options']!r}")
    if 0 < s["sched_slice_us"] < SLICE_RANGE_US[0]:
        raise ParameterError(f"sched_slice_us: expected 0 (the kernel's default) or {SLICE_RANGE_US[0]}-"
                             f"{SLICE_RANGE_US[1]} us (what Linux takes), got {s['sched_slice_us']}")
    if not s["command_topic"].strip():
        raise ParameterError("command_topic: expected a topic name, got an empty string")
    names = s["joint_names"]
    if len(set(names)) != len(names) or any(not n.strip() for n in names):
        raise ParameterError(f"joint_names: expected unique, non-empty names, got {list(names)}")
    n = len(names)
    for name in ("joint_lower_limits", "joint_upper_limits"):
        if len(s[name]) not in (0, n):
            raise ParameterError(f"{name}: expected {n} values (one per joint_names entry) or none, "
                                 f"got {len(s[name])}")
    for name in ("joint_scale", "joint_offset", "max_joint_step"):  # one value applies to every joint
        if len(s[name]) not in (0, 1, n):
            raise ParameterError(f"{name}: expected 1 or {n} values or none, got {len(s[name])}")
    if any(v <= 0 for v in s["max_joint_step"]):
        raise ParameterError(f"max_joint_step: expected positive values, got {list(s['max_joint_step'])}")
    if any(v == 0 for v in s["joint_scale"]):
        raise ParameterError(f"joint_scale: expected non-zero factors, got {list(s['joint_scale'])}")
    lower, upper = s["joint_lower_limits"], s["joint_upper_limits"]
    for joint, lo, hi in zip(names, lower, upper, strict=True) if lower and upper else ():
        if not lo < hi:
            raise ParameterError(f"joint_lower_limits/joint_upper_limits: joint {joint!r} needs lower < upper, "
                                 f"got {lo} >= {hi}")
    cameras = camera_topic_map(s["camera_topics"], context.rename_map if context else None)
    if s["schedule_mode"] == "temporal_ensemble" and s["n_action_steps"] not in (0, 1):
        raise ParameterError(f"n_action_steps: temporal_ensemble mode executes one action per chunk, so it must "
                             f"be 1 (or 0), got {s['n_action_steps']}")
    if context is None:
        return
    mode = effective_schedule_mode(s, context)
    if mode == "temporal_ensemble" and s["n_action_steps"] not in (0, 1):  # schedule_mode checkpoint
        raise ParameterError(f"n_action_steps: the checkpoint was trained with temporal ensembling "
                             f"(temporal_ensemble_coeff {context.temporal_ensemble_coeff}), which executes one "
                             f"action per chunk: n_action_steps must be 1 (or 0), got {s['n_action_steps']}; "
                             "set schedule_mode to async or sync to run chunks instead")
    if s["n_action_steps"] > context.chunk_size:
        raise ParameterError(f"n_action_steps: expected at most chunk_size={context.chunk_size}, "
                             f"got {s['n_action_steps']}")
    steps = effective_n_action_steps(s, context)
    if mode == "async" and steps == 1:
        trained = " (the checkpoint's n_action_steps)" if s["n_action_steps"] == 0 else ""
        raise ParameterError(f"n_action_steps: async mode with 1 action per chunk{trained} infers for every "
                             f"action and starves; set n_action_steps (e.g. {max(2, context.chunk_size // 2)}) "
                             "or use schedule_mode temporal_ensemble")
    if mode == "async" and effective_refill_threshold(s, context) >= steps:
        raise ParameterError(f"refill_threshold: expected less than n_action_steps={steps} (or -1), "
                             f"got {s['refill_threshold']}")
    if n != context.action_dim:
        raise ParameterError(f"joint_names: the policy has {context.action_dim} action dimensions, "
                             f"got {n} names {list(names)}")
    expected, given = set(context.camera_features), set(cameras)
    if expected != given:
        raise ParameterError(
            "camera_topics: expected one entry for each camera of the policy "
            f"({', '.join(context.camera_features) or 'none'}); "
            f"missing {sorted(expected - given) or 'none'}, unknown {sorted(given - expected) or 'none'}")


# ---------------------------------------------------------------------------- ROS declaration data
def ros_default(spec: ParamSpec) -> Any:
    """The value to declare: lists as lists; empty arrays as None (rclpy types ``[]`` as a byte array)."""
    if spec.type in (ParamType.STRING_ARRAY, ParamType.DOUBLE_ARRAY):
        return list(spec.default) or None
    return spec.default


def dynamic_typing(spec: ParamSpec) -> bool:
    """Doubles (users type integers), arrays (may be empty) are dynamically typed; coerce() checks them."""
    return spec.type in (ParamType.DOUBLE, ParamType.DOUBLE_ARRAY, ParamType.STRING_ARRAY)


def descriptor_text(spec: ParamSpec) -> tuple[str, str]:
    """(description, additional_constraints) for the ParameterDescriptor."""
    unit = f" [{spec.unit}]" if spec.unit else ""
    constraints = f"type {spec.type.value}"
    if spec.range_text():
        constraints += ("; one of " if spec.choices else "; range ") + spec.range_text()
    if spec.from_checkpoint:  # rclpy's dynamic typing describes the type of the value set
        constraints += f" ({CHECKPOINT}, the default, is a string: the type shown is string until a number is set)"
    return spec.description + unit, constraints


def parameters_table() -> str:
    """The parameter table in Markdown, generated from :data:`PARAMETERS` (docs/parameters.md and README)."""
    lines = ["| name | type | default | range / choices | unit | live | description |",
             "|---|---|---|---|---|---|---|"]
    for p in PARAMETERS:
        default = json.dumps(list(p.default) if isinstance(p.default, tuple) else p.default)
        live = "no" if p.read_only else "yes"
        desc = p.description.replace("|", "\\|")
        lines.append(f"| `{p.name}` | {p.type.value} | `{default}` | {p.range_text()} | {p.unit} | {live} | {desc} |")
    return "\n".join(lines) + "\n"


def parameters_markdown() -> str:
    """The parameter reference (docs/parameters.md)."""
    return "\n".join([
        "# act_policy node parameters",
        "",
        "Generated from `act_policy/runtime/parameters.py` by `act_policy.runtime.parameters."
        "parameters_markdown()`; a test fails when this file is out of date.",
        "",
        "Read-only parameters are fixed when the node is configured (params file or `--ros-args -p`); "
        "live ones change with `ros2 param set` and take effect on the next control tick. A refused "
        "change returns a reason and changes nothing.",
        "",
    ]) + "\n" + parameters_table()


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)
