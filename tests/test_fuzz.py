"""Damaged, hostile and absurd inputs: each must end in one IRCError (never a raw Python error, a hang or a
huge allocation).  The cases are the classes tools/fuzz.py found, rebuilt by hand from valid fixtures."""
import hashlib
import io
import json
import os
import shutil
import warnings
import zipfile

import numpy as np
import pytest

import irc
from conftest import FIXTURES, SAMPLES, onnx_fixture

KERAS = os.path.join(FIXTURES, "keras")


# ------------------------------------------------------------------------------------------ helpers
def _onnx(name: str = "mlp"):
    import onnx

    return onnx.load(onnx_fixture(name))


def _save_onnx(model, tmp_path, name: str = "m.onnx") -> str:
    path = str(tmp_path / name)
    with open(path, "wb") as f:  # bytes as they are (onnx.save would rewrite external data)
        f.write(model.SerializeToString())
    return path


def _rezip(src: str, dst: str, **changes: bytes | None) -> str:
    """A copy of a zip with some members replaced (None: removed)."""
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    for k, v in changes.items():
        k = k.replace("__", ".")
        if v is None:
            members.pop(k, None)
        else:
            members[k] = v
    with zipfile.ZipFile(dst, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return dst


def _keras_with(tmp_path, edit, fixture: str = "seq_cnn") -> str:
    """seq_cnn.keras with its config.json edited by ``edit(config)``."""
    src = os.path.join(KERAS, fixture + ".keras")
    with zipfile.ZipFile(src) as z:
        config = json.loads(z.read("config.json"))
    edit(config)
    return _rezip(src, str(tmp_path / "m.keras"), config__json=json.dumps(config).encode())


def _layer(config: dict, name: str) -> dict:
    return next(layer for layer in config["config"]["layers"] if layer["config"].get("name") == name)


def _h5_copy(tmp_path, fixture: str = "seq_cnn") -> str:
    dst = str(tmp_path / "m.h5")
    shutil.copy(os.path.join(KERAS, fixture + ".h5"), dst)
    return dst


def _first_dataset(f) -> str:
    import h5py

    names: list[str] = []
    f["model_weights"].visit(lambda n: names.append(n) if isinstance(f["model_weights"][n], h5py.Dataset) else None)
    return "model_weights/" + names[0]


# ------------------------------------------------------------------------------------------ ONNX
def test_onnx_initializer_dims_disagree_with_data(tmp_path):
    m = _onnx()
    init = next(t for t in m.graph.initializer if len(t.dims) == 1)
    init.dims[0] -= 1  # more data than dims (onnx.checker catches the other way round)
    with pytest.raises(irc.IRCError, match=r"declares dims .* but holds data for"):
        irc.load(_save_onnx(m, tmp_path))


def test_onnx_initializer_unknown_element_type(tmp_path):
    m = _onnx()
    m.graph.initializer[0].data_type = 99
    with pytest.raises(irc.IRCError, match="unknown element type"):
        irc.load(_save_onnx(m, tmp_path))


def test_onnx_huge_declared_initializer_is_refused_before_allocation(tmp_path, monkeypatch):
    from onnx import TensorProto

    m = _onnx()
    huge = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[2**20, 2**20])  # no data at all
    m.graph.initializer.append(huge)
    m.graph.node[0].input[1] = "huge"
    with pytest.raises(irc.IRCError, match="invalid|max_tensor_elements"):  # onnx.checker may see it first
        irc.load(_save_onnx(m, tmp_path))
    monkeypatch.setattr("onnx.checker.check_model", lambda model: None)
    with pytest.raises(irc.IRCError, match="max_tensor_elements.*\n.*IRC_MAX_TENSOR_ELEMENTS="):
        irc.load(_save_onnx(m, tmp_path))


