"""Write compiled modules to disk: a shared library for the host, and an aarch64 cross-build (a shared library when
an aarch64 cross compiler is installed, else a tar of aarch64 objects); ELF headers tell which machine a file is for.
"""
from __future__ import annotations

import shutil
import struct
import tarfile
import tempfile
from pathlib import Path

from tvm.support import cc

from ..errors import SSVQError

AARCH64_CXX = "aarch64-linux-gnu-g++"
ELF_MACHINES = {3: "x86", 40: "arm", 62: "x86-64", 183: "aarch64", 243: "riscv"}
ELF_TYPES = {1: "relocatable", 2: "executable", 3: "shared object"}


class ExportError(SSVQError):
    """An exported file is missing or not the expected ELF."""


def elf_header(path: str | Path) -> dict:
    """Class, byte order, type and machine of an ELF file (read from its header, no tools needed)."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise ExportError(f"{path} is not an ELF file")
    order = "<" if head[5] == 1 else ">"
    e_type, e_machine = struct.unpack(order + "HH", head[16:20])
    return {"class": {1: "ELF32", 2: "ELF64"}.get(head[4], "?"), "byte_order": "little" if head[5] == 1 else "big",
            "type": ELF_TYPES.get(e_type, str(e_type)), "machine": ELF_MACHINES.get(e_machine, str(e_machine)),
            "e_machine": e_machine}


def export_host(executable, path: str | Path) -> dict:
    """Shared library for the host (the system C++ compiler links it)."""
    path = Path(path)
    executable.export_library(str(path))
    return {"path": str(path), "bytes": path.stat().st_size, **elf_header(path)}


def export_aarch64(executable, path: str | Path, compiler: str = AARCH64_CXX) -> dict:
    """``path`` (.so) linked by ``compiler`` when it is installed; otherwise ``path`` with suffix .tar holding the
    aarch64 objects (link them on the device). Every produced ELF file must be aarch64."""
    path = Path(path)
    if shutil.which(compiler):
        executable.export_library(str(path), fcompile=cc.cross_compiler(compiler))
        info = {"path": str(path), "bytes": path.stat().st_size, "linker": compiler, **elf_header(path)}
        members = [info]
    else:
        path = path.with_suffix(".tar")
        executable.export_library(str(path))
        members = []
        with tarfile.open(path) as tar, tempfile.TemporaryDirectory() as tmp:
            for member in tar.getmembers():
                if member.isfile() and member.name.endswith(".o"):
                    tar.extract(member, tmp)
                    members.append({"path": f"{path}:{member.name}", **elf_header(Path(tmp) / member.name)})
        info = {"path": str(path), "bytes": path.stat().st_size,
                "linker": f"none ({compiler} not installed): objects only", "objects": members}
    wrong = [m["path"] for m in members if m["machine"] != "aarch64"]
    if not members or wrong:
        raise ExportError(f"aarch64 export produced non-aarch64 files: {wrong or 'no objects'}")
    info["machine"] = "aarch64"
    return info
