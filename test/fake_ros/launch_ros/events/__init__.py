"""Fake launch_ros.events."""
