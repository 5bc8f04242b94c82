"""sensor_msgs Image / CompressedImage contents → uint8 RGB, without ROS.

One conversion for the live node (act_policy.runtime) and for recorded rosbags and LeRobot
image columns (act_policy.data), so a policy sees the same pixels offline as on the robot.
Raw images stay a view of the message buffer when the rows are unpadded (``rgb8``, ``bgr8``,
``rgba8``, ``bgra8``, ``mono8``/``8UC1``); padded rows are copied once. YUV encodings and
compressed images need a codec: OpenCV (what cv_bridge uses, usually present next to ROS) when
importable, else PyAV (PNG and JPEG; the offline tools' decoder). Both are imported only when
such an image arrives, so the core stays NumPy-only.
"""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from act_policy.core.errors import ObservationError

CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8uc1": 1}
# encoding → (OpenCV colour conversion name, channels in the message); for encodings NumPy does not handle
OPENCV_CONVERSIONS = {"yuv422_yuy2": ("COLOR_YUV2RGB_YUY2", 2), "yuyv": ("COLOR_YUV2RGB_YUY2", 2),
                      "uyvy": ("COLOR_YUV2RGB_UYVY", 2), "yuv422": ("COLOR_YUV2RGB_UYVY", 2)}
_PYAV_FORMATS = {b"\x89PNG": "png_pipe", b"\xff\xd8": "jpeg_pipe"}  # magic bytes → FFmpeg demuxer
_OPENCV_INSTALL = "OpenCV (apt install python3-opencv, or pip install opencv-python-headless)"


@dataclass(frozen=True)
class RawImage:
    """The fields of sensor_msgs/Image (or CompressedImage) that conversion needs, ROS-free.

    For a compressed image only ``data`` and ``encoding`` (the message's ``format``) are used.
    """

    encoding: str
    data: Any  # bytes, bytearray, memoryview or uint8 array (rclpy gives array.array / bytes)
    height: int = 0
    width: int = 0
    step: int = 0
    compressed: bool = False

    @classmethod
    def from_message(cls, msg: Any, compressed: bool) -> RawImage:
        """The buffer of an rclpy or rosbags Image / CompressedImage message, not copied."""
        if compressed:
            return cls(msg.format, msg.data, compressed=True)
        return cls(msg.encoding, msg.data, int(msg.height), int(msg.width), int(msg.step))


def _optional(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _pyav_decode(av: Any, buffer: np.ndarray, image_format: str, source: str) -> np.ndarray:
    head = buffer[:4].tobytes()
    demuxer = next((d for magic, d in _PYAV_FORMATS.items() if head.startswith(magic)), None)
    if demuxer is None:
        raise ObservationError(f"{source}: compressed image (format {image_format!r}) is neither PNG nor JPEG "
                               f"(starts with {head!r}); PyAV decodes only those, {_OPENCV_INSTALL} more")
    try:
        with av.open(io.BytesIO(buffer.tobytes()), format=demuxer) as container:
            return next(container.decode(video=0)).to_ndarray(format="rgb24")
    except (av.error.FFmpegError, StopIteration) as exc:
        raise ObservationError(f"{source}: could not decode compressed image (format {image_format!r}): {exc}")


def decode_compressed(data: Any, image_format: str, source: str) -> np.ndarray:
    """PNG / JPEG (any format OpenCV reads) bytes → uint8 RGB (H, W, 3), with OpenCV or else PyAV."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    cv2 = _optional("cv2")
    if cv2 is not None:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        if bgr is None:
            raise ObservationError(f"{source}: could not decode compressed image (format {image_format!r})")
        return bgr[..., ::-1]
    av = _optional("av")
    if av is None:
        raise ObservationError(f"{source}: compressed image format {image_format!r} needs {_OPENCV_INSTALL} "
                               "or PyAV (pip install av)")
    return _pyav_decode(av, buffer, image_format, source)


def _opencv(what: str, source: str) -> Any:
    cv2 = _optional("cv2")
    if cv2 is None:
        raise ObservationError(f"{source}: {what} needs {_OPENCV_INSTALL}; "
                               "or configure the camera driver to publish rgb8/bgr8")
    return cv2


def decode_image(raw: RawImage, source: str) -> np.ndarray:
    """uint8 RGB (H, W, 3) at the message's resolution; a view of the buffer when possible.

    Errors are :class:`ObservationError` naming ``source`` (the topic, or file and message).
    """
    if raw.compressed:
        return decode_compressed(raw.data, raw.encoding, source)
    buffer = np.frombuffer(raw.data, dtype=np.uint8)
    encoding = raw.encoding.lower()
    channels = CHANNELS.get(encoding) or OPENCV_CONVERSIONS.get(encoding, (None, 0))[1]
    if not channels:
        supported = ", ".join([*CHANNELS, *OPENCV_CONVERSIONS])
        raise ObservationError(f"{source}: unsupported image encoding {raw.encoding!r}; expected one of {supported}")
    h, w, step = raw.height, raw.width, raw.step
    row = w * channels
    if h <= 0 or w <= 0 or step < row or buffer.size < step * h:
        raise ObservationError(f"{source}: inconsistent image: {w}x{h} {raw.encoding} needs step >= {row} and "
                               f"{row * h} bytes, got step {step} and {buffer.size} bytes")
    if step == row:
        pixels = buffer[: h * row].reshape(h, w, channels)  # zero-copy view
    else:
        pixels = np.ascontiguousarray(buffer[: h * step].reshape(h, step)[:, :row]).reshape(h, w, channels)
    if encoding in OPENCV_CONVERSIONS:
        cv2 = _opencv(f"encoding {raw.encoding!r}", source)
        return cv2.cvtColor(pixels, getattr(cv2, OPENCV_CONVERSIONS[encoding][0]))
    if channels == 1:
        return np.broadcast_to(pixels, (h, w, 3))
    if encoding.startswith("bgr"):
        return pixels[..., 2::-1]
    return pixels[..., :3]
