"""Real English text shipped with the Python installation: the documentation strings of standard-library and NumPy
modules and the licence texts of Python and ONNX, cut into prose passages for text models.

A *document* is one module (all of its docstrings) or one licence file; its passages are its prose paragraphs. Any
train / held-out split is made by document, never by passage, so that no held-out passage shares a document with a
training one. Passages are deterministic for a given installation (Python and NumPy are pinned), and exact
duplicates (the same paragraph inherited by several modules) are kept only once, in their first document. Each
document gives at most its first 16 passages.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
import sysconfig
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Callable, NamedTuple

from ..errors import ConfigError

# Modules whose import has no side effects (no GUI, no output, no browser) and whose docs are mostly prose.
_STDLIB = ("argparse", "asyncio", "base64", "bisect", "calendar", "collections", "concurrent.futures",
           "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email",
           "enum", "fnmatch", "fractions", "functools", "getopt", "gettext", "glob", "gzip", "hashlib", "heapq",
           "hmac", "html.parser", "http.client", "http.server", "inspect", "ipaddress", "json", "locale", "logging",
           "mailbox", "mimetypes", "multiprocessing", "numbers", "operator", "optparse", "os", "pathlib", "pickle",
           "pprint", "queue", "random", "re", "sched", "secrets", "selectors", "shlex", "shutil", "smtplib",
           "socket", "sqlite3", "ssl", "statistics", "string", "subprocess", "tarfile", "tempfile", "textwrap",
           "threading", "timeit", "tokenize", "typing", "unittest", "urllib.parse", "urllib.request", "uuid",
           "warnings", "weakref", "xml.dom.minidom", "zipfile", "zoneinfo")
_NUMPY = ("numpy", "numpy.fft", "numpy.linalg", "numpy.ma", "numpy.polynomial.polynomial", "numpy.random",
          "numpy.lib.stride_tricks", "numpy.testing")
_MAX_WORDS = 60  # ~80 WordPiece tokens: fits a 128-token model input with room to spare
_MIN_WORDS = 8
_MAX_PER_DOCUMENT = 16  # the first ones: keeps numpy's hundreds of functions from drowning the other documents
_WORD = re.compile(r"^[(\"']?[A-Za-z][A-Za-z'\-]*[.,;:!?)\"']*$")


class Passage(NamedTuple):
    name: str  # "<document>#<i>"
    document: str  # e.g. "python/json", "numpy/numpy.linalg", "license/python"
    text: str


class Document(NamedTuple):
    name: str
    load: Callable[[], list[str]]  # -> raw paragraphs


def _module_docs(module_name: str) -> Callable[[], list[str]]:
    def load() -> list[str]:
        with warnings.catch_warnings():  # reading a deprecated alias's doc (typing.re) warns
            warnings.simplefilter("ignore", DeprecationWarning)
            return _docstrings(module_name)
    return load


def _docstrings(module_name: str) -> list[str]:
    """Paragraphs of the docstrings of a module, its public classes and functions and their public methods."""
    module = importlib.import_module(module_name)
    docs = [inspect.getdoc(module) or ""]
    for attr in sorted(vars(module)):
        obj = vars(module)[attr]
        if attr.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        if getattr(obj, "__module__", None) not in (module_name, module.__name__):
            continue  # re-exported from elsewhere: that module's document owns it
        docs.append(inspect.getdoc(obj) or "")
        if inspect.isclass(obj):
            docs += [inspect.getdoc(m) or "" for k, m in sorted(vars(obj).items())
                     if not k.startswith("_") and inspect.isroutine(m)]
    return [p for doc in docs for p in re.split(r"\n\s*\n", doc)]


def _python_license() -> list[str]:
    return re.split(r"\n\s*\n", (Path(sysconfig.get_paths()["stdlib"]) / "LICENSE.txt").read_text())


def _package_license(package: str, file: str) -> Callable[[], list[str]]:
    def load() -> list[str]:
        text = importlib.metadata.distribution(package).read_text(file)
        if text is None:
            raise ConfigError(f"licence file {file} of {package} not found")
        return re.split(r"\n\s*\n", text)
    return load


DOCUMENTS: list[Document] = [
    *(Document(f"python/{m}", _module_docs(m)) for m in _STDLIB),
    *(Document(f"numpy/{m}", _module_docs(m)) for m in _NUMPY),
    Document("license/python", _python_license),
    Document("license/onnx", _package_license("onnx", "licenses/LICENSE")),
]


def _prose(paragraph: str) -> str | None:
    """The paragraph as one line if it reads as English prose (not code, a table, a parameter list or a
    heading), cut to at most ``_MAX_WORDS`` words at a sentence end; else None."""
    lines = [line.strip() for line in paragraph.strip().splitlines()]
    if not lines or any(line.startswith((">>>", "...", "$ ", "#")) or set(line) <= set("-=~*^ ") for line in lines):
        return None
    if any(re.match(r"^[\w*, ]+ : ", line) for line in lines) or lines[0].endswith("::"):
        return None  # numpydoc parameter list, reST code block
    words = " ".join(lines).split()
    if len(words) < _MIN_WORDS or sum(bool(_WORD.match(w)) for w in words) < 0.8 * len(words):
        return None
    words = words[:_MAX_WORDS]
    text = " ".join(words)
    end = max(text.rfind(". "), text.rfind("? "), text.rfind("! "))
    if not text.endswith((".", "?", "!")):
        if end < 0:
            return None
        text = text[:end + 1]
    return text if len(text.split()) >= _MIN_WORDS else None


@lru_cache(maxsize=1)
def _all_passages() -> tuple[Passage, ...]:
    seen: set[str] = set()
    out = []
    for doc in DOCUMENTS:
        i = 0
        for paragraph in doc.load():
            if i == _MAX_PER_DOCUMENT:
                break
            text = _prose(paragraph)
            if text is None or text in seen:
                continue
            seen.add(text)
            out.append(Passage(f"{doc.name}#{i}", doc.name, text))
            i += 1
    return tuple(out)


def text_passages(documents: list[str] | None = None) -> list[Passage]:
    """Every passage of the named documents (default: all), in document order."""
    known = {d.name for d in DOCUMENTS}
    unknown = sorted(set(documents or []) - known)
    if unknown:
        raise ConfigError(f"unknown text documents {unknown}; available: {', '.join(sorted(known))}")
    wanted = set(documents) if documents else known
    return [p for p in _all_passages() if p.document in wanted]


def split_texts_by_document(heldout_every: int = 4) -> tuple[list[Passage], list[Passage]]:
    """(train, held-out) passages; every ``heldout_every``-th document (sorted by name) that has passages is held
    out with all of its passages."""
    passages = _all_passages()
    documents = sorted({p.document for p in passages})
    heldout = set(documents[heldout_every - 1::heldout_every])
    return ([p for p in passages if p.document not in heldout], [p for p in passages if p.document in heldout])
