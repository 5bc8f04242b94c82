"""Fake builtin_interfaces (see test/fake_ros/README.md)."""