def test_limit_env_var_lowers_a_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("IRC_MAX_TENSOR_ELEMENTS", "10")
    with pytest.raises(irc.IRCError, match=r"more than the limit max_tensor_elements \(10\)"):
        irc.load(onnx_fixture("mlp"))
    monkeypatch.setenv("IRC_MAX_TENSOR_ELEMENTS", "lots")
    with pytest.raises(irc.IRCError, match="IRC_MAX_TENSOR_ELEMENTS='lots' is not an integer"):
        irc.load(onnx_fixture("mlp"))


def test_onnx_external_data_is_not_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where onnx.checker looks for the file
    m = _onnx()
    t = m.graph.initializer[0]
    t.data_location = t.EXTERNAL
    entry = t.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    (tmp_path / "weights.bin").write_bytes(bytes(4096))
    t.ClearField("raw_data")
    with pytest.raises(irc.UnsupportedError, match="external file"):
        irc.load(_save_onnx(m, tmp_path))


def test_onnx_graph_without_outputs(tmp_path):
    m = _onnx()
    del m.graph.output[:]
    with pytest.raises(irc.IRCError, match="no outputs"):
        irc.load(_save_onnx(m, tmp_path))


@pytest.mark.parametrize("fixture,op,edit", [
    ("multibranch_concat", "Concat", lambda n: n.attribute[0].__setattr__("i", 7)),
    ("view_reshape", "Gather", lambda n: n.attribute[0].__setattr__("i", 2**31 - 1)),
])
def test_onnx_bad_constant_folding(tmp_path, fixture, op, edit):
    """A node folded at load time (Shape -> Gather -> Concat chains) with attributes no valid model has."""
    m = _onnx(fixture)
    nodes = [n for n in m.graph.node if n.op_type == op and n.attribute]
    if not nodes:
        pytest.skip(f"{fixture} has no {op} with attributes")
    edit(nodes[0])
    with pytest.raises(irc.IRCError):
        irc.load(_save_onnx(m, tmp_path))


def test_onnx_gemm_with_mismatched_constant_weight(tmp_path):
    from onnx import numpy_helper

    m = _onnx("mlp")
    gemm = next(n for n in m.graph.node if n.op_type == "Gemm")
    w = next(t for t in m.graph.initializer if t.name == gemm.input[1])
    w.CopyFrom(numpy_helper.from_array(np.ones((3, 1), np.float32), w.name))
    with pytest.raises(irc.IRCError, match="Gemm"):
        irc.compile(irc.load(_save_onnx(m, tmp_path)), "numpy")


def test_onnx_negative_conv_output_is_refused_at_load(tmp_path):
    m = _onnx("dilated_strided")
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    for a in conv.attribute:
        if a.name == "dilations":
            a.ints[0] = -7
    with pytest.raises(irc.IRCError, match="dilation -7 is out of range"):
        irc.load(_save_onnx(m, tmp_path))


def test_empty_axis_runs_on_numpy_and_is_refused_by_spiking_targets(tmp_path):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 0])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 0])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [0, -1])
    g = helper.make_graph([helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])],
                          "g", [x], [y], [shape])
    path = _save_onnx(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), tmp_path)
    out = irc.compile(path, "numpy").run(np.zeros((2, 3, 0), np.float32))
    assert out.shape == (2, 0)
    with pytest.raises(irc.UnsupportedError, match="has no elements"):
        irc.compile(path, "spike-numpy", calibration=np.zeros((2, 3, 0), np.float32))


def test_onnx_name_not_utf8(tmp_path):
    m = _onnx()
    m.graph.node[0].name = "conv_NAME"
    data = m.SerializeToString().replace(b"conv_NAME", b"conv_\xff\xfeME")  # same length
    path = tmp_path / "m.onnx"
    path.write_bytes(data)
    with pytest.raises(irc.IRCError, match="not UTF-8 text"):
        irc.load(str(path))


