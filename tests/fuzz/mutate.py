"""Hypothesis strategies that damage valid files: byte-level (truncate, flip, overwrite, insert,
delete, splice), JSON-level (replace any value, drop/add keys, deep nesting), and format-aware
(PNG/JPEG/BMP header sizes, safetensors header, .npy header, zip members, pickle globals)."""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
import zlib

from hypothesis import strategies as st

INTERESTING_INTS = [0, 1, -1, 2, 7, 8, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53,
                    2**63 - 1, 2**64 - 1, -(2**31), -(2**63)]
INTERESTING_BYTES = [b"\x00", b"\xff", b"\x7f", b"\x80", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
                     b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff" * 8, b"\x00" * 8, b"{", b"}", b"\n", b".",
                     b"\x80\x04", b"PK\x03\x04", b"\x89PNG", b"\xff\xd8\xff"]

# ----------------------------------------------------------------------------
# Bytes


@st.composite
def mutated_bytes(draw, seed: bytes, *, max_ops: int = 4, splice_with: tuple[bytes, ...] = ()) -> bytes:
    """``seed`` with 1..max_ops random damages. Positions favour the first 256 bytes (headers)."""
    data = bytearray(seed)

    def pos(allow_end=False):
        n = len(data) + (1 if allow_end else 0)
        if n <= 0:
            return 0
        head = min(n, 256)
        if draw(st.booleans()):
            return draw(st.integers(0, head - 1))
        return draw(st.integers(0, n - 1))

    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete", "splice", "dup", "append"]))
        if op == "truncate":
            data = data[: pos(allow_end=True)]
        elif op == "flip" and data:
            for _ in range(draw(st.integers(1, 8))):
                i = pos()
                data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite" and data:
            i = pos()
            chunk = draw(st.one_of(st.sampled_from(INTERESTING_BYTES), st.binary(min_size=1, max_size=16)))
            data[i:i + len(chunk)] = chunk
        elif op == "insert":
            i = pos(allow_end=True)
            data[i:i] = draw(st.one_of(st.sampled_from(INTERESTING_BYTES), st.binary(min_size=1, max_size=64)))
        elif op == "delete" and data:
            i = pos()
            del data[i:i + draw(st.integers(1, 64))]
        elif op == "splice":
            other = draw(st.sampled_from([bytes(data), *splice_with]))
            if other:
                a = draw(st.integers(0, len(other) - 1))
                b = draw(st.integers(a, min(len(other), a + 512)))
                i = pos(allow_end=True)
                data[i:i + draw(st.integers(0, 64))] = other[a:b]
        elif op == "dup" and data:
            a = pos()
            data[a:a] = data[a:a + draw(st.integers(1, 256))]
        elif op == "append":
            data += draw(st.binary(min_size=1, max_size=256))
    return bytes(data)


# ----------------------------------------------------------------------------
# JSON

WEIRD_VALUES = st.sampled_from([None, True, False, 0, -1, 1, 2**31, 2**63, 2**64 + 1, -(2**63), 10**400, 1e308, -1e308,
                                float("nan"), float("inf"), 0.5, "", "x", "../../etc/passwd", "/etc/passwd",
                                "generator.safetensors", "\x00", "é" * 3, [], {}, [1, 2], [-1, 2**40],
                                {"a": 1}, "Generator", "os.system", [[[]]], "1e999"])


def json_value(max_leaves: int = 8):
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True),
                        st.text(max_size=12))
    return st.one_of(WEIRD_VALUES, st.recursive(scalars, lambda c: st.one_of(
        st.lists(c, max_size=4), st.dictionaries(st.text(max_size=6), c, max_size=4)), max_leaves=max_leaves))


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            yield from _paths(v, prefix + (i,))


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


