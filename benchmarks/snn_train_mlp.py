"""Train the tabular MLP of the spiking benchmarks: scikit-learn's breast-cancer features, standardised.

    /path/to/python-with-torch benchmarks/snn_train_mlp.py     (torch==2.13.0, scikit-learn, onnx)

569 samples, 30 features, split 75/25 stratified (random_state=0), standardised with the training
split's mean and deviation.  A 30-64-32-2 ReLU MLP, Adam, 300 full-batch epochs, seed 0 (seconds on a CPU).
Writes samples/tabular/breast_mlp.onnx and breast.npz (x_cal = the training split, x/y = the test split).
"""
import argparse
import os

import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "samples", "tabular")


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    import torch  # after argparse: --help works without the benchmark extras
    import torch.nn as nn
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    torch.manual_seed(0)
    x, y = load_breast_cancer(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    sc = StandardScaler().fit(xtr)
    xtr, xte = sc.transform(xtr).astype(np.float32), sc.transform(xte).astype(np.float32)
    model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), 1e-2, weight_decay=1e-4)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr).long()
    for _ in range(300):
        opt.zero_grad()
        nn.functional.cross_entropy(model(xt), yt).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(torch.from_numpy(xte)).argmax(1).numpy() == yte).mean()
    print(f"test accuracy {100 * acc:.2f}% on {len(yte)} samples")
    os.makedirs(OUT, exist_ok=True)
    torch.onnx.export(model, xt[:1], os.path.join(OUT, "breast_mlp.onnx"), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, dynamo=False)
    np.savez(os.path.join(OUT, "breast.npz"), x_cal=xtr, x=xte, y=yte.astype(np.int64))


if __name__ == "__main__":
    main()
