"""Fake of HailoRT's compiled binding module ``hailo_platform.pyhailort._pyhailort`` (the slice the fake uses).

Rules, from hailo-ai/hailort tag v4.23.0 (= branch ``hailo8``):

* C++ failures reach Python as ``_pyhailort.HailoRTStatusException`` whose only argument is the
  status *number* as a string: ``bindings/python/src/utils.hpp`` lines 25-28 (class) and 34-59
  (``THROW_STATUS_ERROR``/``VALIDATE_STATUS``/``VALIDATE_EXPECTED`` throw
  ``HailoRTStatusException(std::to_string(status))``).
* The three exception types are registered with ``py::register_exception`` without a base class
  (``bindings/python/src/pyhailort.cpp`` lines 1069-1071), so in Python they derive from
  ``Exception`` only — not from each other and not from ``pyhailort.HailoRTException``.
* ``get_status_message(n)`` returns the status name, or ``""`` for an unknown number
  (``pyhailort.cpp`` lines 101-110).
"""

from __future__ import annotations


class HailoRTException(Exception):
    pass


class HailoRTCustomException(Exception):
    pass


class HailoRTStatusException(Exception):
    pass


# The statuses the fake raises, numbered as in hailort/libhailort/include/hailo/hailort.h lines 89-182
# (v4.23.0). 36, 64 and 91-93 were renamed or added over 4.18-4.21; see _RENAMED_BEFORE below.
STATUS = {
    2: "HAILO_INVALID_ARGUMENT",
    4: "HAILO_TIMEOUT",
    6: "HAILO_INVALID_OPERATION",
    13: "HAILO_OPEN_FILE_FAILURE",
    26: "HAILO_INVALID_HEF",
    36: "HAILO_DRIVER_OPERATION_FAILED",
    61: "HAILO_NOT_FOUND",
    63: "HAILO_STREAM_ABORT",
    64: "HAILO_DRIVER_NOT_INSTALLED",
    73: "HAILO_DEVICE_IN_USE",
    74: "HAILO_OUT_OF_PHYSICAL_DEVICES",
    76: "HAILO_INVALID_DRIVER_VERSION",
    82: "HAILO_QUEUE_IS_FULL",
    85: "HAILO_DRIVER_INVALID_RESPONSE",
    91: "HAILO_HEF_FILE_CORRUPTED",
    92: "HAILO_HEF_NOT_SUPPORTED",
    93: "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE",
}
# v4.18.0/v4.19.0 hailort.h lines 124 and 152: HAILO_DRIVER_FAIL and HAILO_PCIE_DRIVER_NOT_INSTALLED;
# 91-93 do not exist before v4.21.0 (v4.21.0 hailort.h lines 180-182).
_RENAMED_BEFORE = {(4, 20): {36: "HAILO_DRIVER_FAIL", 64: "HAILO_PCIE_DRIVER_NOT_INSTALLED"},
                   (4, 21): {91: "", 92: "", 93: ""}}


def get_status_message(status: int) -> str:
    from hailo_platform.pyhailort.pyhailort import SYSTEM

    name = STATUS.get(int(status), "")
    for before, renamed in _RENAMED_BEFORE.items():
        if SYSTEM.release < before and int(status) in renamed:
            name = renamed[int(status)]
    return name


def status_error(name: str) -> HailoRTStatusException:
    """What a failing C++ call throws: the status number, nothing else."""
    return HailoRTStatusException(str(next(n for n, s in STATUS.items() if s == name)))