@st.composite
def mutated_json(draw, obj, *, max_ops: int = 3):
    """A deep copy of ``obj`` with 1..max_ops values replaced, keys dropped or added, or types changed."""
    obj = json.loads(json.dumps(obj))
    for _ in range(draw(st.integers(1, max_ops))):
        paths = list(_paths(obj))
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "drop", "add", "wrap", "numeric"]))
        if not path:
            if op in ("replace", "wrap"):
                obj = draw(json_value()) if op == "replace" else [obj]
            continue
        parent, key = _get(obj, path[:-1]), path[-1]
        if op == "replace":
            parent[key] = draw(json_value())
        elif op == "drop":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_value())
        elif op == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"value": parent[key]}, str(parent[key])]))
        elif op == "numeric" and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = draw(st.sampled_from([0, -1, 2**31, 2**40, 10**12, -parent[key], parent[key] * 1024,
                                                parent[key] + 1, float(parent[key]) + 0.5, 1e308]))
    return obj


def dumps(obj) -> str:
    return json.dumps(obj, allow_nan=True)


@st.composite
def json_text(draw, obj):
    """Serialised mutated JSON, sometimes damaged as text (deep nesting, cut, invalid UTF-8)."""
    how = draw(st.sampled_from(["json", "json", "json", "nested", "cut", "bytes"]))
    if how == "nested":
        depth = draw(st.sampled_from([100, 5000, 100000]))
        return "[" * depth + "]" * depth
    text = dumps(draw(mutated_json(obj)))
    if how == "cut":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if how == "bytes":
        return draw(mutated_bytes(text.encode(), max_ops=2)).decode("utf-8", "surrogateescape")
    return text


# ----------------------------------------------------------------------------
# Images: header sizes


SIDES = [0, 1, 15, 16, 17, 24, 640, 4096, 12000, 40000, 40001, 65500, 65535, 2**31 - 1, 2**32 - 1]


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, i = [], 8
    while i + 8 <= len(data):
        (n,), typ = struct.unpack(">I", data[i:i + 4]), data[i + 4:i + 8]
        out.append((typ, data[i + 8:i + 8 + n]))
        i += 12 + n
    return out


def png_build(chunks) -> bytes:
    b = bytearray(b"\x89PNG\r\n\x1a\n")
    for typ, body in chunks:
        b += struct.pack(">I", len(body)) + typ + body + struct.pack(">I", zlib.crc32(typ + body) & 0xFFFFFFFF)
    return bytes(b)


@st.composite
def png_variants(draw, seed: bytes) -> bytes:
    """A PNG whose chunks are valid (CRCs right) but whose content lies: sizes (decompression
    bombs), bit depth / colour type, missing/extra/duplicated chunks, huge text chunks."""
    chunks = png_chunks(seed)
    ihdr = bytearray(chunks[0][1])
    op = draw(st.sampled_from(["size", "size", "depth", "drop", "text", "bomb", "dup"]))
    if op == "size":
        struct.pack_into(">II", ihdr, 0, draw(st.sampled_from(SIDES)), draw(st.sampled_from(SIDES)))
    elif op == "depth":
        ihdr[8] = draw(st.sampled_from([0, 1, 2, 4, 8, 16, 32, 255]))
        ihdr[9] = draw(st.sampled_from([0, 2, 3, 4, 6, 7, 255]))
        ihdr[10:13] = bytes(draw(st.lists(st.integers(0, 2), min_size=3, max_size=3)))
    chunks[0] = (b"IHDR", bytes(ihdr))
    if op == "drop":
        del chunks[draw(st.integers(0, len(chunks) - 1))]
    elif op == "text":
        big = zlib.compress(b"A" * draw(st.sampled_from([10, 1 << 20, 16 << 20])))
        chunks.insert(1, (draw(st.sampled_from([b"zTXt", b"iTXt", b"tEXt", b"eXIf", b"iCCP"])), b"k\x00\x00" + big))
    elif op == "bomb":
        # A huge image of zeros that compresses to almost nothing.
        w, h = draw(st.sampled_from([(4000, 4000), (10000, 12001), (20000, 20000), (65535, 65535), (1, 10**7)]))
        struct.pack_into(">II", ihdr, 0, w, h)
        ihdr[8], ihdr[9] = 8, 0  # 8-bit grey
        rows = draw(st.sampled_from([1, 64, 1024]))
        idat = zlib.compress(b"\x00" * ((w + 1) * min(h, rows)), 9)
        chunks = [(b"IHDR", bytes(ihdr)), (b"IDAT", idat), (b"IEND", b"")]
    elif op == "dup":
        i = draw(st.integers(0, len(chunks) - 1))
        chunks.insert(i, chunks[i])
    return png_build(chunks)


