"""The export job on MiniLM-L6 (sentence encoder): two int64 inputs with dynamic batch and sequence, SSVQDecode and
fused SSVQGemm behind the Linear layers' Transpose -> MatMul, verified against PyTorch on held-out passages, int8
dynamic baseline, embedding agreement in the report."""
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ssvq_deploy.cli import export_table
from ssvq_deploy.data import split_texts_by_document
from ssvq_deploy.deploy import ExportConfig, run_export
from ssvq_deploy.models import minilm_tokenizer
from ssvq_deploy.runtime import create_session
from ssvq_deploy.tasks import Samples, SentenceEmbedding

BUILDS = {"fp32", "int8", "ssvq", "ssvq_decode_at_load", "ssvq_fused"}


HELD_OUT = 32  # of the ~280 held-out passages (test time); `ssvq export` verifies on all of them


@pytest.fixture(scope="module")
def exported(tmp_path_factory, minilm_compressed):
    out = tmp_path_factory.mktemp("minilm_export")
    every = SentenceEmbedding.samples

    def fewer(self, split):
        samples = every(self, split)
        return Samples(samples.names[:HELD_OUT], tuple(t[:HELD_OUT] for t in samples.inputs))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SentenceEmbedding, "samples", fewer)
        report = run_export(ExportConfig(model="minilm_ssvq", compressed=str(minilm_compressed), out=str(out),
                                         runs=2, fused="float"))
    return out, report


def test_report_verifies_against_torch_and_reports_embedding_agreement(exported):
    out, report = exported
    assert json.loads((out / "report.json").read_text())["max_abs_err_vs_torch"] == report["max_abs_err_vs_torch"]
    assert report["max_abs_err_vs_torch"] < 1e-4 and report["fused"]["max_abs_err_vs_torch"] < 1e-4
    assert report["fused"]["fused_layers"] == 36 and report["fused"]["unfused"] == {}
    assert 21.0 < report["compression_ratio"] < 21.5  # 36 layers, 10,616,832 weights at 1.5 bits + codebooks
    assert set(report["latency_ms"]) == BUILDS and report["timing_input"]["input_ids"] == [1, 128]
    assert report["agreement_metrics"] == ["cosine_vs_fp32", "nn_agreement_vs_fp32", "cosine_vs_ssvq_torch",
                                           "nn_agreement_vs_ssvq_torch"]
    cos, nn = report["cosine_vs_fp32_by_build"], report["nn_agreement_vs_fp32_by_build"]
    assert set(cos) == set(nn) == BUILDS and "top1_agreement_vs_fp32" not in report
    assert cos["fp32"] == pytest.approx(1.0) and nn["fp32"] == 1.0
    assert cos["int8"] > 0.98 and nn["int8"] > 0.75  # dynamic int8, per-channel weights
    assert cos["ssvq"] == report["cosine_vs_fp32"] and -1 <= cos["ssvq"] < cos["int8"]  # k-means only: far off
    assert cos["ssvq_fused"] == pytest.approx(cos["ssvq"], abs=1e-6)
    assert report["verify_texts"] == [p.name for p in split_texts_by_document()[1][:HELD_OUT]]
    assert report["int8_baseline"].startswith("dynamic")
    sizes = report["onnx_bytes"]
    assert sizes["ssvq"] < sizes["int8"] < sizes["fp32"]  # the fp32 embeddings (47 MB) are in every build
    table = export_table(report)
    assert "cosine_fp32" in table and "nn_agree_fp32" in table


def test_onnx_inputs_are_int64_token_batches_of_any_length(exported):
    out, _ = exported
    ssvq, fused = onnx.load(str(out / "ssvq.onnx")), onnx.load(str(out / "ssvq_fused.onnx"))
    inputs = {i.name: i.type.tensor_type for i in ssvq.graph.input}
    assert list(inputs) == ["input_ids", "attention_mask"]
    assert all(t.elem_type == onnx.TensorProto.INT64 and [d.dim_param for d in t.shape.dim] == ["batch", "seq"]
               for t in inputs.values())
    assert sum(n.op_type == "SSVQDecode" for n in ssvq.graph.node) == 36
    assert sum(n.op_type == "SSVQGemm" for n in fused.graph.node) == 36
    ids, mask = minilm_tokenizer(16)(["short", "a somewhat longer sentence of words"])
    want = ort.InferenceSession(str(out / "fp32.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    session = create_session(str(out / "ssvq.onnx"), 1)
    got = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    assert got.shape == want.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
