"""Program artifacts: save, load, and the ways a damaged one is refused."""
import json
import os
import zipfile

import numpy as np
import pytest

import irc
from conftest import SAMPLES, onnx_fixture, random_feeds


@pytest.fixture
def saved(tmp_path):
    graph = irc.load(onnx_fixture("resnet_tiny"))
    prog = irc.compile(graph, target="numpy")
    path = str(tmp_path / "net.ircp")
    prog.save(path)
    return prog, path, graph


def test_round_trip_gives_identical_outputs(saved):
    prog, path, graph = saved
    feeds = random_feeds(graph, 4)
    back = irc.load_program(path)
    np.testing.assert_array_equal(prog.run(feeds), back.run(feeds))
    assert back.source == prog.source


def test_manifest_has_version_and_hashes(saved):
    _, path, _ = saved
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
        assert set(z.namelist()) == {"manifest.json", "graph.ir", "weights.npz", "program.py"}
    assert manifest["format"] == "irc-program" and manifest["format_version"] == 2
    assert manifest["manifest_sha256"] == irc.program.manifest_digest(manifest)
    assert set(manifest["sha256"]) == {"graph.ir", "weights.npz", "program.py"}


def _rewrite(path, name, transform):
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[name] = transform(members[name])
    with zipfile.ZipFile(path, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def test_truncated_artifact(saved):
    _, path, _ = saved
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(irc.IRCError, match="not an irc program artifact|damaged|missing"):
        irc.load_program(path)


def test_tampered_weights(saved):
    _, path, _ = saved
    _rewrite(path, "weights.npz", lambda b: b[:-20] + bytes(20))
    with pytest.raises(irc.IRCError, match="'weights.npz' does not match its hash"):
        irc.load_program(path)


def test_tampered_source_with_matching_hash_is_never_executed(saved):
    _, path, _ = saved
    evil = b"raise SystemExit('executed!')\n"

    def patch_manifest(b):
        m = json.loads(b)
        import hashlib
        m["sha256"]["program.py"] = hashlib.sha256(evil).hexdigest()
        irc.program.sign_manifest(m)  # a tamperer who re-signs the manifest too
        return json.dumps(m).encode()

    _rewrite(path, "program.py", lambda b: evil)
    _rewrite(path, "manifest.json", patch_manifest)
    with pytest.raises(irc.IRCError, match="stored source does not match its IR"):
        irc.load_program(path)


def test_newer_format_version(saved):
    _, path, _ = saved
    _rewrite(path, "manifest.json", lambda b: json.dumps({**json.loads(b), "format_version": 99}).encode())
    with pytest.raises(irc.IRCError, match="format version 99"):
        irc.load_program(path)


def test_not_an_artifact(tmp_path):
    p = tmp_path / "x.ircp"
    p.write_text("hello")
    with pytest.raises(irc.IRCError, match="not an irc program artifact"):
        irc.load_program(str(p))


def test_chunked_run_equals_whole_batch(saved):
    prog, _, graph = saved
    feeds = random_feeds(graph, 10)
    np.testing.assert_allclose(prog.run(feeds, batch_size=3), prog.run(feeds), rtol=1e-6, atol=1e-6)


def test_inputs_by_name_and_position():
    graph = irc.load(onnx_fixture("multibranch_concat"))
    prog = irc.compile(graph)
    feeds = random_feeds(graph, 2)
    np.testing.assert_array_equal(prog.run(feeds["x"], feeds["extra"]), prog.run(extra=feeds["extra"], x=feeds["x"]))
    with pytest.raises(irc.IRCError, match="takes 2 input"):
        prog.run(feeds["x"])


def _fixed_batch_digits(tmp_path, rows: int = 1) -> str:
    """The bundled digits CNN as torch.onnx.export writes it without dynamic_axes: batch fixed at ``rows``."""
    import onnx

    m = onnx.load(os.path.join(SAMPLES, "digits", "digits_cnn.onnx"))
    for v in list(m.graph.input) + list(m.graph.output):
        d = v.type.tensor_type.shape.dim[0]
        d.ClearField("dim_param")
        d.dim_value = rows
    path = str(tmp_path / "fixed.onnx")
    onnx.save(m, path)
    return path


@pytest.mark.parametrize("rows", [1, 3])
def test_a_fixed_batch_model_runs_any_multiple_of_its_batch(tmp_path, rows):
    """450 samples on a model exported with batch fixed at 1 (or 3): fed that many rows at a time, as
    onnxruntime would be fed, through the API as through the CLI."""
    import onnxruntime as ort

    path = _fixed_batch_digits(tmp_path, rows)
    x = np.load(os.path.join(SAMPLES, "digits", "test.npz"))["x"][:rows * 7]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    want = np.concatenate([sess.run(None, {"x": x[i:i + rows]})[0] for i in range(0, len(x), rows)])
    got = irc.compile(irc.load(path), target="numpy").run(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(irc.IRCError, match="positive multiple"):
        irc.compile(irc.load(path), target="numpy").run(x[:0] if rows == 1 else x[:rows + 1])


def test_spiking_a_fixed_batch_model_is_refused_before_calibration(tmp_path):
    cal = np.load(os.path.join(SAMPLES, "digits", "calibration.npz"))["x"]
    with pytest.raises(irc.IRCError, match="fixed shape") as e:
        irc.compile(irc.load(_fixed_batch_digits(tmp_path)), target="spike-numpy", calibration=cal)
    assert "dynamic_axes" in str(e.value)
