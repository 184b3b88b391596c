"""MiniLM-L6: HuggingFace BertModel key layout, the packaged all-MiniLM-L6-v2 weights and tokenizer, and embeddings
checked against two independent references (a numpy forward pass written here from the BERT equations, and
HuggingFace transformers when installed)."""
import json
import math

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import save_file
from torch import nn

from ssvq_deploy.errors import WeightsError
from ssvq_deploy.models import load_model, minilm_files, minilm_tokenizer, model_spec
from ssvq_deploy.models.minilm import BertConfig, MiniLM
from ssvq_deploy.quant.compress import quantizable_layers

SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today.",
             "Ünïcödé naïve CAFÉ, résumé!"]
EMBEDDING_ATOL = 1e-5  # float32 vs float64 / another implementation over 6 layers


@pytest.fixture(scope="module")
def model():
    return load_model("minilm")


@pytest.fixture(scope="module")
def tokens():
    return minilm_tokenizer()(SENTENCES)


@pytest.fixture(scope="module")
def embeddings(model, tokens):
    with torch.no_grad():
        return model(*tokens)


def test_state_dict_matches_the_package_file_key_for_key():
    file = load_numpy(str(minilm_files() / "model.safetensors"))
    ours = MiniLM().state_dict()
    assert set(ours) == set(file) and len(ours) == 104
    assert all(tuple(ours[k].shape) == file[k].shape for k in ours)
    assert BertConfig.from_json(minilm_files() / "config.json") == BertConfig()


def test_compressible_layers_are_the_36_encoder_linears():
    layers = quantizable_layers(MiniLM())
    assert len(layers) == 36 and all(isinstance(m, nn.Linear) and n.startswith("encoder.layer.")
                                     for n, m in layers.items())
    assert sum(m.weight.numel() for m in layers.values()) == 6 * (4 * 384 * 384 + 2 * 384 * 1536)
    assert "pooler.dense.weight" in MiniLM().state_dict()  # loads, but is not compressed (unused by the embedding)


