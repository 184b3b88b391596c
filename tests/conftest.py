import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: on this 2-core machine, OpenMP barriers stall badly whenever another process is busy."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def minilm_compressed(tmp_path_factory):
    """all-MiniLM-L6-v2 (packaged weights) compressed with its recipe's SSVQ k=16 d=8, but 2 k-means iterations
    (speed), saved as a compressed file; shared by the MiniLM job tests."""
    from ssvq_deploy.format import save
    from ssvq_deploy.models import load_model
    from ssvq_deploy.quant.compress import compress_model
    from ssvq_deploy.recipe import load_recipe
    recipe = load_recipe("minilm_ssvq").with_quant(iters=2)
    compressed = compress_model(load_model("minilm"), recipe.quant, "minilm")
    compressed.meta["recipe"] = recipe.name
    path = tmp_path_factory.mktemp("minilm") / "model.ssvq.safetensors"
    save(compressed, path)
    return path
