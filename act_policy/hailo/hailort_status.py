"""What a HailoRT failure was, read from whatever exception HailoRT raised, and what to do about it.

HailoRT's Python package raises three kinds of exception (hailo-ai/hailort v4.18-v4.23,
``hailort/libhailort/bindings/python/``):

* ``_pyhailort.HailoRTStatusException`` whose only argument is the status *number*, e.g. ``"76"``
  (``src/utils.hpp``), from calls made outside pyhailort's ``ExceptionWrapper`` — among them
  ``Device.scan()`` and ``Device(...)``. It derives from ``Exception`` only.
* ``HailoRTException`` or a typed subclass, raised by ``ExceptionWrapper`` ``from`` the status
  exception, so the number is in ``__cause__``; untyped statuses read
  ``"libhailort failed with error: N (HAILO_NAME)"`` (``pyhailort.py`` lines 115-179 at v4.23.0).
* The typed exceptions that ``run_async`` hands to its callback as ``completion_info.exception``,
  made by ``create_exception_from_status`` directly: no ``__cause__``, no number — only the class says
  which status it was (``pyhailort.py`` lines 125-162 at v4.23.0, lines 117-150 at v4.18.0).
* Plain Python errors (``HailoRTException("HailoRT device not found in the system")``, ValueError...).

Status numbers and names: ``hailort/libhailort/include/hailo/hailort.h`` lines 89-182 (v4.23.0).
"""

from __future__ import annotations

import re

# Statuses act_policy can give advice for. Names as in v4.23.0; 36 and 64 had other names before 4.20.
STATUS_NAMES = {
    2: "HAILO_INVALID_ARGUMENT",
    4: "HAILO_TIMEOUT",
    6: "HAILO_INVALID_OPERATION",
    15: "HAILO_UNSUPPORTED_CONTROL_PROTOCOL_VERSION",
    18: "HAILO_FW_CONTROL_FAILURE",
    19: "HAILO_ETH_FAILURE",
    21: "HAILO_ETH_RECV_FAILURE",
    25: "HAILO_INVALID_FRAME",
    26: "HAILO_INVALID_HEF",
    36: "HAILO_DRIVER_OPERATION_FAILED",
    48: "HAILO_UNSUPPORTED_OPCODE",
    61: "HAILO_NOT_FOUND",
    62: "HAILO_COMMUNICATION_CLOSED",
    63: "HAILO_STREAM_ABORT",
    64: "HAILO_DRIVER_NOT_INSTALLED",
    69: "HAILO_NETWORK_GROUP_NOT_ACTIVATED",
    73: "HAILO_DEVICE_IN_USE",
    74: "HAILO_OUT_OF_PHYSICAL_DEVICES",
    76: "HAILO_INVALID_DRIVER_VERSION",
    77: "HAILO_RPC_FAILED",
    78: "HAILO_INVALID_SERVICE_VERSION",
    82: "HAILO_QUEUE_IS_FULL",
    85: "HAILO_DRIVER_INVALID_RESPONSE",
    86: "HAILO_DRIVER_INVALID_IOCTL",
    89: "HAILO_CONNECTION_REFUSED",
    91: "HAILO_HEF_FILE_CORRUPTED",
    92: "HAILO_HEF_NOT_SUPPORTED",
    93: "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE",
}

# The class create_exception_from_status picks for each status (the inverse of pyhailort.py lines 125-162).
TYPED_STATUS = {
    "UdpRecvError": 21, "InvalidProtocolVersionException": 15, "HailoRTFirmwareControlFailedException": 18,
    "HailoRTUnsupportedOpcodeException": 48, "HailoRTInvalidFrameException": 25, "HailoRTTimeout": 4,
    "HailoRTStreamAborted": 63, "HailoRTInvalidOperationException": 6, "HailoRTInvalidArgumentException": 2,
    "HailoRTNotFoundException": 61, "HailoRTInvalidHEFException": 26, "HailoRTHEFNotCompatibleWithDevice": 93,
    "HailoRTEthException": 19, "HailoRTDriverOperationFailedException": 36, "HailoRTPCIeDriverException": 36,
    "HailoCommunicationClosedException": 62, "HailoRTNetworkGroupNotActivatedException": 69,
}

_VERSIONS = "`dpkg -l | grep -i hailo` lists the installed HailoRT and driver packages and their versions"
_DRIVER_MISMATCH = (
    "the hailo_pci kernel driver and the HailoRT library are different releases; they must match exactly. "
    f"{_VERSIONS}. Raspberry Pi OS: `sudo apt update && sudo apt full-upgrade` (hailo-all upgrades both), then "
    "reboot. Ubuntu: install the hailort and hailort-pcie-driver .deb packages of the SAME release (and the "
    "hailort wheel of that release), then reboot so the new driver is loaded")
