"""Fake std_msgs (see test/fake_ros/README.md)."""