def test_huge_inferred_tensor_is_refused_at_load(tmp_path):
    """Pads of 2^30 make a pool's output 2^30 long: refused when its type is inferred, not when run."""
    m = _onnx("pools_ceil_padded")
    pool = next(n for n in m.graph.node if n.op_type == "MaxPool")
    for a in pool.attribute:
        if a.name == "pads":
            a.ints[0] = 2**30
    with pytest.raises(irc.IRCError, match="max_tensor_elements"):
        irc.load(_save_onnx(m, tmp_path))


def test_bad_type_is_an_irc_error():
    from irc.types import TensorType

    with pytest.raises(irc.IRCError, match="bad dimension -1"):
        TensorType(("N", 4, -1))
    with pytest.raises(ValueError):  # still a ValueError for callers that expect one
        TensorType(("N", 4, -1))


# ------------------------------------------------------------------------------------------ Keras / HDF5
def test_keras_malformed_dtype_entry(tmp_path):
    path = _keras_with(tmp_path, lambda c: _layer(c, "dropout")["config"].__setitem__("dtype", {"config": None}))
    with pytest.raises(irc.IRCError, match="config of Dropout 'dropout' is malformed"):
        irc.load(path)


def test_keras_huge_pool_kernel_is_refused_before_running(tmp_path):
    def edit(c):
        _layer(c, "max_pooling2d")["config"]["pool_size"] = [2**31 - 1, 2]
    with pytest.raises(irc.IRCError, match="max_window.*\n.*IRC_MAX_WINDOW="):
        irc.load(_keras_with(tmp_path, edit))


@pytest.mark.parametrize("rate", [0, 2**31])
def test_keras_bad_dilation_rate(tmp_path, rate):
    path = _keras_with(tmp_path, lambda c: _layer(c, "conv2d_3")["config"].__setitem__("dilation_rate", [rate, rate]))
    with pytest.raises(irc.IRCError, match="dilation"):
        irc.load(path)


def test_h5_huge_declared_dataset_is_refused_before_reading(tmp_path):
    import h5py

    path = _h5_copy(tmp_path)
    with h5py.File(path, "r+") as f:
        name = _first_dataset(f)
        parent, leaf = f[name].parent, name.rsplit("/", 1)[1]
        del parent[leaf]
        parent.create_dataset(leaf, shape=(2**20, 2**20), dtype="f4")  # declared, never written
    with pytest.raises(irc.IRCError, match="max_tensor_elements"):
        irc.load(path)


def test_h5_external_storage_is_refused(tmp_path):
    import h5py

    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(64, dtype=np.float32).tobytes())
    path = _h5_copy(tmp_path)
    with h5py.File(path, "r+") as f:
        name = _first_dataset(f)
        ds = f[name]
        shape, parent, leaf = ds.shape, ds.parent, name.rsplit("/", 1)[1]
        del parent[leaf]
        parent.create_dataset(leaf, shape=shape, dtype="f4", external=[(str(secret), 0, h5py.h5f.UNLIMITED)])
    with pytest.raises(irc.IRCError, match="keeps its data outside the file .HDF5 external storage"):
        irc.load(path)


