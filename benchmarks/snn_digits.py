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

With torch and SpikingJelly 2.0 importable (run it with the peers' python; ``--no-spikingjelly`` skips them)
the same networks, rebuilt in torch from the same IR (benchmarks/snn_spikingjelly.py), are converted by
SpikingJelly's ``RateCodingRecipe(mode="99.9%", channel_wise=True, half_threshold=True)`` and
``LocalThresholdBalancingRecipe`` on the same calibration inputs and read out at the same T, in the same run.
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(1, HERE)

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
    ap.add_argument("--timesteps", default="2,4,8,16,32")
    ap.add_argument("--no-spikingjelly", action="store_true")
    ap.add_argument("--option", "-O", action="append", default=[], help="extra target option KEY=VALUE")
    args = ap.parse_args()
    extra = {}
    for item in args.option:
        k, _, v = item.partition("=")
        extra[k] = float(v) if v.replace(".", "", 1).isdigit() else v
    steps = [int(s) for s in args.timesteps.split(",")]
    for name in args.networks.split(","):
        path, cal, x, y = dataset(name)
        analog = 100 * float((irc.compile(path).run(x).argmax(1) == y).mean())
        sj = {} if args.no_spikingjelly else spikingjelly_rows(path, cal, x, y, steps)
        print(f"\n{name}: analog {analog:.2f}% on {len(y)} test samples; {args.encoding} input")
        print(f"{'T':>4s} | {'fitted':>7s} {'vs ana':>7s} {'SOP/MAC':>7s} {'fit s':>5s} | "
              f"{'99.9%':>7s} {'vs ana':>7s} {'SOP/MAC':>7s} | {'SJ 99.9%':>8s} {'vs ana':>6s} | "
              f"{'SJ LTB':>7s} {'vs ana':>6s}")
        for t in steps:
            fa, fs, fc = run(path, cal, x, y, t, args.encoding, **extra)
            pa, ps, _ = run(path, cal, x, y, t, args.encoding, threshold="percentile", **extra)
            r, l = sj.get("rate", {}).get(t, float("nan")), sj.get("ltb", {}).get(t, float("nan"))
            print(f"{t:4d} | {fa:6.2f}% {fa - analog:+6.2f} {fs['sops_per_mac']:7.3f} {fc:5.1f} | "
                  f"{pa:6.2f}% {pa - analog:+6.2f} {ps['sops_per_mac']:7.3f} | {r:7.2f}% {r - analog:+6.2f} | "
                  f"{l:6.2f}% {l - analog:+6.2f}", flush=True)


def spikingjelly_rows(path, cal, x, y, steps) -> dict:
    """{recipe: {T: accuracy}} of SpikingJelly on the same network, or {} (with a line why) without it."""
    try:
        from snn_spikingjelly import check_model, spikingjelly_accs, torch_model

        graph = irc.load(path)
        model = torch_model(graph)
        check_model(model, graph, x)
    except ImportError as e:
        print(f"(SpikingJelly columns skipped: {e})")
        return {}
    rows = {}
    for recipe in ("rate", "ltb"):
        try:
            rows[recipe] = spikingjelly_accs(model, cal, x, y, steps, recipe)
        except Exception as e:  # report, do not hide
            print(f"SpikingJelly {recipe} failed: {type(e).__name__}: {e}")
    return rows


if __name__ == "__main__":
    main()
