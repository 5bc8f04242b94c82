"""Fake rclpy.callback_groups (rclpy/rclpy/callback_groups.py, jazzy): only the class names matter here."""


class CallbackGroup:
    pass


class ReentrantCallbackGroup(CallbackGroup):
    pass


class MutuallyExclusiveCallbackGroup(CallbackGroup):
    pass
