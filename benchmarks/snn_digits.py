"""Accuracy of the converted spiking digits networks against timesteps, with SOPs/MACs.

    python benchmarks/snn_digits.py [--encoding current] [--networks digits_cnn,...]

Default options (per-channel 99.9th-percentile thresholds, membrane starting at
half the threshold, corrective negative events, gated max-pool, potential
readout), constant-current input.  One simulation per network to T=128,
read out at every T.  For reference, the strongest converter measured
elsewhere (SpikingJelly 2.0 ann2snn, best settings) loses 1.78 pp at T=2,
0.44 pp at T=4 and nothing at T=8 on a small digits CNN, and 0.67 pp at T=4
on a BatchNorm + MaxPool digits CNN.
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import irc  # noqa: E402

DIGITS = os.path.join(HERE, "..", "samples", "digits")
TIMESTEPS = [2, 4, 8, 16, 32, 64, 128]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--encoding", default="current", choices=["current", "poisson", "periodic"])
    ap.add_argument("--networks", default="digits_cnn,digits_bn_maxpool,digits_resnet,digits_inception")
    ap.add_argument("--option", "-O", action="append", default=[], help="extra target option KEY=VALUE")
    args = ap.parse_args()
    test = np.load(os.path.join(DIGITS, "test.npz"))
    cal = np.load(os.path.join(DIGITS, "calibration.npz"))["x"]
    x, y = test["x"], test["y"]
    extra = {}
    for item in args.option:
        k, _, v = item.partition("=")
        extra[k] = float(v) if v.replace(".", "", 1).isdigit() else v
    for name in args.networks.split(","):
        path = os.path.join(DIGITS, name + ".onnx")
        analog = 100 * float((irc.compile(path).run(x).argmax(1) == y).mean())
        t = time.perf_counter()
        prog = irc.compile(path, target="spike-numpy", calibration=cal, encoding=args.encoding,
                           timesteps=max(TIMESTEPS), **extra)
        points = prog.sweep(x, timesteps=TIMESTEPS)
        dt = time.perf_counter() - t
        print(f"\n{name}: analog {analog:.2f}% on {len(y)} test digits; {args.encoding} input; {dt:.1f} s")
        print(f"{'T':>5s} {'spiking':>8s} {'vs analog':>10s} {'SOPs/MAC':>9s} {'energy SNN/ANN':>15s} {'spikes/sample':>14s}")
        for p in points:
            acc = 100 * float((p.scores.argmax(1) == y).mean())
            s = p.stats
            print(f"{p.timesteps:5d} {acc:7.2f}% {acc - analog:+8.2f}pp {s['sops_per_mac']:9.3f} "
                  f"{s['energy_pj']['snn'] / s['energy_pj']['ann']:15.3f} {s['spikes'] / len(y):14.1f}")


if __name__ == "__main__":
    main()
