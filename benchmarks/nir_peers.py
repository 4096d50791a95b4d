"""irc spike-llvm against snnTorch and Norse on the same NIR graph and inputs, side by side.

    pip install torch==2.13.0 "irc-compiler[nir-peers]" && python benchmarks/nir_peers.py [--repeats 5]

Each library builds a spiking CNN on 28x28 inputs and exports it to NIR with
its own exporter; irc reads that file and compiles it for spike-llvm.  The
library's time is its own clock-driven simulation of the network it built
(T steps of the torch module, under no_grad; the faster of 1 thread and all threads, since torch's
thread pool can lose badly on a shared machine);
irc's is ``prog.run`` on the compiled program (event-driven, all cores).  Both
run the same inputs for T=64 steps at batch 1 and batch 256; the output spike
counts are checked equal before anything is timed (the weights and inputs are short binary fractions,
so every synaptic sum is exact in float32 and the spikes must agree bit for bit).  Times are medians of
interleaved repeats in one process.

* snnTorch: Conv2d(1,16,5) + Leaky, AvgPool2d(2), Conv2d(16,32,5) + Leaky, AvgPool2d(2), Flatten,
  Linear(512,10) + Leaky (beta 0.875, reset to zero, per-neuron beta/threshold so that its export is typed)
* Norse: Conv2d(1,16,5) + IAF, Conv2d(16,32,4,stride 2) + IAF, Conv2d(32,32,3,stride 2) + IAF,
  Conv2d(32,10,4) + IAF (Norse's exporter writes no pooling or Flatten; the graph is read in memory
  because Norse leaves Conv2d.input_shape unset, which nir.write cannot store)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import irc  # noqa: E402

T = 64


def dyadic_weights(torch, net, scale: float) -> None:
    """Weights and biases rounded to multiples of 1/64 (exact sums in every tool's order)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.weight.copy_(torch.round(m.weight * scale * 64) / 64)
                m.bias.copy_(torch.round(m.bias * 64) / 64)


def snntorch_case(torch, rng):
    import nir
    import snntorch as snn
    import snntorch.utils
    from snntorch.export_nir import export_to_nir

    def leaky(shape, beta):
        return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.full(shape, 0.5), init_hidden=True,
                         reset_mechanism="zero", reset_delay=False)

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 5), leaky((16, 24, 24), 0.875), torch.nn.AvgPool2d(2),
                              torch.nn.Conv2d(16, 32, 5), leaky((32, 8, 8), 0.875), torch.nn.AvgPool2d(2),
                              torch.nn.Flatten(), torch.nn.Linear(512, 10), leaky((10,), 0.875))
    dyadic_weights(torch, net[0], 2)
    dyadic_weights(torch, net[3], 3)
    dyadic_weights(torch, net[7], 4)
    path = os.path.join(tempfile.mkdtemp(), "snntorch.nir")
    nir.write(path, export_to_nir(net, torch.zeros(1, 1, 28, 28), ignore_dims=[0]))

    @torch.no_grad()
    def simulate(x):
        snntorch.utils.reset(net)
        return sum(net(x) for _ in range(T))

    return irc.load(path), simulate


def norse_case(torch, rng):
    import norse.torch as norse

    from irc.frontends.nir_import import from_nir

    def iaf(shape):
        return norse.IAFCell(norse.IAFParameters(v_th=torch.full(shape, 0.5)))

    torch.manual_seed(1)
    net = norse.SequentialState(torch.nn.Conv2d(1, 16, 5), iaf((16, 24, 24)), torch.nn.Conv2d(16, 32, 4, stride=2),
                                iaf((32, 11, 11)), torch.nn.Conv2d(32, 32, 3, stride=2), iaf((32, 5, 5)),
                                torch.nn.Conv2d(32, 10, 5), iaf((10, 1, 1)))
    dyadic_weights(torch, net, 2)

    @torch.no_grad()
    def simulate(x):
        state, total = None, 0
        for _ in range(T):
            out, state = net(x, state)
            total = total + out
        return total

    return from_nir(norse.to_nir(net, torch.zeros(1, 1, 28, 28))), simulate


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", default="1,256")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("needs torch (pip install torch==2.13.0) with snntorch and norse")
        return 1
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    batches = [int(b) for b in args.batches.split(",")]
    print(f"T={T}; torch {torch.__version__} (1 or {threads} threads, the faster); irc spike-llvm on "
          f"{os.cpu_count()} cores; medians of {args.repeats} interleaved repeats\n")
    print(f"{'library':9s} {'batch':>5s} {'library ms':>11s} {'irc ms':>9s} {'speed-up':>9s} {'spikes/sample':>14s}")
    for name, case in (("snnTorch", snntorch_case), ("Norse", norse_case)):
        graph, simulate = case(torch, rng)
        prog = irc.compile(graph, target="spike-llvm", timesteps=T)
        for batch in batches:
            x = ((rng.random((batch, 1, 28, 28)) < 0.3) * rng.integers(0, 17, (batch, 1, 28, 28)) / 16).astype(
                np.float32)
            xt = torch.from_numpy(x)
            theirs = simulate(xt).numpy().reshape(batch, -1)
            ours = prog.run(x).reshape(batch, -1)
            if not np.array_equal(theirs, ours):
                bad = int((theirs != ours).any(axis=1).sum())
                print(f"{name}: output spike counts differ on {bad}/{batch} samples; not timing")
                return 1
            spikes = prog.stats["spikes"] / batch
            times: dict[str, list[float]] = {"lib1": [], "libN": [], "irc": []}
            for _ in range(args.repeats):
                for key in times:
                    if key != "irc":
                        torch.set_num_threads(1 if key == "lib1" else threads)
                    t = time.perf_counter()
                    simulate(xt) if key != "irc" else prog.run(x)
                    times[key].append(time.perf_counter() - t)
            torch.set_num_threads(threads)
            med = {k: statistics.median(v) for k, v in times.items()}
            lib_key = min(("lib1", "libN"), key=med.get)
            lt, it = med[lib_key], med["irc"]
            used = 1 if lib_key == "lib1" else threads
            print(f"{name:9s} {batch:5d} {lt * 1e3:11.1f} {it * 1e3:9.1f} {lt / it:8.1f}x {spikes:14.0f}"
                  f"   (torch on {used} thread{'s' if used > 1 else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
