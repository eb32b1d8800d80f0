"""Every file the app, the CLI and the trainers write goes through ``studio.core.fileio`` (temp file,
fsync, rename): a scan of the source for direct file-writing calls. The only exceptions are append-only
logs, listed in ALLOWED with the reason; their readers skip a torn last line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("studio", "trainers")
HELPER = "studio/core/fileio.py"

# (file, enclosing function, what) -> why it may write directly
ALLOWED = {
    ("trainers/common.py", "MetricsLog.__init__", "open(mode='a')"):
        "metrics.jsonl is append-only (one flushed line per record); readers skip a torn last line",
    ("trainers/common.py", "log_to_run_dir", "FileHandler"): "log.txt is an append-only log",
    ("trainers/common.py", "TensorBoard.__init__", "SummaryWriter"): "TensorBoard event files are append-only",
    ("trainers/pack/directions.py", "main", "FileHandler"): "log.txt of the pack's direction job, append-only",
}

# functions whose destination is their first (0) or second (1) argument
DEST_ARG = {"np.save": 0, "numpy.save": 0, "np.savez": 0, "np.savez_compressed": 0, "numpy.savez": 0,
            "numpy.savez_compressed": 0, "torch.save": 1, "save_file": 1, "safetensors.torch.save_file": 1,
            "json.dump": 1, "pickle.dump": 1, "np.savetxt": 0, "numpy.savetxt": 0}
ALWAYS = {"shutil.copy", "shutil.copy2", "shutil.copyfile", "shutil.copytree", "shutil.move", "os.rename",
          "os.replace", "tempfile.mkstemp", "tempfile.NamedTemporaryFile", "logging.FileHandler", "FileHandler",
          "SummaryWriter", "csv.writer", "csv.DictWriter", "os.fdopen"}
ALWAYS_METHODS = {"write_text", "write_bytes", "tofile", "to_csv", "savefig", "imwrite"}
# ``x.save(...)`` of our own atomic savers (safetensors + manifest, projects)
ATOMIC_SAVERS = {"stylestudio_fmt", "session", "sess", "self.session"}
MEMORY = {"io.BytesIO", "BytesIO", "io.StringIO", "StringIO"}


def _name(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else node.attr
    if isinstance(node, ast.Call):
        return _name(node.func) + "()"
    return ""


def _str(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


class _Scan(ast.NodeVisitor):
    def __init__(self, rel: str):
        self.rel, self.stack, self.found = rel, [], []
        self.memory: list[set[str]] = [set()]

    def _scope(self, node):
        names = set()
        for n in ast.walk(node):
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call) and _name(n.value.func) in MEMORY:
                names |= {t.id for t in n.targets if isinstance(t, ast.Name)}
            if isinstance(n, ast.withitem) and isinstance(n.context_expr, ast.Call) \
                    and _name(n.context_expr.func) in MEMORY and isinstance(n.optional_vars, ast.Name):
                names.add(n.optional_vars.id)
        return names

    def visit_Module(self, node):
        self.memory = [self._scope(node)]
        self.generic_visit(node)

    def visit_FunctionDef(self, node):
        self.stack.append(node.name)
        self.memory.append(self.memory[-1] | self._scope(node))
        self.generic_visit(node)
        self.memory.pop()
        self.stack.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node):
        self.stack.append(node.name)
        self.generic_visit(node)
        self.stack.pop()

    def _in_memory(self, node) -> bool:
        if isinstance(node, ast.Call) and _name(node.func) in MEMORY:
            return True
        return isinstance(node, ast.Name) and node.id in self.memory[-1]

    def _flag(self, node, what: str) -> None:
        self.found.append((self.rel, ".".join(self.stack) or "<module>", what, node.lineno))

    def visit_Call(self, node):
        name = _name(node.func)
        short = name.rsplit(".", 1)[-1]
        args = list(node.args)
        kw = {k.arg: k.value for k in node.keywords if k.arg}
        if name in ("open", "io.open") or (isinstance(node.func, ast.Attribute) and short == "open"
                                           and not name.endswith(("Image.open", "ZipFile.open", "zf.open"))):
            pos = 1 if name in ("open", "io.open") else 0
            mode = kw.get("mode", args[pos] if len(args) > pos else None)
            m = _str(mode) if mode is not None else "r"
            if m is None or any(c in m for c in "wax+"):
                self._flag(node, f"open(mode={m!r})" if m is not None else "open(mode=?)")
        elif name == "os.open":
            flags = ast.dump(args[1]) if len(args) > 1 else ""
            if any(f in flags for f in ("O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC")):
                self._flag(node, "os.open(write)")
        elif name in ("zipfile.ZipFile", "ZipFile", "tarfile.open"):
            mode = kw.get("mode", args[1] if len(args) > 1 else None)
            m = _str(mode) if mode is not None else "r"
            if (m is None or any(c in m for c in "wax")) and not (args and self._in_memory(args[0])):
                self._flag(node, f"{short}(mode={m!r})")
        elif name in DEST_ARG:
            i = DEST_ARG[name]
            dest = args[i] if len(args) > i else next(iter(kw.values()), None)
            if dest is None or not self._in_memory(dest):
                self._flag(node, name)
        elif name in ALWAYS or short in ("FileHandler", "SummaryWriter", "mkstemp", "NamedTemporaryFile"):
            self._flag(node, short if short in ("FileHandler", "SummaryWriter") else name)
        elif isinstance(node.func, ast.Attribute) and short in ALWAYS_METHODS:
            self._flag(node, f".{short}")
        elif isinstance(node.func, ast.Attribute) and short == "save":
            receiver = _name(node.func.value)
            if receiver not in ATOMIC_SAVERS and not any(self._in_memory(a) for a in args[:1]):
                self._flag(node, f"{receiver}.save")
        self.generic_visit(node)


def scan() -> list[tuple[str, str, str, int]]:
    found = []
    for pkg in PACKAGES:
        for py in sorted((ROOT / pkg).rglob("*.py")):
            rel = py.relative_to(ROOT).as_posix()
            if rel == HELPER:
                continue
            s = _Scan(rel)
            s.visit(ast.parse(py.read_text(encoding="utf-8"), filename=rel))
            found += s.found
    return found


def test_every_write_goes_through_the_atomic_helper():
    bad = [f"{rel}:{line} {func}: {what}" for rel, func, what, line in scan() if (rel, func, what) not in ALLOWED]
    assert not bad, ("write these through studio.core.fileio (atomic_write_bytes / _text / _json, "
                     "atomic_save_npy / _npz, trainers.common.atomic_torch_save), or add an append-only log "
                     "to ALLOWED with the reason:\n" + "\n".join(bad))


def test_allow_list_has_no_stale_entries():
    seen = {(rel, func, what) for rel, func, what, _ in scan()}
    assert not set(ALLOWED) - seen


@pytest.mark.parametrize("code, flagged", [
    ("open(p, 'w').write(s)", True),
    ("open(p, mode='ab')", True),
    ("open(p)", False),
    ("Path(p).open('wb')", True),
    ("Path(p).write_text(s)", True),
    ("np.save(p, a)", True),
    ("import io\nbuf = io.BytesIO()\nnp.save(buf, a)", False),
    ("torch.save(obj, p)", True),
    ("torch.save(obj, io.BytesIO())", False),
    ("Image.fromarray(a).save('x.png')", True),
    ("def f():\n    buf = io.BytesIO()\n    im.save(buf, format='PNG')", False),
    ("stylestudio_fmt.save(bundle, path)", False),
    ("zipfile.ZipFile(p, 'w')", True),
    ("with io.BytesIO() as b:\n    zipfile.ZipFile(b, 'w')", False),
    ("os.replace(a, b)", True),
    ("json.dump(obj, f)", True),
])
def test_scanner_catches_direct_writes(code, flagged):
    s = _Scan("x.py")
    s.visit(ast.parse(code))
    assert bool(s.found) == flagged, s.found


def test_atomic_write_goes_through_a_symlink(tmp_path):
    from studio.core.fileio import atomic_write_bytes

    target = tmp_path / "real" / "v.stylestudio"
    target.parent.mkdir()
    target.write_bytes(b"old")
    link = tmp_path / "link.stylestudio"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"
