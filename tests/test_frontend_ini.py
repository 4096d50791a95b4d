"""N2D2 INI networks: mappings, weights, N2D2's own model files, the spiking sample."""
import glob
import os
import textwrap
import warnings

import numpy as np
import pytest

import irc
from irc.frontends.n2d2 import weights as n2d2_weights
from conftest import FIXTURES, SAMPLES, ort_run

CORPUS = os.environ.get("IRC_N2D2_CORPUS", os.path.join(FIXTURES, "n2d2_corpus"))
DIGITS = os.path.join(SAMPLES, "digits")

LENET_TABLE = """\
1 0 0 0 1 1 1 0 0 1 1 1 1 0 1 1 \\
1 1 0 0 0 1 1 1 0 0 1 1 1 1 0 1 \\
1 1 1 0 0 0 1 1 1 0 0 1 0 1 1 1 \\
0 1 1 1 0 0 1 1 1 1 0 0 1 0 1 1 \\
0 0 1 1 1 0 0 1 1 1 1 0 1 1 0 1 \\
0 0 0 1 1 1 0 0 1 1 1 1 0 1 1 1"""


def write_ini(tmp_path, text: str, name: str = "net.ini") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_lenet_mapping_table_gives_the_masked_convolution_n2d2_computes(tmp_path):
    ini = write_ini(tmp_path, f"""
        [sp]
        SizeX=1
        SizeY=1
        NbChannels=6
        [conv2]
        Input=sp
        Type=Conv
        KernelDims=1 1
        NbOutputs=16
        ActivationFunction=Linear
        ConfigSection=nobias
        Mapping(env)=\\
        {LENET_TABLE}
        [conv2.Target]
        [nobias]
        NoBias=1
        """)
    folder = tmp_path / "w"
    mask = np.array(LENET_TABLE.replace("\\", "").split(), int).reshape(6, 16).astype(bool)
    n2d2_weights.write_conv(str(folder), "conv2", np.ones((16, 6, 1, 1), np.float32), None, mask)
    g = irc.load(ini, weights=str(folder))
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 6, 1, 1)  # channel c holds c + 1
    y = irc.compile(g).run(x).reshape(16)
    # by hand from the table: output 0 reads channels 0,1,2 -> 1+2+3; output 3 reads 3,4,5 -> 4+5+6;
    # output 5 reads 0,1,5 -> 1+2+6; output 15 reads all six -> 21; output 6 reads 0,1,2,3 -> 10
    assert y[0] == 6 and y[3] == 15 and y[5] == 9 and y[15] == 21 and y[6] == 10
    np.testing.assert_array_equal(y, (mask * np.arange(1, 7)[:, None]).sum(axis=0))
    conv = irc.compile(g).graph.find("Conv")[0]
    assert conv.attrs["group"] == 1 and len(conv.inputs) == 4  # a general mapping stays a mask


def test_channels_per_group_gives_a_depthwise_convolution(tmp_path):
    ini = write_ini(tmp_path, """
        [sp]
        SizeX=5
        SizeY=5
        NbChannels=4
        [dw]
        Input=sp
        Type=Conv
        KernelDims=3 3
        NbOutputs=4
        Padding=1
        Mapping.ChannelsPerGroup=1
        ActivationFunction=Rectifier
        [dw.Target]
        """)
    with pytest.warns(UserWarning, match="fillers"):
        g = irc.load(ini)
    prog = irc.compile(g)
    conv = prog.graph.find("Conv")[0]
    assert conv.attrs["group"] == 4 and len(conv.inputs) == 3
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 5)).astype(np.float32)
    masked = irc.compile(g, target="numpy")
    from irc.interp import run_graph

    np.testing.assert_allclose(prog.run(x), run_graph(g, {"sp": x})[0], rtol=1e-5, atol=1e-6)
    assert masked.run(x).shape == (2, 4, 5, 5)


DIGITS_CNN_INI = """
    ; digits_cnn.onnx described in N2D2's dialect (BatchNorm folded into the convolutions)
    [sp]
    SizeX=8
    SizeY=8
    [conv1]
    Input=sp
    Type=Conv
    KernelDims=3 3
    Padding=1
    NbOutputs=16
    ActivationFunction=Rectifier
    [conv2]
    Input=conv1
    Type=Conv
    KernelSize=3
    Padding=1
    NbOutputs=32
    ActivationFunction=Rectifier
    [pool1]
    Input=conv2
    Type=Pool
    PoolDims=2 2
    Stride=2
    NbOutputs=[conv2]NbOutputs
    Pooling=Average
    Mapping.Size=1
    [conv3]
    Input=pool1
    Type=Conv
    KernelDims=3 3
    Padding=1
    NbOutputs=32
    ActivationFunction=Rectifier
    [pool2]
    Input=conv3
    Type=Pool
    PoolSize=2
    Stride=2
    NbOutputs=32
    Pooling=Average
    Mapping.ChannelsPerGroup=1
    [fc1]
    Input=pool2
    Type=Fc
    NbOutputs=64
    ActivationFunction=Rectifier
    [fc2]
    Input=fc1
    Type=Fc
    NbOutputs=10
    ActivationFunction=Linear
    [fc2.Target]
    """


