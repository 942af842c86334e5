"""A reader of TensorFlow checkpoints (the V2 "tensor bundle": ``PREFIX.index`` and ``PREFIX.data-NNNNN-of-NNNNN``),
written for the importers so that reading the originals' released weights needs no TensorFlow.

Why a reader rather than TensorFlow: the format is small and stable (an SSTable of protocol-buffer entries that
point into raw little-endian tensor bytes), the releases it serves are fixed files, and TensorFlow is a large
install that would otherwise be needed for three functions; the reader is tested against checkpoints that
TensorFlow itself wrote (tests/fixtures/tf_*). What it reads:

* the index: a LevelDB-format table (48-byte footer with the magic ``0xdb4775248b80fb57``; blocks of
  prefix-compressed keys with a restart array, each block followed by its compression byte and CRC; Snappy blocks
  decompressed by :func:`snappy_decompress`); the empty key holds the ``BundleHeaderProto`` (shard count,
  endianness), every other key a variable's ``BundleEntryProto`` (dtype, shape, shard, offset, size);
* the data shards: each tensor's bytes at its offset, as numbers of its dtype (float32/64, bfloat16, float16,
  integers, bool). String tensors are skipped; partitioned variables (slices) are refused.

Nothing in the files is executed: protocol buffers are parsed field by field and tensors are read as numbers.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from .folder import PretrainedError

MAGIC = 0xDB4775248B80FB57
#: TensorFlow's DataType enum -> numpy dtype (bfloat16 is read as 16-bit words and widened)
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64, 10: np.bool_,
          14: "bfloat16", 17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}
STRING = 7


class CheckpointFormatError(PretrainedError):
    """A file that is not a readable TensorFlow checkpoint."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise CheckpointFormatError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def protobuf_fields(data: bytes) -> list[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a serialized protocol buffer: varints and fixed numbers as ints,
    length-delimited fields as bytes."""
    fields, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", data, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos: pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", data, pos)[0], pos + 4
        else:
            raise CheckpointFormatError(f"unsupported protocol buffer wire type {wire}")
        fields.append((number, wire, value))
    return fields


def snappy_decompress(data: bytes) -> bytes:
    """Snappy's raw format: the uncompressed length, then literals and back-references."""
    length, pos = _varint(data, 0)
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            size = tag >> 2
            if size >= 60:
                extra = size - 59
                size = int.from_bytes(data[pos: pos + extra], "little")
                pos += extra
            size += 1
            out += data[pos: pos + size]
            pos += size
            continue
        if kind == 1:
            size, offset = 4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            size, offset = (tag >> 2) + 1, int.from_bytes(data[pos: pos + 2], "little")
            pos += 2
        else:
            size, offset = (tag >> 2) + 1, int.from_bytes(data[pos: pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise CheckpointFormatError("corrupt Snappy block")
        for _ in range(size):  # copies may overlap their own output
            out.append(out[-offset])
    if len(out) != length:
        raise CheckpointFormatError("corrupt Snappy block (wrong length)")
    return bytes(out)


def _block(table: bytes, offset: int, size: int) -> bytes:
    raw = table[offset: offset + size]
    kind = table[offset + size] if offset + size < len(table) else None
    if len(raw) != size or kind is None:
        raise CheckpointFormatError("truncated table block")
    if kind == 1:
        return snappy_decompress(raw)
    if kind != 0:
        raise CheckpointFormatError(f"unsupported table block compression {kind}")
    return raw


def _entries(block: bytes) -> list[tuple[bytes, bytes]]:
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    end = len(block) - 4 * (restarts + 1)
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        size, pos = _varint(block, pos)
        key = key[:shared] + block[pos: pos + unshared]
        pos += unshared
        entries.append((key, block[pos: pos + size]))
        pos += size
    return entries


def _handle(data: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(data, pos)
    size, pos = _varint(data, pos)
    return offset, size, pos


def read_index(path: Path) -> dict[bytes, bytes]:
    """Every key and value of the table at ``path`` (a checkpoint's .index)."""
    table = path.read_bytes()
    if len(table) < 48 or struct.unpack_from("<Q", table, len(table) - 8)[0] != MAGIC:
        raise CheckpointFormatError(f"{path}: not a TensorFlow checkpoint index (no table magic)")
    footer = table[-48:]
    _, _, pos = _handle(footer)  # the metaindex block (filters): not needed
    index_offset, index_size, _ = _handle(footer, pos)
    found = {}
    for _, handle in _entries(_block(table, index_offset, index_size)):
        offset, size, _ = _handle(handle)
        found.update(_entries(_block(table, offset, size)))
    return found


def checkpoint_prefix(source: str | Path) -> Path:
    """The checkpoint's prefix from what a user passes: the prefix, its .index file, or a folder (its ``checkpoint``
    file's ``model_checkpoint_path``, else its one .index)."""
    path = Path(source)
    if path.suffix == ".index":
        return path.with_suffix("")
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
            for line in state.read_text().splitlines():
                if line.startswith("model_checkpoint_path:"):
                    name = line.split(":", 1)[1].strip().strip('"')
                    return Path(name) if Path(name).is_absolute() else path / name
        indexes = sorted(path.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        raise CheckpointFormatError(f"{path}: {'no' if not indexes else 'several'} TensorFlow checkpoints (*.index) in it; pass one's prefix")
    return path


def read_tf_checkpoint(source: str | Path) -> dict[str, torch.Tensor]:
    """Every numeric variable of a TensorFlow V2 checkpoint, by name (float32 stays float32; bfloat16 becomes
    bfloat16)."""
    prefix = checkpoint_prefix(source)
    index = Path(f"{prefix}.index")
    if not index.is_file():
        raise CheckpointFormatError(f"{prefix}: no {index.name} (a TensorFlow V2 checkpoint is PREFIX.index plus PREFIX.data-*)")
    entries = read_index(index)
    header = {n: v for n, _, v in protobuf_fields(entries.pop(b"", b""))}
    shards, endianness = int(header.get(1, 1)), int(header.get(2, 0))
    if endianness != 0:
        raise CheckpointFormatError(f"{prefix}: a big-endian checkpoint")
    files: dict[int, object] = {}
    tensors: dict[str, torch.Tensor] = {}
    try:
        for key, value in entries.items():
            name = key.decode()
            fields = protobuf_fields(value)
            get = lambda number, default=0: next((v for n, _, v in fields if n == number), default)  # noqa: E731
            dtype = int(get(1))
            if dtype == STRING:
                continue
            if any(n == 7 for n, _, _ in fields):
                raise CheckpointFormatError(f"{prefix}: '{name}' is a partitioned variable (slices), which this reader does not assemble")
            if dtype not in DTYPES:
                raise CheckpointFormatError(f"{prefix}: '{name}' has TensorFlow dtype {dtype}, which this reader does not know")
            shape_fields = protobuf_fields(get(2, b""))
            shape = [next((v for n, _, v in protobuf_fields(d) if n == 1), 0) for n, _, d in shape_fields if n == 2]
            shard, offset, size = int(get(3)), int(get(4)), int(get(5))
            if shard not in files:
                data = Path(f"{prefix}.data-{shard:05d}-of-{shards:05d}")
                if not data.is_file():
                    raise CheckpointFormatError(f"{prefix}: missing data shard {data.name}")
                files[shard] = open(data, "rb")  # noqa: SIM115 - closed below
            f = files[shard]
            f.seek(offset)
            raw = f.read(size)
            kind = DTYPES[dtype]
            if kind == "bfloat16":
                array = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
                tensor = torch.from_numpy(array.view(np.float32).copy()).to(torch.bfloat16)
            else:
                array = np.frombuffer(raw, dtype=np.dtype(kind).newbyteorder("<"))
                tensor = torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))
            if tensor.numel() != int(np.prod(shape, dtype=np.int64)):
                raise CheckpointFormatError(f"{prefix}: '{name}' holds {tensor.numel()} values for its shape {shape}")
            tensors[name] = tensor.reshape(shape)
    finally:
        for f in files.values():
            f.close()
    return tensors
