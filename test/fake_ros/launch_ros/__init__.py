"""Fake ``launch_ros`` (ros2/launch_ros, jazzy 0.26.x): the actions, event handler, event and
substitution act_policy's launch files use, with the real keyword-only signatures. Like launch_ros
0.26.6, ``LifecycleNode`` has no ``autostart`` argument (it arrived in 0.26.7)."""
