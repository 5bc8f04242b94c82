"""Fake std_srvs (see test/fake_ros/README.md)."""
