"""Fake diagnostic_msgs (see test/fake_ros/README.md)."""
