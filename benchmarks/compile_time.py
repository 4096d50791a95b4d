"""Compile time against graph size: a chain of Dense -> BatchNorm -> ReLU blocks.

    python benchmarks/compile_time.py [--sizes 600,1200,2400] [--target numpy] [--profile]

Every pass and the code generator should cost O(nodes) (rewrites touch only
a value's users), so the time per node stays flat as the chain grows.  Prints
the time per size and the ratio largest / smallest against the ratio of their
node counts (linear growth: the two ratios are close).
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import irc  # noqa: E402
from irc.types import TensorType  # noqa: E402


def chain(nodes: int, width: int = 8, seed: int = 0) -> irc.Graph:
    """Dense -> BatchNorm -> Relu repeated until the graph has ``nodes`` nodes."""
    rng = np.random.default_rng(seed)
    g = irc.Graph("chain")
    x = g.add_input("x", TensorType(("N", width)))
    for i in range(nodes // 3):
        w = g.add_param(f"w{i}", rng.standard_normal((width, width)).astype(np.float32) / np.sqrt(width))
        b = g.add_param(f"b{i}", np.zeros(width, np.float32))
        x = g.add_node("Dense", [x, w, b], name=f"dense{i}").output
        bn = [g.add_param(f"bn{i}.{k}", v) for k, v in (("scale", np.ones(width, np.float32)),
                                                       ("bias", np.zeros(width, np.float32)),
                                                       ("mean", np.zeros(width, np.float32)),
                                                       ("var", np.ones(width, np.float32)))]
        x = g.add_node("BatchNorm", [x, *bn], name=f"bn{i}").output
        x = g.add_node("Relu", [x], name=f"relu{i}").output
    g.outputs.append(x)
    return g


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="600,1200,2400")
    ap.add_argument("--target", default="numpy")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="cProfile the largest size")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    times = {}
    for n in sizes:
        best = float("inf")
        for _ in range(args.repeats):
            g = chain(n)
            start = time.perf_counter()
            irc.compile(g, target=args.target, verify=False)
            best = min(best, time.perf_counter() - start)
        times[n] = best
        print(f"{n:6d} nodes: {best:7.3f} s  ({best / n * 1e6:7.1f} us per node)")
    lo, hi = sizes[0], sizes[-1]
    print(f"time ratio {hi}/{lo}: {times[hi] / times[lo]:.2f} (node ratio {hi / lo:.2f}; linear growth keeps "
          f"these close, quadratic would give {(hi / lo) ** 2:.0f})")
    if args.profile:
        import cProfile
        import pstats

        g = chain(hi)
        prof = cProfile.Profile()
        prof.runcall(irc.compile, g, target=args.target, verify=False)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
