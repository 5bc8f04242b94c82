"""The node's ROS 2 params files read without ROS, for the tools that must see what the node sees.

``act-policy replay`` / ``quantize`` / ``hailo-prepare --node-params FILE`` take the topics, joint
order and joint units of a rosbag2 from the YAML the node is launched with. The files are merged
like a launch file's ``parameters=[...]`` list (a later file wins) and checked with the node's own
:func:`~act_policy.runtime.parameters.validate`, so a calibration never runs on values the node
would refuse; errors name the file and the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from act_policy.core.dependencies import install_hint
from act_policy.runtime.parameters import NODE_NAME, ParameterError, Settings, validate

_WILDCARDS = ("/**", "**", "/*")  # sections for every node; "/ns/*" is left out: the namespace is unknown here
ROS_OWN = ("use_sim_time", "start_type_description_service", "qos_overrides")  # rclpy's, in every dump


@dataclass(frozen=True)
class NodeParams:
    """Validated parameters (node defaults where no file sets them) and the file that set each one."""

    settings: Settings
    origin: Mapping[str, Path]

    def source(self, name: str) -> str | None:
        """``"joint_scale in robot.yaml"``, or None when the value is the node's default."""
        return f"{name} in {self.origin[name]}" if name in self.origin else None


def file_parameters(path: Path) -> dict[str, Any]:
    """The ``ros__parameters`` of every section of ``path`` that applies to the node, in file order."""
    try:
        import yaml
    except ImportError as exc:
        raise ParameterError(f"{path}: reading a params file needs PyYAML: {install_hint('yaml')}") from exc
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ParameterError(f"{path}: cannot read the params file ({exc.strerror or exc})")
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not a valid YAML file: {exc}")
    sections = [body for key, body in (data.items() if isinstance(data, dict) else ())
                if str(key) in _WILDCARDS or str(key).rstrip("/").rpartition("/")[2] == NODE_NAME]
    if not sections or not all(isinstance(s, dict) and isinstance(s.get("ros__parameters"), dict) for s in sections):
        raise ParameterError(f"{path}: expected a node params file: a '/**:' or '/{NODE_NAME}:' section holding "
                             "'ros__parameters:'")
    return {name: value for s in sections for name, value in s["ros__parameters"].items() if name not in ROS_OWN}


def read_params_files(paths: Sequence[Path]) -> NodeParams:
    """``paths`` merged in order (later wins) and validated as the node validates them at configure time."""
    values: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for path in paths:
        for name, value in file_parameters(Path(path)).items():
            values[name] = value
            origin[name] = Path(path)
    try:
        settings = validate(values)
    except ParameterError as exc:
        # messages start with the parameter(s) at fault: "joint_scale: ...", "joint_lower_limits/joint_upper_limits:"
        named = str(exc).partition(":")[0].split("/")
        files = dict.fromkeys(str(origin[n]) for n in named if n in origin) or dict.fromkeys(map(str, paths))
        raise ParameterError(f"{', '.join(files)}: {exc}")
    return NodeParams(settings, origin)
