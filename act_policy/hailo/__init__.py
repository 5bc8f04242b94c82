"""Hailo NPU support shared by the compile kit and the ``hailo`` backend: what is compiled, named and fed how."""
