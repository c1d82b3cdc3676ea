#!/usr/bin/python3
"""Independent reader of TensorBoard event files, used by tests/train/test_metrics.c.

TensorBoard itself is not packaged for Debian, so this parses the file the way TensorBoard's
reader does, with the standard library only: TFRecord framing (uint64 LE length, masked
CRC-32C of the length, data, masked CRC-32C of the data), CRC-32C computed bit by bit here,
and a minimal protobuf decoder for Event / Summary / Value / SessionLog.

Usage: check_tfevents.py FILE
Prints one JSON document to stdout:
  {"file_version": "brain.Event:2",
   "events": [{"wall_time": 1.5, "step": 3, "values": [["tag", float32_bits], ...],
               "session_log": null | status}, ...]}
float values are given as their IEEE float32 bit patterns so NaN/Inf compare exactly.
Exits 1 with a message on stderr when any record is malformed or any CRC is wrong.
"""
import json
import struct
import sys


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283
assert crc32c(bytes(32)) == 0x8A9136AA


class DecodeError(Exception):
    pass


def varint(buf: bytes, pos: int):
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise DecodeError("varint too long")


def fields(buf: bytes):
    """Yields (field number, wire type, value) over one message."""
    pos = 0
    while pos < len(buf):
        key, pos = varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise DecodeError("truncated fixed64")
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = varint(buf, pos)
            if pos + n > len(buf):
                raise DecodeError("truncated length-delimited field %d" % field)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            if pos + 4 > len(buf):
                raise DecodeError("truncated fixed32")
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise DecodeError("unsupported wire type %d" % wire)
        yield field, wire, value


def decode_event(data: bytes) -> dict:
    ev = {"wall_time": None, "step": 0, "file_version": None, "values": [], "session_log": None}
    for field, wire, value in fields(data):
        if field == 1 and wire == 1:
            ev["wall_time"] = struct.unpack("<d", value)[0]
        elif field == 2 and wire == 0:
            ev["step"] = value - (1 << 64) if value >= (1 << 63) else value
        elif field == 3 and wire == 2:
            ev["file_version"] = value.decode("utf-8")
        elif field == 5 and wire == 2:
            for f, w, v in fields(value):
                if f != 1 or w != 2:
                    raise DecodeError("unexpected Summary field %d" % f)
                tag, bits = None, None
                for f2, w2, v2 in fields(v):
                    if f2 == 1 and w2 == 2:
                        tag = v2.decode("utf-8")
                    elif f2 == 2 and w2 == 5:
                        bits = struct.unpack("<I", v2)[0]
                if tag is None or bits is None:
                    raise DecodeError("Summary.Value without tag or simple_value")
                ev["values"].append([tag, bits])
        elif field == 6 and wire == 2:
            status = 0
            for f, w, v in fields(value):
                if f == 1 and w == 0:
                    status = v
            ev["session_log"] = status
        else:
            raise DecodeError("unexpected Event field %d (wire type %d)" % (field, wire))
    if ev["wall_time"] is None:
        raise DecodeError("Event without wall_time")
    return ev


def read_records(raw: bytes):
    pos = 0
    index = 0
    while pos < len(raw):
        if pos + 12 > len(raw):
            raise DecodeError("record %d: truncated header" % index)
        head = raw[pos:pos + 8]
        (length,) = struct.unpack("<Q", head)
        (hcrc,) = struct.unpack("<I", raw[pos + 8:pos + 12])
        if hcrc != masked(crc32c(head)):
            raise DecodeError("record %d: bad length CRC" % index)
        if pos + 12 + length + 4 > len(raw):
            raise DecodeError("record %d: truncated data" % index)
        data = raw[pos + 12:pos + 12 + length]
        (dcrc,) = struct.unpack("<I", raw[pos + 12 + length:pos + 16 + length])
        if dcrc != masked(crc32c(data)):
            raise DecodeError("record %d: bad data CRC" % index)
        yield data
        pos += 16 + length
        index += 1


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    try:
        events = [decode_event(d) for d in read_records(raw)]
        if not events or events[0]["file_version"] != "brain.Event:2":
            raise DecodeError("the first record is not file_version brain.Event:2")
    except DecodeError as e:
        print("%s: %s" % (sys.argv[1], e), file=sys.stderr)
        return 1
    out = {"file_version": events[0]["file_version"],
           "events": [{k: e[k] for k in ("wall_time", "step", "values", "session_log")}
                      for e in events[1:]]}
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
