"""Train the two MNIST networks of benchmarks/snn_mnist.py (torch==2.13.0, CPU, seeded, a few epochs).

    /path/to/python-with-torch benchmarks/snn_train_mnist.py [--epochs 2]

* lenet5: Conv(6,5x5,pad 2)-ReLU-AvgPool2 - Conv(16,5x5)-ReLU-AvgPool2 - Dense 120-ReLU - 84-ReLU - 10;
* lenet_bn: Conv(6,5x5,pad 2)-BN-ReLU-MaxPool2 - Conv(16,5x5)-BN-ReLU-MaxPool2 - Dense 120-BN-ReLU - 84-ReLU
  - 10 - Softmax.
Adam (lr 1e-3), batch 128, the 50k training split of mnist.pkl.gz (see snn_mnist.fetch_mnist), seed 0.
Writes lenet5.onnx and lenet_bn.onnx to the benchmark cache (snn_mnist.CACHE).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snn_mnist import CACHE, fetch_mnist  # noqa: E402


def lenet5() -> "nn.Module":
    import torch.nn as nn
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                         nn.ReLU(), nn.Linear(84, 10))


def lenet_bn() -> "nn.Module":
    import torch.nn as nn
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.BatchNorm1d(120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10), nn.Softmax(dim=1))


def train(model: "nn.Module", x: np.ndarray, y: np.ndarray, epochs: int, softmax_out: bool) -> "nn.Module":
    import torch
    import torch.nn as nn
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 128):
            idx = perm[i:i + 128]
            out = model(xt[idx])
            loss = nn.functional.nll_loss(torch.log(out + 1e-9), yt[idx]) if softmax_out else \
                nn.functional.cross_entropy(out, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    import torch  # after argparse: --help works without the benchmark extras
    torch.set_num_threads(2)
    (xtr, ytr), _, (xte, yte) = fetch_mnist()
    os.makedirs(CACHE, exist_ok=True)
    for name, make, soft in (("lenet5", lenet5, False), ("lenet_bn", lenet_bn, True)):
        torch.manual_seed(0)
        model = train(make(), xtr, ytr, args.epochs, soft)
        with torch.no_grad():
            acc = (model(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean()
        print(f"{name}: test accuracy {100 * acc:.2f}%", flush=True)
        torch.onnx.export(model, torch.from_numpy(xtr[:1]), os.path.join(CACHE, name + ".onnx"), input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, dynamo=False)
        torch.save(model, os.path.join(CACHE, name + ".pt"))


if __name__ == "__main__":
    main()