@st.composite
def jpeg_variants(draw, seed: bytes) -> bytes:
    """A JPEG whose SOF header claims other sizes / component counts / precision."""
    data = bytearray(seed)
    m = re.search(rb"\xff[\xc0-\xc2]", bytes(data))
    if m is None:
        return bytes(data)
    i = m.start() + 4  # FFCx, length(2), precision(1), height(2), width(2), ncomp(1)
    op = draw(st.sampled_from(["size", "ncomp", "precision"]))
    if op == "size":
        struct.pack_into(">HH", data, i + 1, draw(st.sampled_from(SIDES)) & 0xFFFF, draw(st.sampled_from(SIDES)) & 0xFFFF)
    elif op == "ncomp":
        data[i + 5] = draw(st.sampled_from([0, 1, 2, 4, 255]))
    else:
        data[i] = draw(st.sampled_from([0, 1, 12, 16, 255]))
    return bytes(data)


@st.composite
def bmp_variants(draw, seed: bytes) -> bytes:
    data = bytearray(seed)
    struct.pack_into("<ii", data, 18, draw(st.sampled_from([0, 1, 24, 40000, 2**31 - 1, -1, -(2**31)])),
                     draw(st.sampled_from([0, 1, 20, -20, 40000, 2**31 - 1, -(2**31)])))
    if draw(st.booleans()):
        struct.pack_into("<H", data, 28, draw(st.sampled_from([0, 1, 4, 8, 16, 24, 32, 64, 65535])))
    return bytes(data)


# ----------------------------------------------------------------------------
# safetensors


def st_split(data: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]), data[8 + n:]


def st_join(header, body: bytes, *, pad: bool = True) -> bytes:
    h = (header if isinstance(header, str) else dumps(header)).encode("utf-8", "surrogateescape")
    if pad:
        h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + body


DTYPES = ["F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2", "C64", "XX", ""]


@st.composite
def safetensors_variants(draw, seed: bytes, manifest_mutator=None) -> bytes:
    """A safetensors file with a lying header: dtypes, shapes (huge, negative, mismatched), data
    offsets (overlapping, out of range), the length field, the metadata (our manifest)."""
    header, body = st_split(seed)
    names = [k for k in header if k != "__metadata__"]
    op = draw(st.sampled_from(["dtype", "shape", "offsets", "drop", "length", "manifest", "manifest", "json", "body"]))
    if op in ("dtype", "shape", "offsets", "drop") and names:
        k = draw(st.sampled_from(names))
        if op == "dtype":
            header[k]["dtype"] = draw(st.sampled_from(DTYPES))
        elif op == "shape":
            header[k]["shape"] = draw(st.one_of(
                st.sampled_from([[], [0], [2**31], [2**40, 2**40], [-1], [1, -16], [2**64], ["16"], [1.5], None, 16]),
                st.lists(st.integers(0, 64), max_size=5)))
        elif op == "offsets":
            a, b = header[k]["data_offsets"]
            header[k]["data_offsets"] = draw(st.sampled_from(
                [[b, a], [a, b + 4], [a, a], [0, len(body) + 4], [a, 2**40], [-4, b], [a], [a, b, 0], None, [2**64, 2**64]]))
        else:
            del header[k]
        return st_join(header, body)
    if op == "length":
        raw = seed[8:8 + int.from_bytes(seed[:8], "little")]
        n = draw(st.sampled_from([0, 1, len(raw) - 1, len(raw) + 1, len(seed), 2**31, 2**63, 2**64 - 1]))
        return n.to_bytes(8, "little") + raw + body
    if op == "manifest" and "__metadata__" in header:
        man = json.loads(header["__metadata__"].get("stylestudio", "{}"))
        new = draw(manifest_mutator(man)) if manifest_mutator else draw(mutated_json(man))
        header["__metadata__"]["stylestudio"] = new if isinstance(new, str) else dumps(new)
        return st_join(header, body)
    if op == "json":
        return st_join(draw(json_text(header)), body)
    return st_join(header, draw(mutated_bytes(body, max_ops=2)), pad=False)


