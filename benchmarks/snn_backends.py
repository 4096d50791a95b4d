"""spike-llvm against spike-numpy and a plain PyTorch clock-driven simulation, in one process.

    pip install torch==2.13.0 && python benchmarks/snn_backends.py [--repeats 5]

1. The machine's own limit: a scatter-add probe (random events, each adding a
   fixed fan-out of float weights into membranes), generated with llvmlite here;
   spike-llvm's synaptic ops per second on one core as a fraction of it.
2. Cost follows events: the digits network at falling activity (inputs scaled
   down, thresholds raised); synaptic events against seconds for each backend.
3. Batch 1, T=64: time per sample.
4. Early decision on: mean timesteps and time per sample.
All times are medians of repeated runs.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import irc  # noqa: E402
from irc.backends.spike_llvm import SpikeLLVMProgram  # noqa: E402
from irc.backends.spike_numpy import SpikeNumpyProgram  # noqa: E402

DIGITS = os.path.join(HERE, "..", "samples", "digits")


def median_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# ------------------------------------------------------------------- probe
def probe_rate(fanout: int, membranes: int, events: int, repeats: int) -> float:
    """Synaptic ops per second of a bare scatter-add kernel on one core."""
    import llvmlite.ir as ir

    from irc.backends.llvm.emit import F32, I32, I64, Function, i64
    from irc.backends.llvm.jit import compile_cached

    mod = ir.Module("probe")
    import llvmlite.binding as llvm

    mod.triple = llvm.get_process_triple()
    f = Function(mod, "probe", [F32.as_pointer(), F32.as_pointer(), I32.as_pointer(), I32.as_pointer(), I64],
                 ["v", "w", "src", "dst", "n"])
    b = f.b
    with f.loop(0, f.args["n"], "e") as e:
        s = b.sext(f.load(f.args["src"], e), I64)
        d = b.sext(f.load(f.args["dst"], e), I64)
        wbase = b.mul(s, i64(fanout))
        with f.loop(0, fanout, "m") as m:
            p = f.at(f.args["v"], b.add(d, m))
            b.store(b.fadd(b.load(p), f.load(f.args["w"], b.add(wbase, m))), p)
    f.finish()
    compiled = compile_cached(str(mod))
    fn = compiled.function("probe", None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                           ctypes.c_int64)
    rng = np.random.default_rng(0)
    sources = 1024
    v = np.zeros(membranes + fanout, np.float32)
    w = rng.standard_normal(sources * fanout).astype(np.float32)
    src = rng.integers(0, sources, events).astype(np.int32)
    dst = (rng.integers(0, membranes // fanout, events) * fanout).astype(np.int32)
    dt = median_time(lambda: fn(v.ctypes.data, w.ctypes.data, src.ctypes.data, dst.ctypes.data, events), repeats)
    return events * fanout / dt


# ----------------------------------------------------------------- helpers
def with_thresholds(graph, factor: float):
    g = graph.copy()
    for n in g.find("IF"):
        g.set_param(n.inputs[1], g.param(n.inputs[1]) * np.float32(factor))
    return g


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--gpu", action="store_true", help="also: spike-cuda against PyTorch on the same GPU")
    args = ap.parse_args()
    try:
        import torch

        from torch_snn import TorchSNN
        torch.set_num_threads(os.cpu_count() or 1)
    except ImportError:
        TorchSNN = None
        print("(PyTorch not installed: its column is skipped; pip install torch==2.13.0)")

    test = np.load(os.path.join(DIGITS, "test.npz"))
    cal = np.load(os.path.join(DIGITS, "calibration.npz"))["x"]
    x, y = test["x"], test["y"]
    path = os.path.join(DIGITS, "digits_cnn.onnx")
    base = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=64)
    graph = base.graph
    opts = dict(base.options)
    cores = os.cpu_count() or 1
    print(f"digits_cnn spiking network, {cores} cores, T=64, constant-current input\n")

    # 1. probe -----------------------------------------------------------
    conv = [n for n in graph.find("Conv") if n.inputs[0].type.domain.value == "spike"][0]
    fan = int(np.prod(graph.param(conv.inputs[1]).shape[2:])) * graph.param(conv.inputs[1]).shape[0]
    m = conv.output.type.static_size()
    rate_probe = probe_rate(fan // 9, m, 2_000_000, max(args.repeats, 9))
    one = SpikeLLVMProgram(graph, dict(opts, threads=1))
    xs = x[:args.samples]
    t1 = median_time(lambda: one.run(xs), max(args.repeats, 9))
    rate_llvm = one.stats["synaptic_ops"] / t1
    print("1. synaptic ops per second on one core")
    print(f"   scatter-add probe (fan-out {fan // 9} per tap): {rate_probe / 1e9:.2f} G/s")
    print(f"   spike-llvm on the digits network:             {rate_llvm / 1e9:.2f} G/s  "
          f"= {rate_llvm / rate_probe:.2f} of the probe\n")

    # 2. activity sweep ---------------------------------------------------
    print("2. cost follows events (batch of", args.samples, "samples, T=64)")
    print(f"   {'thresholds':>10s} {'input':>6s} {'syn. events':>13s} {'spike-llvm s':>13s} {'spike-numpy s':>14s}"
          f" {'pytorch s':>10s} {'numpy/llvm':>11s} {'torch/llvm':>11s}")
    lowest = None
    for factor, scale in [(1, 1.0), (2, 0.7), (4, 0.5), (8, 0.35), (16, 0.25)]:
        g = with_thresholds(graph, factor)
        xa = (xs * scale).astype(np.float32)
        llvm = SpikeLLVMProgram(g, opts)
        ref = SpikeNumpyProgram(g, opts)
        tl = median_time(lambda: llvm.run(xa), args.repeats)
        events = llvm.stats["synaptic_ops"]
        tn = median_time(lambda: ref.run(xa), max(1, args.repeats // 2))
        tt = median_time(lambda: TorchSNN(g).run(xa, 64), max(1, args.repeats // 2)) if TorchSNN else float("nan")
        print(f"   {factor:>9d}x {scale:6.2f} {events:13,d} {tl:13.4f} {tn:14.4f} {tt:10.4f} {tn / tl:11.1f} "
              f"{tt / tl:11.1f}")
        lowest = (tl, tn, tt)

    # 3. batch 1 -----------------------------------------------------------
    print("\n3. batch 1, T=64: time per sample (median over samples)")
    llvm1 = SpikeLLVMProgram(graph, dict(opts, threads=1))
    ref = SpikeNumpyProgram(graph, opts)
    sample = x[:1]
    tl = median_time(lambda: llvm1.run(sample), args.repeats * 4)
    tn = median_time(lambda: ref.run(sample), args.repeats)
    tt = median_time(lambda: TorchSNN(graph).run(sample, 64), args.repeats) if TorchSNN else float("nan")
    print(f"   spike-llvm {tl * 1e3:.3f} ms   spike-numpy {tn * 1e3:.3f} ms ({tn / tl:.1f}x)   "
          f"pytorch {tt * 1e3:.3f} ms ({tt / tl:.1f}x)")

    # 4. early decision ----------------------------------------------------
    print("\n4. early decision (terminate_delta=2), all test digits")
    full = SpikeLLVMProgram(graph, opts)
    early_graph = graph.copy()
    early_graph.find("Readout")[0].attrs["terminate_delta"] = 2.0
    early = SpikeLLVMProgram(early_graph, opts)
    tf = median_time(lambda: full.run(x), args.repeats)
    acc_f = 100 * float((full.run(x).argmax(1) == y).mean())
    te = median_time(lambda: early.run(x), args.repeats)
    acc_e = 100 * float((early.run(x).argmax(1) == y).mean())
    print(f"   off: mean T {full.stats['mean_timesteps']:.1f}, {tf / len(x) * 1e3:.3f} ms per sample, "
          f"accuracy {acc_f:.2f}%")
    print(f"   on:  mean T {early.stats['mean_timesteps']:.1f}, {te / len(x) * 1e3:.3f} ms per sample, "
          f"accuracy {acc_e:.2f}%")
    print(f"\ncold compile of the digits network: {SpikeLLVMProgram(graph, dict(opts, cache=False)).compile_seconds:.2f} s;"
          f" cached: {SpikeLLVMProgram(graph, opts).compile_seconds:.3f} s")
    if args.gpu:
        gpu_section(graph, opts, x, args.repeats, TorchSNN)


def cifar_resnet_graph(batch: int):
    """A CIFAR-size residual network (random weights; throughput only), converted to spikes."""
    import tempfile

    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self, i, o, s):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o)
            self.c2, self.b2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
            self.skip = nn.Sequential(nn.Conv2d(i, o, 1, s, bias=False), nn.BatchNorm2d(o)) if s != 1 or i != o \
                else nn.Identity()

        def forward(self, x):
            return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.skip(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
            self.layers = nn.Sequential(Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2))
            self.fc = nn.Linear(128, 10)

        def forward(self, x):
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))

    torch.manual_seed(0)
    net = Net().eval()
    path = os.path.join(tempfile.mkdtemp(), "cifar_resnet.onnx")
    torch.onnx.export(net, (torch.randn(2, 3, 32, 32),), path, input_names=["x"], output_names=["y"], dynamo=False,
                      opset_version=13, dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    cal = np.random.default_rng(0).uniform(0, 1, (64, 3, 32, 32)).astype(np.float32)
    x = np.random.default_rng(1).uniform(0, 1, (batch, 3, 32, 32)).astype(np.float32)
    return irc.compile(path, target="spike-numpy", calibration=cal, timesteps=64).graph, x


def gpu_section(graph, opts, x, repeats: int, TorchSNN) -> None:
    """spike-cuda throughput (images x timesteps per second) against PyTorch on the same GPU and spike-llvm."""
    from irc.backends.cuda_backend import SpikeCudaProgram

    print("\n5. GPU: throughput in images x timesteps per second (T=64, batch 1024)")
    print(f"   {'network':14s} {'spike-cuda':>12s} {'pytorch gpu':>12s} {'spike-llvm cpu':>15s} {'cuda/torch':>11s}")
    batch = 1024
    digits_x = np.concatenate([x] * (batch // len(x) + 1))[:batch]
    cifar_graph, cifar_x = cifar_resnet_graph(batch)
    for name, g, xs in (("digits", graph, digits_x), ("cifar resnet", cifar_graph, cifar_x)):
        cuda = SpikeCudaProgram(g, dict(opts, batch_size=batch))
        ex = cuda.executor()

        def run_cuda():
            cuda.run(xs)
            ex.synchronize()

        tc = median_time(run_cuda, repeats)
        import torch

        tsnn = TorchSNN(g, "cuda")

        def run_torch():
            tsnn.run(xs, 64)
            torch.cuda.synchronize()

        tt = median_time(run_torch, repeats)
        llvm = SpikeLLVMProgram(g, opts)
        tl = median_time(lambda: llvm.run(xs[:128]), 1) * batch / 128
        work = batch * 64
        print(f"   {name:14s} {work / tc:12.3g} {work / tt:12.3g} {work / tl:15.3g} {tt / tc:11.1f}")


if __name__ == "__main__":
    main()
