"""Fake launch_ros.actions Node / LifecycleNode (launch_ros/launch_ros/actions/{node,lifecycle_node}.py, jazzy)."""

from __future__ import annotations

from typing import Any

NODE_KWARGS = {"executable", "package", "name", "namespace", "exec_name", "parameters", "remappings",
               "ros_arguments", "arguments", "output", "respawn", "respawn_delay", "emulate_tty",
               "additional_env", "prefix", "sigterm_timeout", "sigkill_timeout", "condition"}


class Node:
    def __init__(self, *, executable: str, package: str | None = None, **kwargs: Any) -> None:
        unknown = set(kwargs) - NODE_KWARGS
        if unknown:
            raise TypeError(f"Node got unexpected keyword arguments {sorted(unknown)}")
        self.executable, self.package = executable, package
        self.kwargs = kwargs


class LifecycleNode(Node):
    def __init__(self, *, name: str, namespace: str, **kwargs: Any) -> None:
        super().__init__(name=name, namespace=namespace, **kwargs)
        self.name, self.namespace = name, namespace
