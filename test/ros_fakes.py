"""Put the ROS 2 test doubles (test/fake_ros) on sys.path and generate ``act_policy.msg`` from msg/*.msg.

In a colcon build rosidl generates ``act_policy.msg``; here each ``.msg`` file becomes a fake
message class with the same fields, parsed with the same type mapping rosidl_generator_py uses
(``float64`` → ``double``, ``bool`` → ``boolean``, ``pkg/Type`` nested). test_ros_package checks
the files with Debian's real rosidl parser as well.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAKE_ROS = Path(__file__).resolve().parent / "fake_ros"
if str(FAKE_ROS) not in sys.path:
    sys.path.insert(0, str(FAKE_ROS))

from _fake_message import Message  # noqa: E402 - needs the path above

PRIMITIVES = {"float64": "double", "float32": "float", "bool": "boolean", "byte": "octet", "char": "uint8"}


def parse_msg(text: str) -> dict[str, str]:
    """``{field: rclpy type string}`` of a .msg text (fields only; constants and comments skipped)."""
    fields = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "=" in line:
            continue
        type_name, name = line.split()[:2]
        sequence = type_name.endswith("[]")
        base = type_name.removesuffix("[]")
        base = PRIMITIVES.get(base, base)
        if "/" in base:
            pkg, _, msg = base.partition("/")
            base = f"{pkg}/{msg.split('/')[-1]}"
        fields[name] = f"sequence<{base}>" if sequence else base
    return fields


def install_interface_module() -> types.ModuleType:
    """``act_policy.msg`` with one fake class per msg/*.msg (idempotent)."""
    if "act_policy.msg" in sys.modules:
        return sys.modules["act_policy.msg"]
    import std_msgs.msg  # noqa: F401 - registers nested types used by the messages

    import act_policy

    module = types.ModuleType("act_policy.msg", "fake of the rosidl-generated act_policy.msg")
    for path in sorted((ROOT / "msg").glob("*.msg")):
        cls = type(path.stem, (Message,), {"_type": f"act_policy/{path.stem}",
                                           "_fields_and_field_types": parse_msg(path.read_text())})
        setattr(module, path.stem, cls)
    sys.modules["act_policy.msg"] = module
    act_policy.msg = module
    return module
