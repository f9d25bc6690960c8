"""Arrays that live in a file and are mapped, not read: the big members of a preprocessed .npz, and
the images a preprocess run decodes before it writes them.

A read-only shared mapping puts the file's pages in the page cache once per machine, however many
processes map it, and in no process's own (anonymous) memory. Pages a process has touched through a
mapping stay in its resident set until unmapped or released; `release` drops them (the page cache keeps
them), so that copying a mapped set through one process does not grow that process's memory.
"""

import mmap
import os
import struct
import tempfile
import zipfile

import numpy as np

LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")
LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"
NPY_HEADER_LIMIT = 10_000


class Damaged(ValueError):
    """A member whose headers or sizes do not fit the file: a damaged or truncated file."""


class NotMappable(Exception):
    """A member that is fine but cannot be mapped (compressed, Fortran order): it is read instead."""


def map_file(path):
    """A read-only shared mapping of the whole file at `path`."""
    with open(path, "rb") as file:
        return mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)


def npz_member(mapping, info, file_size):
    """The array stored in zip member `info` of the file behind `mapping`, as a view of the mapping.

    Every offset and size is checked against the file's size before anything is mapped.
    """
    if info.flag_bits & 0x1:
        raise NotMappable("encrypted")
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        raise NotMappable("compressed")
    start = info.header_offset
    if start < 0 or start + LOCAL_HEADER.size > file_size:
        raise Damaged(f"member {info.filename} starts beyond the end of the file")
    fields = LOCAL_HEADER.unpack_from(mapping, start)
    if fields[0] != LOCAL_HEADER_SIGNATURE:
        raise Damaged(f"member {info.filename} has no valid local header")
    name_length, extra_length = fields[-2], fields[-1]
    data_start = start + LOCAL_HEADER.size + name_length + extra_length
    data_end = data_start + info.file_size
    if data_end > file_size:
        raise Damaged(f"member {info.filename} runs past the end of the file ({data_end} > {file_size} bytes)")
    header = _MappedReader(mapping, data_start, data_end)
    try:
        version = np.lib.format.read_magic(header)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(header, NPY_HEADER_LIMIT)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(header, NPY_HEADER_LIMIT)
        else:
            raise NotMappable(f"npy format version {version}")
    except ValueError as error:
        raise Damaged(f"member {info.filename}: {error}") from None
    if dtype.hasobject:
        raise Damaged(f"member {info.filename} holds Python objects, which are not allowed")
    if fortran_order:
        raise NotMappable("Fortran order")
    count = int(np.prod(shape, dtype=np.int64)) if shape else 1
    offset = header.position
    if count < 0 or offset + count * dtype.itemsize > data_end:
        raise Damaged(
            f"member {info.filename} declares {shape} {dtype} ({count * dtype.itemsize} bytes) but holds "
            f"{data_end - offset}"
        )
    if count == 0:
        return np.empty(shape, dtype)
    return np.frombuffer(mapping, dtype=dtype, count=count, offset=offset).reshape(shape)


class _MappedReader:
    """The `read` numpy's header parser needs, over a bounded range of a mapping."""

    def __init__(self, mapping, start, end):
        self.mapping, self.position, self.end = mapping, start, end

    def read(self, size):
        size = max(0, min(size, self.end - self.position))
        data = self.mapping[self.position : self.position + size]
        self.position += size
        return data


def mapping_of(array):
    """The mmap an array views, or None."""
    base = array
    while base is not None:
        if isinstance(base, mmap.mmap):
            return base
        base = getattr(base, "base", None) if not isinstance(base, memoryview) else base.obj
    return None


def release(array):
    """Drop this process's resident pages of the mapping `array` views (a no-op for other arrays)."""
    mapping = mapping_of(array)
    if mapping is None or mapping.closed or array.size == 0:
        return
    origin = np.frombuffer(mapping, dtype=np.uint8, count=1).ctypes.data
    first = array.ctypes.data - origin
    extent = first + _span(array)
    page = mmap.PAGESIZE
    start = max(0, first // page * page)
    end = min(len(mapping), -(-extent // page) * page)
    if end > start:
        mapping.madvise(mmap.MADV_DONTNEED, start, end - start)


def _span(array):
    """Bytes from the first element of `array` to the end of its last (positive strides)."""
    return sum((size - 1) * stride for size, stride in zip(array.shape, array.strides)) + array.itemsize


class Spool:
    """Rows of one array written to an unnamed temporary file as they come, then mapped read-only.

    The file lives in `directory` (the output's own directory, so it is on a disk, not in memory)
    and has no name: nothing is left behind whatever happens to the process.
    """

    def __init__(self, directory, row_shape, dtype):
        self.row_shape = tuple(row_shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.file = tempfile.TemporaryFile(dir=directory)
        self.rows = 0

    def append(self, rows):
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]} appended to a spool of {self.row_shape}")
        data, offset = memoryview(rows).cast("B"), self.rows * self.row_bytes
        while len(data):
            written = os.pwrite(self.file.fileno(), data, offset)
            data, offset = data[written:], offset + written
        self.rows += len(rows)

    def finish(self):
        """The rows written, as a read-only array mapped from the file (which is then closed)."""
        try:
            shape = (self.rows,) + self.row_shape
            if self.rows == 0 or self.row_bytes == 0:
                return np.empty(shape, self.dtype)
            mapping = mmap.mmap(self.file.fileno(), self.rows * self.row_bytes, access=mmap.ACCESS_READ)
            return np.frombuffer(mapping, dtype=self.dtype, count=self.rows * self.row_bytes // self.dtype.itemsize
                                 ).reshape(shape)
        finally:
            self.file.close()

    def close(self):
        self.file.close()
