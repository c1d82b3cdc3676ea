"""Writes tests/reference/fixtures/io/python_small.safetensors with tests/reference/st_io.py.

The C test (tests/io/test_safetensors.c) reads it and recomputes every value from the same
formulas, so the file proves that a Python-written file (metadata last, every dtype st_io
knows, a zero-size tensor, an escaped non-ASCII name, unaligned entries) reads back bit for
bit. __metadata__["crc32"] is zlib.crc32 of the data section, computed here independently
of the C writer.

Run with /usr/bin/python3 from the repository root:
    /usr/bin/python3 tests/reference/gen_io.py
"""
import os
import zlib

import numpy as np

import st_io

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "io")


def tensors():
    t = {}
    # Formulas mirrored in test_safetensors.c (test_python_fixture).
    t["f32"] = (np.arange(6, dtype=np.float32) * 0.25 - 0.5).reshape(2, 3)
    t["f64"] = np.array([np.pi, -np.e, 1e-300], dtype=np.float64)
    t["f16"] = np.array([[1.0, -2.5], [0.5, 65504.0]], dtype=np.float16)
    # st_io.save passes arrays through np.ascontiguousarray, which makes 0-d arrays 1-d, so
    # it cannot write shape []; the C round-trip tests cover scalars.
    t["i64"] = np.array([-1234567890123], dtype=np.int64)
    t["i32"] = np.array([-2**31, 2**31 - 1, 0, 7], dtype=np.int32)
    t["i16"] = np.array([-32768, 32767, -1], dtype=np.int16)
    t["i8"] = np.array([-128, 127, 0], dtype=np.int8)
    t["u8"] = (np.arange(6, dtype=np.uint8) * 51).reshape(1, 2, 3)
    t["bool"] = np.array([True, False, True])
    t["empty"] = np.zeros((0, 3), dtype=np.float32)
    t["odd.name/with spaces \u00e9"] = np.array([3.0], dtype=np.float32)
    return t


def main():
    os.makedirs(OUT, exist_ok=True)
    t = tensors()
    data = b"".join(np.ascontiguousarray(a).tobytes() for a in t.values())
    meta = {"format": "pt", "note": "h\u00e9llo \u2713", "crc32": "%08x" % zlib.crc32(data)}
    path = os.path.join(OUT, "python_small.safetensors")
    st_io.save(path, t, meta)
    back, meta_back = st_io.load(path)
    for k, v in t.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and (back[k] == v).all(), k
    assert meta_back == meta
    print(f"wrote {path} ({os.path.getsize(path)} bytes, crc32 {meta['crc32']})")


if __name__ == "__main__":
    main()