# ----------------------------------------------------------------------------
# .npy headers


NPY_DESCRS = ["'|O'", "'<U16'", "'<c8'", "'>f4'", "'<f2'", "'|b1'", "'<i8'", "'|V8'", "'<M8[s]'", "'<f8'",
              "[('a', '<f4')]", "'garbage'", "None", "'<f4'", "'|S3'", "[('a', '<f4', (2**40,))]"]
NPY_SHAPES = ["()", "(0,)", "(1,)", "(16,)", "(1, 16)", "(16, 1)", "(2**40,)", "(1099511627776,)", "(-1,)",
              "(100000, 100000)", "(4, 1, 16)", "('a',)", "(1.5,)", "(1, 16, 1, 1, 1, 1)", "None", "(6, 16)"]


def npy_split(data: bytes) -> tuple[bytes, str, bytes]:
    major = data[6]
    if major == 1:
        n = struct.unpack("<H", data[8:10])[0]
        return data[:10], data[10:10 + n].decode("latin1"), data[10 + n:]
    n = struct.unpack("<I", data[8:12])[0]
    return data[:12], data[12:12 + n].decode("latin1"), data[12 + n:]


@st.composite
def npy_variants(draw, seed: bytes, pickles: tuple[bytes, ...] = (b"\x80\x04N.",)) -> bytes:
    """An .npy file whose header lies: dtype (object = pickle, strings, complex, structured),
    shape (huge, negative, mismatched), fortran_order, header length, format version."""
    pre, header, body = npy_split(seed)
    op = draw(st.sampled_from(["descr", "shape", "shape", "order", "version", "length", "text", "pickle"]))
    if op == "descr":
        header = re.sub(r"'descr': [^,]+,", f"'descr': {draw(st.sampled_from(NPY_DESCRS))},", header, count=1)
    elif op == "shape":
        header = re.sub(r"'shape': \([^)]*\)", f"'shape': {draw(st.sampled_from(NPY_SHAPES))}", header, count=1)
    elif op == "order":
        header = header.replace("False", draw(st.sampled_from(["True", "1", "'x'"])))
    elif op == "version":
        pre = pre[:6] + bytes([draw(st.sampled_from([0, 1, 2, 3, 9, 255]))]) + pre[7:]
    elif op == "length":
        n = draw(st.sampled_from([0, 1, len(header) - 1, len(header) + 1, 65535]))
        pre = pre[:8] + struct.pack("<H", n) if pre[6] == 1 else pre[:8] + struct.pack("<I", n)
    elif op == "text":
        header = draw(st.sampled_from(["{}", "{'descr': '<f4'}", "[1, 2]", ("{'descr': '<f4', 'fortran_order': False,"
                                        " 'shape': (16,), 'extra': __import__('os')}"), "", "\x00" * 8,
                                       "{'descr': '<f4', 'fortran_order': False, 'shape': (16,)} garbage"]))
    elif op == "pickle":
        header = re.sub(r"'descr': [^,]+,", "'descr': '|O',", header, count=1)
        header = re.sub(r"'shape': \([^)]*\)", "'shape': (1,)", header, count=1)
        body = draw(st.sampled_from(list(pickles)))
    if op != "length":
        raw = header.encode("latin1")
        pre = pre[:8] + (struct.pack("<H", len(raw)) if pre[6] == 1 else struct.pack("<I", len(raw)))
        if pre[6] not in (1, 2, 3):
            pre = pre[:8] + struct.pack("<H", len(raw))
    return pre + header.encode("latin1") + body


