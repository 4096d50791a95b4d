"""Shared fixtures.  Every test runs the IR verifier after each pass."""
import os

import numpy as np
import pytest

os.environ.setdefault("IRC_VERIFY", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
ONNX_FIXTURES = os.path.join(FIXTURES, "onnx")
SAMPLES = os.path.join(ROOT, "samples")


def onnx_fixture(name: str) -> str:
    return os.path.join(ONNX_FIXTURES, name + ".onnx")


def ort_run(path: str, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def random_feeds(graph, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.concrete(batch)).astype(np.float32) for v in graph.inputs}


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
