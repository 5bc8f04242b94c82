"""pip / setuptools entry point for the ROS-free parts (metadata lives in setup.cfg).

Inside a ROS 2 workspace the package is built by ament_cmake (CMakeLists.txt), which also
generates the messages in msg/; this file serves ``pip install -e .`` without ROS.
"""

from setuptools import setup

setup()