def test_weights_round_trip_matches_the_source_model(tmp_path):
    onnx_path = os.path.join(DIGITS, "digits_cnn.onnx")
    lowered = irc.compile(onnx_path, target="numpy").graph  # BatchNorm folded, activations fused
    folder = str(tmp_path / "weights")
    names = iter(["conv1", "conv2", "conv3", "fc1", "fc2"])
    for node in lowered.nodes:
        if node.op in ("Conv", "Dense"):
            name = next(names)
            w, b = lowered.param(node.inputs[1]), lowered.param(node.inputs[2])
            if node.op == "Conv":
                n2d2_weights.write_conv(folder, name, w, b, np.ones((w.shape[1], w.shape[0]), bool))
            else:
                n2d2_weights.write_fc(folder, name, w, b)
    ini = write_ini(tmp_path, DIGITS_CNN_INI)
    g = irc.load(ini, weights=folder)
    x = np.load(os.path.join(DIGITS, "test.npz"))["x"][:50]
    np.testing.assert_allclose(irc.compile(g).run(x), ort_run(onnx_path, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_missing_weights_file_is_named(tmp_path):
    ini = write_ini(tmp_path, DIGITS_CNN_INI)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(irc.IRCError, match="conv1"):
        irc.load(ini, weights=str(tmp_path / "empty"))


def test_unsupported_layer_type_names_the_section(tmp_path):
    ini = write_ini(tmp_path, """
        [sp]
        SizeX=4
        SizeY=4
        [lrn]
        Input=sp
        Type=LRN
        NbOutputs=1
        [lrn.Target]
        """)
    with pytest.raises(irc.UnsupportedError, match=r"\[lrn\] has Type=LRN"):
        irc.load(ini)


SMALL_NET = """
    {glob}
    [sp]
    SizeX=4
    SizeY=4
    {sp}
    [conv]
    Input=sp
    Type=Conv
    KernelSize=3
    NbOutputs=2
    {conv}
    [fc]
    Input=conv
    Type=Fc
    NbOutputs=3
    {fc}
    [fc.Target]
    """


def small_net(tmp_path, glob="", sp="", conv="", fc="") -> str:
    return write_ini(tmp_path, SMALL_NET.format(glob=glob, sp=sp, conv=conv, fc=fc))


@pytest.mark.parametrize("where, key, line", [
    ("glob", "DefaultModle=Frame", 2),
    ("sp", "SizeZ=3", 6),
    ("conv", "KernelDim=3", 12),
])
def test_unknown_key_in_a_strict_section_is_an_error_at_its_line(tmp_path, where, key, line):
    """N2D2 throws 'Unknown property' for the global section, [sp] and Conv layers without an activation."""
    ini = small_net(tmp_path, **{where: key})
    with pytest.raises(irc.IRCError, match=rf"net.ini:{line}: unknown property {key.split('=')[0]!r}"):
        irc.load(ini)


def test_unknown_key_elsewhere_is_a_warning(tmp_path):
    """An Fc, and a Conv with an activation, ignore keys they do not know: N2D2 is silent, irc warns."""
    ini = small_net(tmp_path, conv="ActivationFunction=Rectifier\nKernelDim=3", fc="NbOutput=3")
    with pytest.warns(UserWarning, match=r"net.ini:18: \[fc\] \(Type=Fc\) has a key N2D2 does not read here: "
                                         r"'NbOutput'") as record:
        irc.load(ini)
    assert any("[conv] (Type=Conv) has a key N2D2 does not read here: 'KernelDim'" in str(w.message) for w in record)


def test_keys_n2d2_knows_but_irc_does_not_use_are_accepted(tmp_path):
    ini = small_net(tmp_path, glob="CheckWeightRange=1", sp="BatchSize=24",
                    conv="WeightsFiller=XavierFiller\nWeightsSolver.LearningRate=0.01\nStrideX=1\nMapping.Size=1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message=".*filler.*")   # the network has no weights: fillers warn
        irc.load(ini)


def test_later_layers_read_the_sizes_n2d2_writes_back(tmp_path):
    """[conv]_NbChannels, _ChannelsWidth and _OutputsWidth exist once conv is built (CellGenerator.cpp)."""
    ini = small_net(tmp_path, fc="ActivationFunction=Linear\n[fc2]\nInput=fc\nType=Fc\n"
                                 "NbOutputs=$([conv]_NbChannels + [conv]_ChannelsWidth + [conv]_OutputsWidth )")
    ini_text = open(ini).read().replace("[fc.Target]", "[fc2.Target]")
    open(ini, "w").write(ini_text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = irc.load(ini)
    assert g.outputs[0].type.shape == ("N", 1 + 4 + 2)     # 1 input channel, 4 wide in, 2 wide out


@pytest.mark.parametrize("sp, conv, line, match", [
    ("", "NbOutputs=99999999999", 12, r"NbOutputs=99999999999 is not a size between 1 and 65,536"),
    ("NbChannels=0", "", 6, r"NbChannels=0 is not a size"),
    ("NbChannels=4096", "NbOutputs=4096\nKernelDims=128 128", 12, r"would have 274,877,906,944 weights"),
])
def test_sizes_no_machine_could_hold_are_refused_at_their_line(tmp_path, sp, conv, line, match):
    """(A repeated key: the later line wins, as in N2D2.)"""
    ini = small_net(tmp_path, sp=sp, conv=conv)
    with pytest.raises(irc.IRCError, match=rf"net.ini:{line}: .*{match}"):
        irc.load(ini)


def test_a_huge_mapping_pattern_is_cheap_and_exact(tmp_path):
    """Offsets wrap around the matrix: a trillion iterations connect what a full cycle connects."""
    ini = small_net(tmp_path, sp="NbChannels=3", conv="Mapping.NbIterations=1000000000000\nMapping.StrideY=1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = irc.load(ini)
    conv = g.find("Conv")[0]
    assert len(conv.inputs) < 4 or np.all(g.param(conv.inputs[3]) == 1)   # every pair connected: no mask


# ------------------------------------------------------------------- corpus
def corpus_files():
    return sorted(glob.glob(os.path.join(CORPUS, "**", "*.ini"), recursive=True))


def test_corpus_is_there():
    assert len(corpus_files()) == 54


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: os.path.relpath(p, CORPUS))
def test_corpus_file_loads_and_runs_or_is_refused_with_a_reason(path, tmp_path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            g = irc.load(path)
        except irc.IRCError as e:
            assert str(e).strip(), "an IRCError must say why"
            return
        x = np.random.default_rng(0).uniform(0, 1, g.inputs[0].type.concrete(1)).astype(np.float32)
        y = irc.compile(g, target="numpy").run(x)
    for out in (y if isinstance(y, list) else [y]):
        assert np.all(np.isfinite(out))


def test_corpus_counts():
    """19 of N2D2's 54 model files use only the layer types irc lowers; all of those must load."""
    import warnings

    loaded, refused = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in corpus_files():
            try:
                irc.load(path)
                loaded.append(os.path.relpath(path, CORPUS))
            except irc.IRCError:
                refused.append(os.path.relpath(path, CORPUS))
    print(f"\ncorpus: {len(loaded)} loaded, {len(refused)} refused")
    assert len(loaded) == 19, loaded


# -------------------------------------------------------------- spiking sample
def test_spiking_sample_honours_threshold_bipolar_and_terminate_delta():
    ini = os.path.join(DIGITS, "digits_spike.ini")
    g = irc.load(ini, weights=os.path.join(DIGITS, "digits_spike_weights"))
    test = np.load(os.path.join(DIGITS, "test.npz"))
    x, y = test["x"], test["y"]
    analog = 100 * float((irc.compile(g).run(x).argmax(1) == y).mean())
    prog = irc.compile(g, target="spike-llvm", timesteps=100)
    ifs = prog.graph.find("IF")
    assert len(ifs) == 4
    assert all(float(t) == 1.0 for n in ifs for t in prog.graph.param(n.inputs[1]))  # Threshold=1.0
    assert [n.attrs["negative"] for n in ifs] == ["none", "none", "none", "bipolar"]  # fc2 BipolarThreshold=1
    readout = prog.graph.find("Readout")[0]
    assert readout.attrs["mode"] == "count" and readout.attrs["terminate_delta"] == 4.0
    assert prog.graph.find("Encode")[0].attrs["mode"] == "periodic"  # JitteredPeriodic
    spiking = 100 * float((prog.run(x).argmax(1) == y).mean())
    print(f"\ndigits_spike.ini: analog {analog:.2f}%, spiking {spiking:.2f}% "
          f"(mean {prog.stats['mean_timesteps']:.1f} of 100 steps)")
    assert prog.stats["mean_timesteps"] < 100
    assert spiking >= analog - 3.0