_DRIVER_MISSING = ("the hailo_pci driver is not loaded: `lsmod | grep hailo_pci`, `dmesg | grep -i hailo`; "
                   "reinstall the driver package of your HailoRT release (Raspberry Pi OS: hailo-all; Ubuntu: "
                   "hailort-pcie-driver .deb) and reboot")
_BUSY = ("another process holds the Hailo device: stop it (`sudo lsof /dev/hailo0`), or let every process share "
         "it through the HailoRT service (backend option multi_process=true, `sudo systemctl enable --now "
         "hailort`)")
_NEWER_HEF = ("the HEF was compiled by a Dataflow Compiler newer than this HailoRT. The DFC release must be the "
              "one made for the robot's HailoRT (DFC 3.28-3.33 ↔ HailoRT 4.18-4.23): recompile the kit with that "
              "DFC, or upgrade HailoRT and its driver together")
ADVICE = {
    "HAILO_INVALID_DRIVER_VERSION": _DRIVER_MISMATCH,
    "HAILO_DRIVER_INVALID_RESPONSE": _DRIVER_MISMATCH,
    "HAILO_DRIVER_INVALID_IOCTL": _DRIVER_MISMATCH,
    "HAILO_DRIVER_NOT_INSTALLED": _DRIVER_MISSING,
    "HAILO_PCIE_DRIVER_NOT_INSTALLED": _DRIVER_MISSING,
    "HAILO_DRIVER_OPERATION_FAILED": _DRIVER_MISSING,
    "HAILO_DRIVER_FAIL": _DRIVER_MISSING,
    "HAILO_NOT_FOUND": ("no such Hailo device: check `lspci | grep -i hailo` and `hailortcli fw-control identify`; "
                        "on the AI Kit set `dtparam=pciex1_gen=3` in /boot/firmware/config.txt"),
    "HAILO_DEVICE_IN_USE": _BUSY,
    "HAILO_OUT_OF_PHYSICAL_DEVICES": _BUSY,
    "HAILO_RPC_FAILED": "the HailoRT service is not reachable: `sudo systemctl enable --now hailort`",
    "HAILO_CONNECTION_REFUSED": "the HailoRT service is not reachable: `sudo systemctl enable --now hailort`",
    "HAILO_INVALID_SERVICE_VERSION": f"the running hailort service is another release than this library; {_VERSIONS}",
    "HAILO_HEF_NOT_SUPPORTED": _NEWER_HEF,
    "HAILO_INVALID_HEF": ("this HailoRT cannot read the HEF. Before HailoRT 4.21 this status also means that the HEF "
                          "came from a newer Dataflow Compiler (recompile with the DFC release made for this HailoRT) "
                          "or was compiled for another chip (recompile with the --arch of this device)"),
    "HAILO_HEF_FILE_CORRUPTED": "the HEF file is damaged (truncated copy?): copy it again from the kit's hef/ folder",
    "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE": ("the HEF was compiled for another chip (a Hailo-8L runs only hailo8l "
                                             "HEFs): recompile with `act-policy hailo-prepare ... --arch` of this "
                                             "device"),
    "HAILO_QUEUE_IS_FULL": "more frames were queued than the model's async queue holds",
    "HAILO_STREAM_ABORT": "the configured model was shut down after an earlier error; recreate the backend",
}

_UNTYPED = re.compile(r"libhailort failed with error: (\d+)(?: \((\w*)\))?")


def hailort_status(exc: BaseException) -> tuple[int | None, str | None]:
    """(status number, status name) carried by a HailoRT exception, or (None, None)."""
    for e in (exc, exc.__cause__):
        if e is None:
            continue
        if type(e).__name__ == "HailoRTStatusException" and e.args and str(e.args[0]).strip().isdigit():
            number = int(str(e.args[0]).strip())
            return number, _status_name(number)
        match = _UNTYPED.search(str(e))
        if match:
            return int(match.group(1)), match.group(2) or _status_name(int(match.group(1)))
    number = TYPED_STATUS.get(type(exc).__name__)
    return (number, _status_name(number)) if number is not None else (None, None)


def _status_name(number: int) -> str | None:
    """The installed HailoRT's own name for ``number`` (it knows every status), else our table's."""
    try:
        from hailo_platform.pyhailort import _pyhailort

        return _pyhailort.get_status_message(number) or STATUS_NAMES.get(number)
    except Exception:  # not installed, or a release without get_status_message: fall back to our table
        return STATUS_NAMES.get(number)


def explain(exc: BaseException) -> str:
    """One line: the status (name and number) or the exception, then what to do for known statuses."""
    number, name = hailort_status(exc)
    if number is None:
        return f"{type(exc).__name__}: {exc}"
    what = f"{name or 'unknown status'} (HailoRT status {number})"
    advice = ADVICE.get(name or "")
    return f"{what}: {advice}" if advice else f"{what}; HailoRT said: {type(exc).__name__}: {exc}"
