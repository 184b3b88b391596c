"""Bundled English text: prose passages from docstrings and licences, a split by document, deterministic random token
spans."""
import hashlib
import subprocess
import sys

import pytest
import torch

from ssvq_deploy.data import DOCUMENTS, random_spans, split_texts_by_document, text_passages, trim_padding
from ssvq_deploy.data.texts import _all_passages
from ssvq_deploy.errors import ConfigError


def test_passages_are_prose_from_many_documents():
    passages = text_passages()
    assert len(passages) > 800 and len({p.document for p in passages}) > 60
    assert len({p.text for p in passages}) == len(passages)  # exact duplicates kept once
    for p in passages:
        words = p.text.split()
        assert 8 <= len(words) <= 60 and ">>>" not in p.text and p.text.endswith((".", "?", "!"))
        assert p.name.startswith(p.document + "#")
    kinds = {p.document.split("/")[0] for p in passages}
    assert kinds == {"python", "numpy", "license"}


def test_split_is_by_document_and_deterministic():
    train, held = split_texts_by_document()
    assert not {p.document for p in train} & {p.document for p in held}
    assert {p.name for p in train} | {p.name for p in held} == {p.name for p in text_passages()}
    assert 0.15 < len(held) / (len(train) + len(held)) < 0.35
    _all_passages.cache_clear()  # rebuilt from the installed modules: the same passages in the same order
    again = split_texts_by_document()
    assert [p.name for p in again[0]] == [p.name for p in train] and again[1] == held
    # a fresh interpreter (another import order) finds the same held-out passages
    code = ("from ssvq_deploy.data.texts import split_texts_by_document as s; import hashlib; "
            "print(hashlib.sha256(repr(s()[1]).encode()).hexdigest())")
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert fresh == hashlib.sha256(repr(held).encode()).hexdigest()


def test_unknown_document():
    with pytest.raises(ConfigError, match="unknown text documents"):
        text_passages(["python/nope"])
    assert text_passages(["license/python"]) and DOCUMENTS[0].name == "python/argparse"


def test_random_spans_keep_cls_and_sep_and_are_deterministic():
    ids = torch.tensor([[101, 5, 6, 7, 8, 9, 10, 11, 12, 102, 0, 0], [101, 20, 21, 102, 0, 0, 0, 0, 0, 0, 0, 0]])
    mask = (ids != 0).long()
    a = random_spans((ids, mask), torch.Generator().manual_seed(1))
    b = random_spans((ids, mask), torch.Generator().manual_seed(1))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    for _ in range(20):
        out_ids, out_mask = random_spans((ids, mask), torch.Generator().manual_seed(_))
        assert out_ids.shape[1] == int(out_mask.sum(1).max()) <= 10
        for row, full in zip(range(2), (list(range(5, 13)), [20, 21])):
            n = int(out_mask[row].sum())
            tokens = out_ids[row, :n].tolist()
            assert tokens[0] == 101 and tokens[-1] == 102 and out_ids[row, n:].eq(0).all()
            inner = tokens[1:-1]
            assert len(inner) >= len(full) / 2 and inner == full[full.index(inner[0]):full.index(inner[0]) + len(inner)]


def test_trim_padding():
    ids = torch.tensor([[1, 2, 0, 0], [1, 0, 0, 0]])
    out_ids, out_mask = trim_padding(ids, (ids != 0).long())
    assert out_ids.tolist() == [[1, 2], [1, 0]] and out_mask.tolist() == [[1, 1], [1, 0]]