# ----------------------------------------------------------------------------
# zip archives (torch .pt files, .npz, .stylestudio projects)


def zip_build(members: list[tuple[str, bytes]], *, compression=zipfile.ZIP_STORED) -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", compression=compression) as zf:
        for name, data in members:
            zf.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, compress_type=compression)
    return b.getvalue()


def _patch_all(data: bytes, sig: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    for m in re.finditer(re.escape(sig), data):
        try:
            struct.pack_into(fmt, out, m.start() + offset, value)
        except struct.error:
            pass
    return bytes(out)


@st.composite
def zip_variants(draw, seed: bytes, member_mutators: dict | None = None) -> bytes:
    """A zip archive with tampered members (content, names, duplicates, missing), or tampered
    headers (compression method, encryption flag, declared sizes: a zip bomb, CRC)."""
    with zipfile.ZipFile(io.BytesIO(seed)) as zf:
        members = [(i.filename, zf.read(i.filename)) for i in zf.infolist()]
        compression = zf.infolist()[0].compress_type if members else zipfile.ZIP_STORED
    op = draw(st.sampled_from(["content", "content", "content", "drop", "rename", "dup", "method", "encrypt",
                               "sizes", "bomb", "crc"]))
    names = [n for n, _ in members]
    if op in ("content", "drop", "rename", "dup") and members:
        i = draw(st.integers(0, len(members) - 1))
        name, data = members[i]
        if op == "content":
            mut = None
            for pattern, m in (member_mutators or {}).items():
                if re.search(pattern, name):
                    mut = m
            data = draw(mut(data) if mut is not None and draw(st.booleans()) else mutated_bytes(data, max_ops=3))
            members[i] = (name, data)
        elif op == "drop":
            del members[i]
        elif op == "rename":
            members[i] = (draw(st.sampled_from(["../evil", "/abs/path", name.upper(), name + "x", "", "a/" + name,
                                                 names[-1]])), data)
        else:
            members.insert(i, (name, draw(mutated_bytes(data, max_ops=1))))
        return zip_build(members, compression=compression)
    if op == "bomb" and members:
        i = draw(st.integers(0, len(members) - 1))
        size = draw(st.sampled_from([16 << 20, 80 << 20]))
        members[i] = (members[i][0], members[i][1] + b"\x00" * size)
        return zip_build(members, compression=zipfile.ZIP_DEFLATED)
    data = zip_build(members, compression=compression)
    if op == "method":
        m = draw(st.sampled_from([1, 6, 9, 12, 14, 93, 99, 0xFFFF]))
        data = _patch_all(data, b"PK\x03\x04", 8, "<H", m)
        return _patch_all(data, b"PK\x01\x02", 10, "<H", m)
    if op == "encrypt":
        data = _patch_all(data, b"PK\x03\x04", 6, "<H", 1)
        return _patch_all(data, b"PK\x01\x02", 8, "<H", 1)
    if op == "sizes":
        v = draw(st.sampled_from([0, 1, 2**31, 2**32 - 1]))
        data = _patch_all(data, b"PK\x01\x02", draw(st.sampled_from([20, 24])), "<I", v)
        return _patch_all(data, b"PK\x03\x04", 22, "<I", v)
    if op == "crc":
        return _patch_all(data, b"PK\x01\x02", 16, "<I", 0xDEADBEEF)
    return data