def test_h5_external_link_is_refused(tmp_path):
    import h5py

    other = str(tmp_path / "other.h5")
    with h5py.File(other, "w") as g:
        g["w"] = np.zeros(4, np.float32)
    path = _h5_copy(tmp_path)
    with h5py.File(path, "r+") as f:
        name = _first_dataset(f)
        parent, leaf = f[name].parent, name.rsplit("/", 1)[1]
        del parent[leaf]
        parent[leaf] = h5py.ExternalLink(other, "/w")
    with pytest.raises(irc.IRCError, match="is an external link to"):
        irc.load(path)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_corrupt_hdf5_after_opening(tmp_path, suffix, monkeypatch):
    """Zeroed blocks inside the HDF5 data: h5py opens the file and fails later (KeyError/RuntimeError)."""
    monkeypatch.setenv("IRC_MAX_READ_SECONDS", "3")
    src = os.path.join(KERAS, "functional_branches" + suffix)
    if suffix == ".keras":
        with zipfile.ZipFile(src) as z:
            blob = z.read("model.weights.h5")
    else:
        blob = open(src, "rb").read()
    messages = set()
    for offset in range(512, len(blob) - 512, max(len(blob) // 10, 1)):
        bad = blob[:offset] + bytes(256) + blob[offset + 256:]
        path = str(tmp_path / ("m" + suffix))
        if suffix == ".keras":
            _rezip(src, path, model__weights__h5=bad)
        else:
            open(path, "wb").write(bad)
        try:
            irc.compile(irc.load(path), "numpy")
        except irc.IRCError as e:
            messages.add(str(e).split(": ", 1)[-1][:40])
    assert messages  # at least one block mattered, and every failure was an IRCError


def test_libhdf5_stuck_in_a_damaged_file(tmp_path, monkeypatch):
    """These zeroed bytes make libhdf5 loop forever inside C reading a string attribute (no signal reaches
    it); the file is read in a child process, so this is one IRCError naming the limit."""
    monkeypatch.setenv("IRC_MAX_READ_SECONDS", "2")
    blob = open(os.path.join(KERAS, "functional_branches.h5"), "rb").read()
    path = tmp_path / "m.h5"
    path.write_bytes(blob[:21512] + bytes(256) + blob[21512 + 256:])
    with pytest.raises(irc.IRCError, match="did not finish within 2 s(.|\n)*IRC_MAX_READ_SECONDS"):
        irc.load(str(path))


# ------------------------------------------------------------------------------------------ N2D2
def test_binary_weights_file(tmp_path):
    ini = os.path.join(SAMPLES, "digits", "digits_spike.ini")
    wdir = tmp_path / "w"
    shutil.copytree(os.path.join(SAMPLES, "digits", "digits_spike_weights"), wdir)
    first = sorted(os.listdir(wdir))[0]
    (wdir / first).write_bytes(b"0.5 0.25 \xff\xfe\x00\x01 0.1")
    with pytest.raises(irc.IRCError, match="is not text"):
        irc.load(ini, weights=str(wdir))


DIGITS_INI = os.path.join(SAMPLES, "digits", "digits_spike.ini")
POOL1 = "PoolDims=2 2\nNbOutputs=[conv1]NbOutputs\nStride=2"
CONV1 = "KernelDims=3 3\nPadding=1\nNbOutputs=6"


@pytest.mark.parametrize("old,new,match", [
    (POOL1, POOL1.replace("Stride=2", "Stride=0"), "stride 0 is out of range"),
    (POOL1, POOL1.replace("PoolDims=2 2", "PoolDims=0 0"), "kernel size 0 is out of range"),
    (POOL1, POOL1.replace("PoolDims=2 2", "PoolDims=-2 -2"), "kernel size -2 is out of range"),
    (CONV1, CONV1.replace("KernelDims=3 3", "KernelDims=-3 3"), "not a size between"),
    ("WeightsFiller=HeFiller", "WeightsFiller=NormalFiller\nWeightsFiller.StdDev=-1", "StdDev=-1.0 is not a non-negative"),
    ("WeightsFiller=HeFiller", "WeightsFiller=UniformFiller\nWeightsFiller.Min=2", "Min=2.0 is above"),
    (CONV1, CONV1.replace("KernelDims=3 3\nPadding=1\nNbOutputs=6", "KernelDims=1 1\nPadding=0\nNbOutputs=65536"),
     "channel mapping of .pool1. .65536 x 65536. declares 4,294,967,296 elements"),
])
def test_ini_bad_sizes_are_refused_at_load(tmp_path, old, new, match):
    text = open(DIGITS_INI).read()
    assert old in text
    path = tmp_path / "m.ini"
    path.write_text(text.replace(old, new, 1))
    with warnings.catch_warnings(), pytest.raises(irc.IRCError, match=match):
        warnings.simplefilter("ignore")  # no weights folder: the fillers' warning
        irc.load(str(path))


def test_keras_config_nested_too_deeply(tmp_path):
    text = '{"class_name": "Functional", "config": {"name": "m", "layers": [], "input_layers": [], "output_layers": []}}'
    parts = ['{"class_name": "Functional", "config": {"name": "m%d", "layers": [' % i for i in range(3000)]
    text = "".join(parts) + text + "], \"input_layers\": [], \"output_layers\": []}}" * 3000
    path = _rezip(os.path.join(KERAS, "functional_branches.keras"), str(tmp_path / "m.keras"), config__json=text.encode())
    with pytest.raises(irc.IRCError, match="too deeply"):
        irc.load(path)


def test_keras_negative_output_index(tmp_path):
    def edit(c):
        c["config"]["output_layers"][0][2] = -7
    with pytest.raises(irc.IRCError, match="refers to output -7"):
        irc.load(_keras_with(tmp_path, edit, "functional_branches"))


def test_keras_model_without_outputs(tmp_path):
    path = _keras_with(tmp_path, lambda c: c["config"].__setitem__("output_layers", []), "functional_branches")
    with pytest.raises(irc.IRCError, match="no outputs"):
        irc.load(path)


def test_fixed_batch_of_zero_flattens_on_numpy(tmp_path):
    m = _onnx("lenet5_tanh")
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 0
    g = irc.load(_save_onnx(m, tmp_path))
    x = np.zeros(g.inputs[0].type.shape, np.float32)
    assert irc.compile(g, "numpy").run(x).shape[0] == 0


def _ini_with_template(tmp_path, spec: str, inner: str | None = None) -> str:
    model, outside = tmp_path / "model", tmp_path / "outside"
    model.mkdir()
    outside.mkdir()
    (outside / "t.ini.tpl").write_text("[{{SECTION_NAME}}_x]\nType=Fc\n" + (inner or ""))
    (outside / "inc.tpl").write_text("[inc]\nK=1\n")
    (model / "t.ini.tpl").write_text("[{{SECTION_NAME}}_y]\n{% include " + str(outside / "inc.tpl") + " %}\n")
    (model / "m.ini").write_text(f"[a@{spec}]\nK=1\n")
    return str(model / "m.ini")


@pytest.mark.parametrize("spec", ["../outside/t.ini.tpl", "{abs}/outside/t.ini.tpl", "${HOME_ISH}/t.ini.tpl"])
def test_ini_template_outside_the_model_folder_is_refused(tmp_path, spec):
    from irc.frontends.n2d2.syntax import parse_ini

    path = _ini_with_template(tmp_path, spec.replace("{abs}", str(tmp_path)))
    with pytest.raises(irc.IRCError, match="outside the model's folder(.|\n)*IRC_INI_INCLUDE_PATH"):
        parse_ini(path, env={"HOME_ISH": str(tmp_path / "outside")})
    doc = parse_ini(path, env={"HOME_ISH": str(tmp_path / "outside"), "IRC_INI_INCLUDE_PATH": str(tmp_path / "outside")})
    assert "a_x" in doc.sections  # allowed explicitly: read


def test_ini_nested_include_outside_is_refused(tmp_path, monkeypatch):
    """A nested {% include %} obeys the same roots as the template line: the environment given to parse_ini
    (not os.environ, which must neither allow nor refuse it)."""
    from irc.frontends.n2d2.syntax import parse_ini

    path = _ini_with_template(tmp_path, "t.ini.tpl")  # the template inside includes a file outside
    monkeypatch.setenv("IRC_INI_INCLUDE_PATH", str(tmp_path / "outside"))  # ignored: env= is what counts
    with pytest.raises(irc.IRCError, match="included template .* outside the model's folder"):
        parse_ini(path, env={})
    monkeypatch.delenv("IRC_INI_INCLUDE_PATH", raising=False)
    assert "inc" in parse_ini(path, env={"IRC_INI_INCLUDE_PATH": str(tmp_path / "outside")}).sections


# ------------------------------------------------------------------------------------------ .ircp
@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("ircp")
    cal = np.load(os.path.join(SAMPLES, "digits", "calibration.npz"))
    cal = cal[cal.files[0]][:8]
    onnx_path = os.path.join(SAMPLES, "digits", "digits_cnn.onnx")
    out = {}
    for target, opts in (("numpy", {}), ("spike-numpy", {"calibration": cal, "timesteps": 4})):
        out[target] = str(d / f"{target}.ircp")
        irc.compile(onnx_path, target, **opts).save(out[target])
    return out


def _tamper(src: str, dst: str, edit, resign: bool = True) -> str:
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    manifest = json.loads(members["manifest.json"])
    edit(manifest, members)
    if resign:
        manifest["sha256"] = {k: hashlib.sha256(v).hexdigest() for k, v in members.items() if k != "manifest.json"}
        irc.program.sign_manifest(manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return dst


@pytest.mark.parametrize("which,edit,match", [
    ("numpy", lambda m, _: m.__setitem__("target", "spike-numpy"), "."),
    ("spike-numpy", lambda m, _: m.__setitem__("target", "numpy"), "option"),
    ("numpy", lambda m, _: m.__setitem__("target", "nope"), "names target 'nope'"),
    ("numpy", lambda m, _: m.__setitem__("format_version", 0), "format_version 0"),
    ("numpy", lambda m, _: m.__setitem__("format_version", -1), "format_version -1"),
    ("numpy", lambda m, _: m.__setitem__("format_version", True), "format_version True"),
    ("numpy", lambda m, _: m["options"].__setitem__("threads", "x"), "option 'threads'"),
    ("numpy", lambda m, _: m["options"].__setitem__("threads", -1), "option 'threads'"),
    ("numpy", lambda m, _: m["options"].__setitem__("batch_size", [1, 2]), "option 'batch_size'"),
    ("spike-numpy", lambda m, _: m["options"].__setitem__("timesteps", 10**9), "option 'timesteps'"),
    ("spike-numpy", lambda m, _: m["options"].__setitem__("timesteps", "x"), "option 'timesteps'"),
    ("numpy", lambda m, _: m.__setitem__("options", [1]), "options that are not a mapping"),
    ("numpy", lambda m, _: m["inputs"][0].__setitem__("type", "f32[N,3]"), "inputs do not match"),
    ("numpy", lambda m, mem: mem.__setitem__("graph.ir", b"\xff\xfe" + mem["graph.ir"]), "not UTF-8"),
])
def test_tampered_manifest_resigned(tmp_path, artifacts, which, edit, match):
    path = _tamper(artifacts[which], str(tmp_path / "t.ircp"), edit)
    with pytest.raises(irc.IRCError, match=match):
        irc.load_program(path).run(np.zeros((1, 1, 8, 8), np.float32))


def test_manifest_edit_without_resigning_breaks_its_hash(tmp_path, artifacts):
    path = _tamper(artifacts["spike-numpy"], str(tmp_path / "t.ircp"),
                   lambda m, _: m["options"].__setitem__("timesteps", 5), resign=False)
    with pytest.raises(irc.IRCError, match="manifest does not match its hash"):
        irc.load_program(path)


def test_ircp_huge_declared_array(tmp_path, artifacts):
    def edit(m, members):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            header = {"descr": "<f4", "fortran_order": False, "shape": (2**20, 2**20)}
            npy = io.BytesIO()
            np.lib.format.write_array_header_1_0(npy, header)
            z.writestr("p0.npy", npy.getvalue())
        members["weights.npz"] = buf.getvalue()
    path = _tamper(artifacts["numpy"], str(tmp_path / "t.ircp"), edit)
    with pytest.raises(irc.IRCError, match="max_tensor_elements"):
        irc.load_program(path)


# ------------------------------------------------------------------------------------------ mutations
def _fuzz_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("irc_fuzz_tool", os.path.join(FIXTURES, "..", "..", "tools", "fuzz.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fuzz_env(tmp_path_factory):
    """tools/fuzz.py's mutators and seeds (the .ircp seeds compiled once)."""
    tool = _fuzz_tool()
    tmp = str(tmp_path_factory.mktemp("fuzz"))
    seeds = {k: [os.path.join(tool.ROOT, p) for p in v] for k, v in tool.SEEDS.items()}
    seeds["ircp"] = tool.make_ircp_seeds(tmp)
    return tool, seeds, tmp


def _mutations(fuzz_env, frontend: str, examples: int) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    tool, seeds, tmp = fuzz_env

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(number=st.integers(0, 2**31 - 1))
    def one(number):
        try:
            case = tool.Case(frontend, number, seeds, tmp)
        except Exception:  # noqa: BLE001  (a mutation that could not be written is no input)
            return
        try:
            tool.run_case(case.path, frontend, case.weights, np.random.default_rng(number))
        except tool._Skip:
            pass
        except irc.IRCError as e:
            # a frontend must not build broken IR; a tampered artifact's IR is rightly refused by the verifier
            assert frontend == "ircp" or not isinstance(e, irc.errors.VerifyError), f"{frontend}:{number}: {e}"
        finally:
            case.cleanup()

    one()


FRONTENDS = ("onnx", "keras", "h5", "ini", "ircp")


@pytest.mark.parametrize("frontend", FRONTENDS)
def test_mutated_inputs_end_in_irc_errors(fuzz_env, frontend, monkeypatch):
    """Hypothesis picks cases of tools/fuzz.py's mutators (structured and byte mutations of valid seeds) and
    runs each the way a user would (load, compile, run, spike conversion, run): anything but success or an
    IRCError fails (and hypothesis shrinks it to the smallest case number).  IRC_FUZZ_EXAMPLES sets how many."""
    monkeypatch.setenv("IRC_MAX_READ_SECONDS", "5")
    _mutations(fuzz_env, frontend, int(os.environ.get("IRC_FUZZ_EXAMPLES", "20")))


@pytest.mark.slow
@pytest.mark.parametrize("frontend", FRONTENDS)
def test_many_mutated_inputs_end_in_irc_errors(fuzz_env, frontend, monkeypatch):
    """The same, 60 cases per frontend (300 in all)."""
    monkeypatch.setenv("IRC_MAX_READ_SECONDS", "5")
    _mutations(fuzz_env, frontend, 60)


def test_spiking_run_work_is_bounded(artifacts, monkeypatch):
    prog = irc.load_program(artifacts["spike-numpy"])
    monkeypatch.setenv("IRC_MAX_WORK", "1000")
    with pytest.raises(irc.IRCError, match="more than the limit max_work(.|\n)*IRC_MAX_WORK="):
        prog.run(np.zeros((4, 1, 8, 8), np.float32), timesteps=50)


def test_ini_text_size_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("IRC_MAX_TEXT_BYTES", "100")
    with pytest.raises(irc.IRCError, match="the INI file declares .* bytes, more than the limit max_text_bytes"):
        irc.load(DIGITS_INI)


def test_conv_padded_input_is_bounded(tmp_path):
    """A dilation of 2^30 with pads of 2^30 fits (the output is small) but the padded copy would be terabytes."""
    m = _onnx("dilated_strided")
    conv = next(n for n in m.graph.node if n.op_type == "Conv")
    attrs = {a.name: a for a in conv.attribute}
    attrs["dilations"].ints[0] = 2**30
    attrs["pads"].ints[0] = attrs["pads"].ints[2] = 2**30
    with pytest.raises(irc.IRCError, match="the padded input .* max_tensor_elements"):
        irc.load(_save_onnx(m, tmp_path))


def test_rank0_input(tmp_path):
    m = _onnx("mlp")
    m.graph.input[0].type.tensor_type.shape.ClearField("dim")
    with pytest.raises(irc.IRCError):
        g = irc.load(_save_onnx(m, tmp_path))
        irc.compile(g, "spike-numpy", calibration=np.ones((2,), np.float32)).run(np.float32(1))


def test_ircp_zip_with_unknown_version(tmp_path, artifacts):
    """A damaged central directory that claims a zip version zipfile does not implement."""
    data = bytearray(open(artifacts["numpy"], "rb").read())
    cd = data.rfind(b"PK\x01\x02")  # the last central directory entry: 'version needed to extract' at +6
    data[cd + 6:cd + 8] = (14 * 10 + 8).to_bytes(2, "little")
    path = tmp_path / "t.ircp"
    path.write_bytes(bytes(data))
    with pytest.raises(irc.IRCError, match="not an irc program artifact"):
        irc.load_program(str(path))


def test_ir_text_with_a_damaged_quoted_string():
    """A control character inside a quoted name or attribute (ircp:40333) is an IRCError naming the line."""
    from irc.text import parse_graph

    for text in ('graph "g\x01" {\n}\n', 'graph "g" {\n  input %"x\x02" : f32[N,4]\n}\n',
                 'graph "g" {\n  meta m = "a\x03b"\n}\n'):
        with pytest.raises(irc.IRCError, match="line [12].*bad quoted string"):
            parse_graph(text)


def _edit_meta(key: str, value: str):
    """An artifact edit that replaces the graph's ``meta KEY = ...`` line (re-signed by _tamper)."""
    def edit(m, members):
        lines = members["graph.ir"].decode().splitlines()
        lines = [f"  meta {key} = {value}" if line.startswith(f"  meta {key} ") else line for line in lines]
        if not any(line.startswith(f"  meta {key} ") for line in lines):
            lines.insert(1, f"  meta {key} = {value}")
        members["graph.ir"] = ("\n".join(lines) + "\n").encode()
    return edit


@pytest.mark.parametrize("key,value,match", [
    ("thresholds", '"{\\"method\\": "', "'thresholds' is not valid JSON"),     # fuzz ircp:45601
    ("thresholds", '"[1, 2]"', "'thresholds' should be a JSON dict"),
    ("thresholds", '"{\\"layers\\": {\\"a\\": \\"x\\"}}"', "layer range 'a'"),
    ("thresholds", '"{\\"fitted_for_timesteps\\": \\"4\\"}"', "fitted_for_timesteps='4'"),
    ("thresholds", '"{\\"bias_correction\\": {\\"shifts\\": [1]}}"', "shifts that is not a mapping"),
    ("thresholds", '"{\\"output_check\\": {\\"fitted\\": \\"low\\"}}"', "output_check with errors"),
    ("thresholds", '"{\\"output_check\\": [1]}"', "output_check=\\[1\\] of the wrong type"),
    ("analog_macs", '"many"', "'analog_macs' should be a count"),
    ("virtual_synapses", "-5", "'virtual_synapses' should be a count"),
    ("output_batch_axes", "[7]", "'output_batch_axes'"),
])
def test_tampered_graph_metadata_is_refused_at_load(tmp_path, artifacts, key, value, match):
    """Metadata the runtime and reports read back is checked once, when the artifact is loaded."""
    path = _tamper(artifacts["spike-numpy"], str(tmp_path / "t.ircp"), _edit_meta(key, value))
    with pytest.raises(irc.IRCError, match=match) as e:
        irc.load_program(path)
    assert str(tmp_path / "t.ircp") in str(e.value)


def test_damaged_ir_text_in_an_artifact_names_the_member_line(tmp_path, artifacts):
    """A bad line of the artifact's graph.ir is named as such (not as a line of the .ircp zip)."""
    path = _tamper(artifacts["numpy"], str(tmp_path / "t.ircp"), _edit_meta("source_format", '"a\x01b"'))
    with pytest.raises(irc.IRCError, match=r"t\.ircp: graph\.ir line \d+: bad quoted string"):
        irc.load_program(path)
