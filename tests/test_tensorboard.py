import io
import os
import re
import socket
import struct

import numpy as np
import pytest
from PIL import Image

from lord.tensorboard import EventWriter, crc32c, masked_crc32c


def bitwise_crc32c(data):
    """A slow reference CRC-32C, independent of the writer's table."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    return crc ^ 0xFFFFFFFF


def reference_mask(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32


def read_varint(data, position):
    value, shift = 0, 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def parse_message(data):
    """Protobuf wire format -> {field number: [raw values]}."""
    fields = {}
    position = 0
    while position < len(data):
        key, position = read_varint(data, position)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = read_varint(data, position)
        elif wire_type == 1:
            value, position = data[position : position + 8], position + 8
        elif wire_type == 2:
            length, position = read_varint(data, position)
            value, position = data[position : position + length], position + length
        elif wire_type == 5:
            value, position = data[position : position + 4], position + 4
        else:
            raise AssertionError(f"unexpected wire type {wire_type}")
        fields.setdefault(field, []).append(value)
    assert position == len(data)
    return fields


def as_int64(value):
    return value - 2**64 if value >= 2**63 else value


def decode_event(data):
    event = parse_message(data)
    decoded = {
        "wall_time": struct.unpack("<d", event[1][0])[0],
        "step": as_int64(event.get(2, [0])[0]),
        "file_version": event[3][0].decode() if 3 in event else None,
        "values": [],
    }
    for summary in event.get(5, []):
        for raw_value in parse_message(summary).get(1, []):
            value = parse_message(raw_value)
            tag = value[1][0].decode()
            if 2 in value:
                decoded["values"].append((tag, struct.unpack("<f", value[2][0])[0]))
            if 4 in value:
                image = parse_message(value[4][0])
                decoded["values"].append(
                    (
                        tag,
                        {
                            "height": image[1][0],
                            "width": image[2][0],
                            "colorspace": image[3][0],
                            "png": image[4][0],
                        },
                    )
                )
    return decoded


def read_records(path):
    data = path.read_bytes()
    records = []
    position = 0
    while position < len(data):
        header = data[position : position + 12]
        length = struct.unpack("<Q", header[:8])[0]
        assert struct.unpack("<I", header[8:])[0] == reference_mask(bitwise_crc32c(header[:8]))
        body = data[position + 12 : position + 12 + length]
        footer = data[position + 12 + length : position + 16 + length]
        assert len(body) == length and len(footer) == 4, "truncated record"
        assert struct.unpack("<I", footer)[0] == reference_mask(bitwise_crc32c(body))
        records.append(body)
        position += 16 + length
    return records


def read_events(path):
    return [decode_event(record) for record in read_records(path)]


def only_event_file(directory):
    files = sorted(directory.iterdir())
    assert len(files) == 1
    return files[0]


def decode_png(png):
    return np.asarray(Image.open(io.BytesIO(png)))


def test_crc32c_check_value():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    data = bytes(range(256)) * 3
    assert crc32c(data) == bitwise_crc32c(data)
    assert masked_crc32c(data) == reference_mask(bitwise_crc32c(data))


def test_scalars_and_images_read_back(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (4, 6, 1), dtype=np.uint8)
    with EventWriter(tmp_path) as writer:
        writer.add_scalar("loss/reconstruction", 0.25, step=0, wall_time=100.5)
        writer.add_scalar("loss/reconstruction", 0.125, step=1)
        writer.add_scalar("lr", 3e-4, step=2**40)
        writer.add_scalar("overflow", 1e40, step=-3)
        writer.add_image("samples/rgb", rgb, step=7)
        writer.add_image("samples/gray", gray, step=8)

    events = read_events(only_event_file(tmp_path))
    assert events[0]["file_version"] == "brain.Event:2"
    assert events[0]["values"] == []
    assert events[1]["wall_time"] == 100.5
    scalars = [(e["step"], *e["values"][0]) for e in events[1:5]]
    assert scalars == [
        (0, "loss/reconstruction", 0.25),
        (1, "loss/reconstruction", 0.125),
        (2**40, "lr", float(np.float32(3e-4))),
        (-3, "overflow", float("inf")),
    ]
    for event, tag, image, colorspace in [
        (events[5], "samples/rgb", rgb, 3),
        (events[6], "samples/gray", gray, 1),
    ]:
        [(value_tag, decoded)] = event["values"]
        assert value_tag == tag
        assert (decoded["height"], decoded["width"]) == image.shape[:2]
        assert decoded["colorspace"] == colorspace
        np.testing.assert_array_equal(decode_png(decoded["png"]).reshape(image.shape), image)
    assert len(events) == 7


def test_nothing_is_created_before_the_first_write(tmp_path):
    log_dir = tmp_path / "tensorboard" / "model"
    writer = EventWriter(log_dir)
    writer.close()
    assert not log_dir.exists()

    with EventWriter(log_dir) as writer:
        assert not log_dir.exists()
        writer.add_scalar("loss", 1.0, step=0)
    name = only_event_file(log_dir).name
    pattern = rf"events\.out\.tfevents\.\d+\.{re.escape(socket.gethostname())}\.{os.getpid()}\.\d+"
    assert re.fullmatch(pattern, name)


def test_writers_sharing_a_directory_get_separate_files(tmp_path):
    with EventWriter(tmp_path) as first, EventWriter(tmp_path) as second:
        first.add_scalar("a", 1.0, step=0)
        second.add_scalar("b", 2.0, step=0)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2
    tags = sorted(read_events(path)[1]["values"][0][0] for path in files)
    assert tags == ["a", "b"]


def test_images_and_flushed_scalars_are_on_disk_before_close(tmp_path):
    writer = EventWriter(tmp_path)
    writer.add_scalar("loss", 0.5, step=1)
    writer.flush()
    assert [e["values"] for e in read_events(only_event_file(tmp_path))] == [[], [("loss", 0.5)]]

    writer.add_image("grid", np.zeros((2, 2, 3), np.uint8), step=2)
    events = read_events(only_event_file(tmp_path))
    assert events[-1]["values"][0][0] == "grid"
    writer.close()


def test_rejects_bad_images_and_writes_after_close(tmp_path):
    writer = EventWriter(tmp_path)
    with pytest.raises(ValueError):
        writer.add_image("bad", np.zeros((2, 2, 4), np.uint8), step=0)
    with pytest.raises(ValueError):
        writer.add_image("bad", np.zeros((2, 2, 3), np.float32), step=0)
    writer.close()
    with pytest.raises(ValueError):
        writer.add_scalar("late", 1.0, step=0)


def test_tensorboard_reads_the_directory(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    image = np.random.default_rng(1).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    with EventWriter(tmp_path) as writer:
        for step, value in enumerate([1.5, 0.75, 0.375]):
            writer.add_scalar("loss", value, step)
        writer.add_image("samples", image, step=3)

    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert accumulator.Tags()["scalars"] == ["loss"]
    assert accumulator.Tags()["images"] == ["samples"]
    assert [(s.step, s.value) for s in accumulator.Scalars("loss")] == [
        (0, 1.5),
        (1, 0.75),
        (2, 0.375),
    ]
    (logged,) = accumulator.Images("samples")
    assert (logged.step, logged.height, logged.width) == (3, 6, 9)
    np.testing.assert_array_equal(decode_png(logged.encoded_image_string), image)


def test_tensorboard_skips_a_truncated_last_record(tmp_path):
    """What a process killed in the middle of a write leaves behind."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with EventWriter(tmp_path) as writer:
        writer.add_scalar("loss", 1.0, step=0)
        writer.add_image("samples", np.zeros((4, 4, 1), np.uint8), step=1)
        writer.add_scalar("loss", 2.0, step=2)
    path = only_event_file(tmp_path)
    os.truncate(path, path.stat().st_size - 5)

    accumulator = EventAccumulator(str(tmp_path))
    accumulator.Reload()
    assert [(s.step, s.value) for s in accumulator.Scalars("loss")] == [(0, 1.0)]
    assert [image.step for image in accumulator.Images("samples")] == [1]
