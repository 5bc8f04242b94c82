"""Fake rcl_interfaces (see test/fake_ros/README.md)."""