def test_sentence_transformers_pipeline_is_mean_pooling_and_normalize():
    modules = json.loads((minilm_files() / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    pooling = json.loads((minilm_files() / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] and not pooling["pooling_mode_cls_token"]


def _vocab() -> dict[str, int]:
    lines = (minilm_files() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return {token: i for i, token in enumerate(lines)}


def test_tokenizer_on_known_inputs():
    vocab, tok = _vocab(), minilm_tokenizer(16)
    ids, mask = tok(["hello world", "Hello   WORLD", "héllo wörld", "unaffable"])
    want = [vocab["[CLS]"], vocab["hello"], vocab["world"], vocab["[SEP]"]]
    assert want == [101, 7592, 2088, 102]
    for row in range(3):  # uncased: lower case, accents stripped, white space collapsed
        assert ids[row, :4].tolist() == want and ids[row, 4:].eq(vocab["[PAD]"]).all()
        assert mask[row].tolist() == [1] * 4 + [0] * 12
    token = {i: t for t, i in vocab.items()}
    pieces = [token[int(i)] for i in ids[3, 1:int(mask[3].sum()) - 1]]
    assert "".join(p.removeprefix("##") for p in pieces) == "unaffable" and any(p.startswith("##") for p in pieces)
    long_ids, long_mask = tok(["word " * 100])
    assert long_ids.shape == (1, 16) and long_mask.all() and long_ids[0, -1] == vocab["[SEP]"]
    assert ids.dtype == mask.dtype == torch.int64


def _numpy_reference(weights: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """BERT + mean pooling + L2 norm from the equations, float64, straight from the checkpoint tensors; one
    sentence: ``ids``, ``mask`` [n]."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    erf = np.vectorize(math.erf)

    def layer_norm(x, prefix):
        mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-12) * w[f"{prefix}.weight"] + w[f"{prefix}.bias"]

    def dense(x, prefix):
        return x @ w[f"{prefix}.weight"].T + w[f"{prefix}.bias"]

    n = ids.shape[0]
    x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][np.arange(n)]
         + w["embeddings.token_type_embeddings.weight"][0])
    x = layer_norm(x, "embeddings.LayerNorm")
    heads, dh = 12, 32
    for i in range(6):
        p = f"encoder.layer.{i}"
        q, k, v = (dense(x, f"{p}.attention.self.{m}").reshape(n, heads, dh).transpose(1, 0, 2)
                   for m in ("query", "key", "value"))
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(dh) + np.where(mask > 0, 0.0, -1e9)[None, None, :]
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(1, 0, 2).reshape(n, heads * dh)
        x = layer_norm(dense(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        h = dense(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
        x = layer_norm(dense(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    mean = (x * mask[:, None]).sum(0) / mask.sum()
    return mean / np.linalg.norm(mean)


def test_embeddings_match_an_independent_numpy_forward(tokens, embeddings):
    weights = load_numpy(str(minilm_files() / "model.safetensors"))
    ids, mask = tokens
    for row in range(len(SENTENCES)):
        length = int(mask[row].sum())  # unpadded: also checks that padding does not change our embedding
        ref = _numpy_reference(weights, ids[row, :length].numpy(), mask[row, :length].numpy())
        ours = embeddings[row].double().numpy()
        assert np.abs(ours - ref).max() < EMBEDDING_ATOL
        assert float(ours @ ref) > 1 - 1e-6  # measured: 1 - 2e-8


def test_embeddings_match_huggingface_transformers(model, tokens, embeddings):
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (test extra)")
    reference = transformers.BertModel.from_pretrained(str(minilm_files())).eval()
    ids, mask = tokens
    with torch.no_grad():
        states = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    mean = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    ref = torch.nn.functional.normalize(mean, dim=-1)
    assert (embeddings - ref).abs().max() < EMBEDDING_ATOL
    assert torch.nn.functional.cosine_similarity(embeddings, ref).min() > 1 - 1e-6
    real = mask.bool()
    with torch.no_grad():
        assert (model.token_states(ids, mask) - states)[real].abs().max() < 1e-4
    hf_tokens = transformers.BertTokenizer.from_pretrained(str(minilm_files()))(
        SENTENCES, padding="max_length", max_length=128, truncation=True, return_tensors="pt")
    assert torch.equal(hf_tokens["input_ids"], ids) and torch.equal(hf_tokens["attention_mask"], mask)


def test_semantically_close_sentences_score_higher(embeddings):
    assert embeddings.norm(dim=1).sub(1).abs().max() < 1e-6
    sim = embeddings @ embeddings.T
    assert sim[0, 1] > 0.7  # sentence-transformers' own example pair: 0.755
    assert sim[0, 1] > sim[0, 2] + 0.5 and sim[1, 0] > sim[1, 2] + 0.5


def test_user_checkpoints_load_as_safetensors_or_torch(tmp_path, model, tokens, embeddings):
    state = {k: v.clone() for k, v in model.state_dict().items() if k != "embeddings.position_ids"}
    save_file(state, str(tmp_path / "new_transformers.safetensors"))  # transformers >= 4.31 omits position_ids
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ckpt.pth")
    for path in (tmp_path / "new_transformers.safetensors", tmp_path / "ckpt.pth"):
        with torch.no_grad():
            assert torch.equal(load_model("minilm", path)(*tokens), embeddings)
    state["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(10, 384)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(WeightsError, match=r"encoder.layer.0.intermediate.dense.weight: shape \[10, 384\]"):
        load_model("minilm", tmp_path / "bad.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="junk.safetensors"):
        load_model("minilm", tmp_path / "junk.safetensors")


def test_model_io_names_and_dynamic_axes():
    io = model_spec("minilm").model_io()
    assert io.input_names == ("input_ids", "attention_mask") and io.output_names == ("embedding",)
    assert all(t.dtype == torch.int64 and t.shape == (1, 128) for t in io.examples)
    assert io.dynamic_axes["input_ids"] == {0: "batch", 1: "seq"}
    assert model_spec("mobilenetv2").model_io().input_names == ("input",)
