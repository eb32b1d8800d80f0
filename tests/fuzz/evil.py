"""Malicious pickles, assembled opcode by opcode: each would create a marker file if unpickled by
a plain ``pickle.load`` (checked by ``test_fuzz_pickles.test_payloads_are_live``).

A payload is a callable (``os.system``, ``posix.system``, ``builtins.exec``/``eval``,
``subprocess.Popen``/``call``, ``os.popen``, ``builtins.open``, ``shutil.copyfile``, an
``__import__``/``getattr`` chain, ...) invoked through REDUCE, INST or OBJ, referenced by GLOBAL or
STACK_GLOBAL, under pickle protocols 0-5, and hidden in a container: bare, a snapshot dict, an
NVIDIA persistent record, a ``torch.storage._load_from_bytes`` payload, a persistent id, a torch
``.pt`` zip's ``data.pkl``, or an object ``.npy`` array.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True)
class Call:
    module: str
    name: str
    args: tuple
    style: str = "reduce"  # reduce | inst | obj


@dataclass(frozen=True)
class Raw:
    data: bytes


def _str(s: str, proto: int) -> bytes:
    b = s.encode("utf-8")
    if proto == 0:
        return b"V" + s.encode("raw_unicode_escape") + b"\n"
    if proto >= 4 and len(b) < 256:
        return b"\x8c" + bytes([len(b)]) + b
    return b"X" + struct.pack("<I", len(b)) + b


def _global(module: str, name: str, proto: int, stack: bool) -> bytes:
    if stack and proto >= 4:
        return _str(module, proto) + _str(name, proto) + b"\x93"
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def enc(x, proto: int, stack: bool = False) -> bytes:
    e = lambda v: enc(v, proto, stack)
    if isinstance(x, Raw):
        return x.data
    if isinstance(x, bool):
        return b"I01\n" if x else b"I00\n"
    if x is None:
        return b"N"
    if isinstance(x, int):
        return b"I" + str(x).encode() + b"\n"
    if isinstance(x, str):
        return _str(x, proto)
    if isinstance(x, bytes):
        if proto < 3:
            raise ValueError("bytes need protocol 3+")
        return (b"C" + bytes([len(x)]) if len(x) < 256 else b"B" + struct.pack("<I", len(x))) + x
    if isinstance(x, tuple):
        return b"(" + b"".join(map(e, x)) + b"t"
    if isinstance(x, list):
        if proto == 0:
            return b"(" + b"".join(map(e, x)) + b"l"
        return b"]" + (b"(" + b"".join(map(e, x)) + b"e" if x else b"")
    if isinstance(x, dict):
        body = b"".join(e(k) + e(v) for k, v in x.items())
        return b"(" + body + b"d" if proto == 0 else b"}" + (b"(" + body + b"u" if x else b"")
    if isinstance(x, Call):
        args = b"".join(map(e, x.args))
        if x.style == "inst":
            return b"(" + args + b"i" + x.module.encode() + b"\n" + x.name.encode() + b"\n"
        if x.style == "obj":
            return b"(" + _global(x.module, x.name, proto, stack) + args + b"o"
        return _global(x.module, x.name, proto, stack) + b"(" + args + b"tR"
    raise TypeError(type(x))


def dumps(obj, proto: int = 2, stack: bool = False) -> bytes:
    head = b"\x80" + bytes([proto]) if proto >= 2 else b""
    return head + enc(obj, proto, stack) + b"."


def payloads(marker: str) -> dict[str, Call]:
    """name -> a Call that creates ``marker`` when unpickled unsafely."""
    sh = f"touch '{marker}'"
    code = f"open({marker!r}, 'w').write('pwned')"
    imp = Call("builtins", "__import__", ("os",))
    get = Call("builtins", "getattr", (imp, "system"))
    return {
        "os.system": Call("os", "system", (sh,)),
        "posix.system": Call("posix", "system", (sh,)),
        "builtins.exec": Call("builtins", "exec", (code,)),
        "builtins.eval": Call("builtins", "eval", (code,)),
        "__builtin__.eval": Call("__builtin__", "eval", (code,)),
        "subprocess.Popen": Call("subprocess", "Popen", (["touch", marker],)),
        "subprocess.call": Call("subprocess", "call", (["touch", marker],)),
        "subprocess.check_output": Call("subprocess", "check_output", (["touch", marker],)),
        "os.popen": Call("os", "popen", (sh,)),
        "builtins.open": Call("builtins", "open", (marker, "w")),
        "io.open": Call("io", "open", (marker, "w")),
        "codecs.open": Call("codecs", "open", (marker, "w")),
        "shutil.copyfile": Call("shutil", "copyfile", ("/etc/passwd", marker)),
        "os.makedirs": Call("os", "makedirs", (marker,)),
        "getattr-chain": Call("__CHAIN__", "", (get, (sh,))),
    }


def with_style(call: Call, style: str) -> Call:
    if call.module == "__CHAIN__":
        return call
    return Call(call.module, call.name, call.args, style)


def _chain(call: Call, proto: int, stack: bool) -> bytes:
    """getattr(__import__('os'), 'system')('touch ...'): REDUCE on a callable built by REDUCEs."""
    get, args = call.args
    return enc(get, proto, stack) + enc(args, proto, stack) + b"R"


def payload_bytes(call: Call, proto: int, stack: bool) -> bytes:
    """The opcodes that push the payload's result (no protocol header, no STOP)."""
    return _chain(call, proto, stack) if call.module == "__CHAIN__" else enc(call, proto, stack)


CONTAINERS = ("bare", "snapshot-dict", "nvidia-record", "storage-bytes", "persistent-id", "list-in-dict")


def container(kind: str, payload: bytes, proto: int, stack: bool) -> bytes:
    """A whole pickle (header ... STOP) that evaluates ``payload`` somewhere inside ``kind``."""
    p = Raw(payload)
    if kind == "bare":
        obj = p
    elif kind == "snapshot-dict":
        obj = {"G": None, "G_ema": p, "training_set_kwargs": {"resolution": 16}}
    elif kind == "nvidia-record":
        rec = Call("torch_utils.persistence", "_reconstruct_persistent_obj",
                   ({"type": "class", "version": 6, "module_src": "x", "class_name": "Generator",
                     "state": {"_init_kwargs": {"z_dim": 16}, "_parameters": {"w": p}}},))
        obj = {"G_ema": rec}
    elif kind == "storage-bytes":
        inner = dumps(p, max(proto, 2), stack) if proto >= 2 else dumps(p, 0)
        obj = {"G_ema": Call("torch.storage", "_load_from_bytes", (inner,))} if proto >= 3 else {"G_ema": p}
    elif kind == "persistent-id":
        pid = enc(("storage", p, "0", "cpu", 4), proto, stack)
        obj = {"g_ema": Raw(pid + (b"Q" if proto >= 1 else b""))} if proto >= 1 else {"g_ema": p}
    else:  # list-in-dict
        obj = {"g_ema": {"style.1.weight": [1, 2, p]}, "latent_avg": None}
    return dumps(obj, proto, stack)
