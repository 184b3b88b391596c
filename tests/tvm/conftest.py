"""TVM backend tests: an x86-64 host (kernels are built for it and run), one TVM thread (helpers: tvm_helpers.py)."""
import platform

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_tvm_thread():
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the TVM backend tests build for and run on an x86-64 host, this is {platform.machine()}")
    import tvm
    tvm.get_global_func("runtime.config_threadpool")(1, 1)
