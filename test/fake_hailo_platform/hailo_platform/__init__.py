"""Test fake of ``hailo_platform``: the same top-level names as HailoRT 4.x exports (its ``__init__.py``).

``__version__`` reads the fake system's configured version so tests can emulate old releases.
``EMULATED`` (absent from the real package) lets reports label numbers from this fake as emulated.
"""

from hailo_platform.pyhailort.pyhailort import (
    HEF,
    SYSTEM,
    Device,
    FormatOrder,
    FormatType,
    HailoCommunicationClosedException,
    HailoRTException,
    HailoRTStreamAbortedByUser,
    HailoSchedulingAlgorithm,
    VDevice,
)

EMULATED = True


def __getattr__(name: str) -> str:
    if name == "__version__":
        return SYSTEM.version
    raise AttributeError(name)


__all__ = ["HEF", "Device", "FormatOrder", "FormatType", "HailoCommunicationClosedException", "HailoRTException",
           "HailoRTStreamAbortedByUser", "HailoSchedulingAlgorithm", "VDevice"]
