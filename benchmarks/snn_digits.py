"""Accuracy of the converted spiking networks against timesteps, with SOPs/MACs: fitted thresholds vs the rule.

    python benchmarks/snn_digits.py [--encoding current] [--networks digits_cnn,digits_bn_maxpool,breast_mlp]
                                    [--timesteps 2,4,8,16] [-O KEY=VALUE]

For every T the network is compiled for that T twice: with the default options (thresholds fitted for T,
layer by layer, then bias correction) and with ``threshold="percentile"`` (the per-channel 99.9th-percentile
rule, the default before issue 15).  Both: membrane starting at half the threshold, corrective negative
events, gated max-pool, potential readout, constant-current input.  Networks: the digits CNNs in
samples/digits (trained by samples/digits/train.py) and an MLP on scikit-learn's standardised breast-cancer
features (samples/tabular, trained by benchmarks/snn_train_mlp.py).  Calibration uses at most 256
calibration inputs (``fit_samples``); the compile time is printed.
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import irc  # noqa: E402

SAMPLES = os.path.join(HERE, "..", "samples")


def dataset(name: str):
    """(model path, calibration x, test x, test y)."""
    if name == "breast_mlp":
        d = np.load(os.path.join(SAMPLES, "tabular", "breast.npz"))
        return os.path.join(SAMPLES, "tabular", "breast_mlp.onnx"), d["x_cal"], d["x"], d["y"]
    test = np.load(os.path.join(SAMPLES, "digits", "test.npz"))
    cal = np.load(os.path.join(SAMPLES, "digits", "calibration.npz"))["x"]
    return os.path.join(SAMPLES, "digits", name + ".onnx"), cal, test["x"], test["y"]


def run(path, cal, x, y, t, encoding, **opts):
    start = time.perf_counter()
    prog = irc.compile(path, target="spike-numpy", calibration=cal, encoding=encoding, timesteps=t, **opts)
    compile_s = time.perf_counter() - start
    acc = 100 * float((prog.run(x).argmax(1) == y).mean())
    return acc, prog.stats, compile_s


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoding", default="current", choices=["current", "poisson", "periodic"])
    ap.add_argument("--networks", default="digits_cnn,digits_bn_maxpool,breast_mlp")
    ap.add_argument("--timesteps", default="2,4,8,16")
    ap.add_argument("--option", "-O", action="append", default=[], help="extra target option KEY=VALUE")
    args = ap.parse_args()
    extra = {}
    for item in args.option:
        k, _, v = item.partition("=")
        extra[k] = float(v) if v.replace(".", "", 1).isdigit() else v
    for name in args.networks.split(","):
        path, cal, x, y = dataset(name)
        analog = 100 * float((irc.compile(path).run(x).argmax(1) == y).mean())
        print(f"\n{name}: analog {analog:.2f}% on {len(y)} test samples; {args.encoding} input")
        print(f"{'T':>4s} | {'fitted':>7s} {'vs ana':>7s} {'SOP/MAC':>7s} {'fit s':>5s} | "
              f"{'99.9%':>7s} {'vs ana':>7s} {'SOP/MAC':>7s}")
        for t in [int(s) for s in args.timesteps.split(",")]:
            fa, fs, fc = run(path, cal, x, y, t, args.encoding, **extra)
            pa, ps, _ = run(path, cal, x, y, t, args.encoding, threshold="percentile", **extra)
            print(f"{t:4d} | {fa:6.2f}% {fa - analog:+6.2f} {fs['sops_per_mac']:7.3f} {fc:5.1f} | "
                  f"{pa:6.2f}% {pa - analog:+6.2f} {ps['sops_per_mac']:7.3f}", flush=True)


if __name__ == "__main__":
    main()
