"""Fake launch_ros.substitutions.FindPackageShare (substitutions/find_package.py, jazzy)."""

from __future__ import annotations


class FindPackageShare:
    def __init__(self, package: str) -> None:
        self.package = package
