"""Fake rclpy.lifecycle (rclpy/rclpy/lifecycle/{__init__,node,publisher,managed_entity}.py, jazzy).

``Node = LifecycleNode``, ``State = LifecycleState(label, state_id)``, ``TransitionCallbackReturn``
with SUCCESS / FAILURE / ERROR. As in rclpy's ``__execute_callback``, an exception raised by a
transition callback becomes ERROR *without being logged* and ``on_error`` runs next; lifecycle
publishers drop messages until the node's ``on_activate`` (the base implementation, reached via
``super().on_activate()``) enables them.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, NamedTuple

from lifecycle_msgs.msg import State as StateMsg

from rclpy.node import Node as _Node
from rclpy.node import Publisher as _Publisher


class TransitionCallbackReturn(Enum):
    SUCCESS = 97
    FAILURE = 98
    ERROR = 99

    def to_label(self) -> str:
        return self.name.lower()


class LifecycleState(NamedTuple):
    label: str
    state_id: int


class ManagedEntity:
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        return TransitionCallbackReturn.SUCCESS


class LifecyclePublisher(ManagedEntity, _Publisher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _Publisher.__init__(self, *args, **kwargs)
        self._enabled = False

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._enabled = True
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._enabled = False
        return TransitionCallbackReturn.SUCCESS

    @property
    def is_activated(self) -> bool:
        return self._enabled

    def publish(self, msg: Any) -> None:
        if self._enabled:
            _Publisher.publish(self, msg)


_STATES = {StateMsg.PRIMARY_STATE_UNCONFIGURED: "unconfigured", StateMsg.PRIMARY_STATE_INACTIVE: "inactive",
           StateMsg.PRIMARY_STATE_ACTIVE: "active", StateMsg.PRIMARY_STATE_FINALIZED: "finalized"}
# transition name → (allowed start states, callback, target on success)
_TRANSITIONS = {
    "configure": ((StateMsg.PRIMARY_STATE_UNCONFIGURED,), "on_configure", StateMsg.PRIMARY_STATE_INACTIVE),
    "cleanup": ((StateMsg.PRIMARY_STATE_INACTIVE,), "on_cleanup", StateMsg.PRIMARY_STATE_UNCONFIGURED),
    "activate": ((StateMsg.PRIMARY_STATE_INACTIVE,), "on_activate", StateMsg.PRIMARY_STATE_ACTIVE),
    "deactivate": ((StateMsg.PRIMARY_STATE_ACTIVE,), "on_deactivate", StateMsg.PRIMARY_STATE_INACTIVE),
    "shutdown": (tuple(_STATES)[:3], "on_shutdown", StateMsg.PRIMARY_STATE_FINALIZED),
}


class LifecycleNode(ManagedEntity, _Node):
    def __init__(self, node_name: str, *, enable_communication_interface: bool = True, **kwargs: Any) -> None:
        _Node.__init__(self, node_name, **kwargs)
        self._managed_entities: set[ManagedEntity] = set()
        self._state_id = StateMsg.PRIMARY_STATE_UNCONFIGURED

    @property
    def current_state(self) -> LifecycleState:
        return LifecycleState(_STATES[self._state_id], self._state_id)

    def create_lifecycle_publisher(self, *args: Any, **kwargs: Any) -> LifecyclePublisher:
        if "publisher_class" in kwargs:
            raise TypeError("create_publisher() got an unexpected keyword argument 'publisher_class'")
        pub = _Node.create_publisher(self, *args, **kwargs, publisher_class=LifecyclePublisher)
        self._managed_entities.add(pub)
        return pub

    def destroy_lifecycle_publisher(self, publisher: LifecyclePublisher) -> bool:
        self._managed_entities.discard(publisher)
        return _Node.destroy_publisher(self, publisher)

    def _entities(self, callback_name: str, state: LifecycleState) -> TransitionCallbackReturn:
        for entity in self._managed_entities:
            ret = getattr(entity, callback_name)(state)
            if ret is not TransitionCallbackReturn.SUCCESS:
                return ret
        return TransitionCallbackReturn.SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._entities("on_configure", state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._entities("on_cleanup", state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._entities("on_shutdown", state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._entities("on_activate", state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._entities("on_deactivate", state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._entities("on_error", state)

    def _execute(self, callback_name: str, previous: LifecycleState) -> TransitionCallbackReturn:
        try:
            ret = getattr(self, callback_name)(previous)
        except Exception:  # rclpy: "TODO(ivanpauno): log sth here" — swallowed without a log line
            return TransitionCallbackReturn.ERROR
        if not isinstance(ret, TransitionCallbackReturn):
            return TransitionCallbackReturn.ERROR
        return ret

    def _change_state(self, transition: str) -> TransitionCallbackReturn:
        allowed, callback_name, target = _TRANSITIONS[transition]
        if self._state_id not in allowed:
            raise RuntimeError(f"transition {transition!r} is not valid from state {self.current_state.label!r}")
        previous = self.current_state
        ret = self._execute(callback_name, previous)
        if ret is TransitionCallbackReturn.SUCCESS:
            self._state_id = target
        elif ret is TransitionCallbackReturn.ERROR:
            on_error = self._execute("on_error", previous)
            self._state_id = (StateMsg.PRIMARY_STATE_UNCONFIGURED if on_error is TransitionCallbackReturn.SUCCESS
                              else StateMsg.PRIMARY_STATE_FINALIZED)
        return ret

    def trigger_configure(self) -> TransitionCallbackReturn:
        return self._change_state("configure")

    def trigger_cleanup(self) -> TransitionCallbackReturn:
        return self._change_state("cleanup")

    def trigger_activate(self) -> TransitionCallbackReturn:
        return self._change_state("activate")

    def trigger_deactivate(self) -> TransitionCallbackReturn:
        return self._change_state("deactivate")

    def trigger_shutdown(self) -> TransitionCallbackReturn:
        return self._change_state("shutdown")


Node = LifecycleNode
State = LifecycleState
Publisher = LifecyclePublisher

__all__ = ["LifecycleNode", "LifecyclePublisher", "LifecycleState", "ManagedEntity", "Node", "Publisher", "State",
           "TransitionCallbackReturn"]
