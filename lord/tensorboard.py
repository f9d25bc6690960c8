"""A minimal TensorBoard event-file writer, so TensorBoard is not a dependency of the toolkit.

An event file is a sequence of records, each

    uint64 length (little endian) | uint32 masked crc32c(length) | data | uint32 masked crc32c(data)

where data is a serialized `Event` protobuf. The first event only names the file format. The few
protobuf messages needed are encoded by hand:

    Event   {double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5}
    Summary {repeated Value value = 1}
    Value   {string tag = 1; float simple_value = 2; Image image = 4}
    Image   {int32 height = 1; int32 width = 2; int32 colorspace = 3;
             bytes encoded_image_string = 4}
"""

import math
import os
import socket
import struct
import time
from pathlib import Path

import numpy as np

from lord.errors import UserError
from lord.visualize import encode_png

FILE_VERSION = "brain.Event:2"

_CRC32C_POLYNOMIAL = 0x82F63B78  # Castagnoli, bit-reversed


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC32C_POLYNOMIAL if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    """CRC-32C of `data`; a table-driven loop is fast enough for log records."""
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    """The masked CRC the record format stores, so CRCs of data holding CRCs stay well spread."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _encode_record(data):
    length = struct.pack("<Q", len(data))
    return (
        length
        + struct.pack("<I", masked_crc32c(length))
        + data
        + struct.pack("<I", masked_crc32c(data))
    )


def _varint(value):
    value &= (1 << 64) - 1
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(field, wire_type):
    return _varint((field << 3) | wire_type)


def _varint_field(field, value):
    return _key(field, 0) + _varint(value)


def _double_field(field, value):
    return _key(field, 1) + struct.pack("<d", value)


def _bytes_field(field, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return _key(field, 2) + _varint(len(payload)) + payload


def _float_field(field, value):
    try:
        packed = struct.pack("<f", value)
    except OverflowError:
        packed = struct.pack("<f", math.copysign(math.inf, value))
    return _key(field, 5) + packed


def _encode_event(wall_time, step=0, file_version=None, summary_values=()):
    """A serialized Event; `summary_values` are serialized Summary.Value messages."""
    event = _double_field(1, wall_time) + _varint_field(2, step)
    if file_version is not None:
        event += _bytes_field(3, file_version)
    if summary_values:
        event += _bytes_field(5, b"".join(_bytes_field(1, value) for value in summary_values))
    return event


def _scalar_value(tag, value):
    return _bytes_field(1, tag) + _float_field(2, value)


def _image_value(tag, image):
    """A Summary.Value holding a uint8 (H, W, C) image, C in (1, 3), as PNG."""
    png = encode_png(image)
    height, width, channels = np.shape(image)
    image_message = (
        _varint_field(1, height)
        + _varint_field(2, width)
        + _varint_field(3, channels)
        + _bytes_field(4, png)
    )
    return _bytes_field(1, tag) + _bytes_field(4, image_message)


def _reason(error):
    return error.strerror or str(error)


class EventWriter:
    """Appends scalars and images to one new event file in `log_dir`.

    Nothing is created until the first write. Each record goes to the file in one `write` call and
    images are flushed at once, so a killed process leaves at most a truncated last record, which
    TensorBoard skips.
    """

    def __init__(self, log_dir):
        self.log_dir = Path(log_dir)
        self.path = None
        self.file = None
        self.closed = False

    def _open(self):
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create directory {self.log_dir}: {_reason(error)}") from None
        prefix = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        counter = 0
        while True:
            path = self.log_dir / f"{prefix}.{counter}"
            try:
                self.file = open(path, "xb")
                break
            except FileExistsError:
                counter += 1
            except OSError as error:
                raise UserError(f"cannot create {path}: {_reason(error)}") from None
        self.path = path
        self._write_record(_encode_event(time.time(), file_version=FILE_VERSION))

    def _write_record(self, event):
        try:
            self.file.write(_encode_record(event))
        except OSError as error:
            raise UserError(f"cannot write {self.path}: {_reason(error)}") from None

    def _write_event(self, event):
        if self.closed:
            raise ValueError("write to a closed EventWriter")
        if self.file is None:
            self._open()
        self._write_record(event)

    def add_scalar(self, tag, value, step, wall_time=None):
        wall_time = time.time() if wall_time is None else wall_time
        value = _scalar_value(tag, float(value))
        self._write_event(_encode_event(wall_time, int(step), summary_values=[value]))

    def add_image(self, tag, image, step, wall_time=None):
        """Log a uint8 (H, W, C) image, C in (1, 3), PNG-encoded."""
        wall_time = time.time() if wall_time is None else wall_time
        value = _image_value(tag, image)
        self._write_event(_encode_event(wall_time, int(step), summary_values=[value]))
        self.flush()

    def flush(self):
        if self.file is not None and not self.file.closed:
            try:
                self.file.flush()
            except OSError as error:
                raise UserError(f"cannot write {self.path}: {_reason(error)}") from None

    def close(self):
        self.closed = True
        if self.file is not None and not self.file.closed:
            try:
                self.flush()
            finally:
                self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
