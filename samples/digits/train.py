"""Train the digits sample networks and export them to ONNX.

    pip install torch==2.13.0 scikit-learn && python samples/digits/train.py

scikit-learn's digits (1797 8x8 images, values 0..16, scaled to [0, 1]) are
split 75/25, stratified (random_state=0): 1347 training images, 450 test
images.  The first 300 training images are the calibration set the spiking
targets use to set thresholds (never the test images).

Three networks, each trained with AdamW (weight decay, cosine schedule, random
one-pixel shifts), exported with a dynamic batch axis:

* digits_cnn: Conv-BN-ReLU x2, AvgPool, Conv-BN-ReLU, AvgPool, Dense-ReLU, Dense;
* digits_bn_maxpool: Conv-BN-ReLU-MaxPool blocks, Dropout, ending in Softmax;
* digits_resnet: a small residual network (BatchNorm, MaxPool, Add);
* digits_inception: parallel branches joined by Concat, a Dense fed by two of them;
* digits_spike: LeNet_Spike.ini in miniature (no biases, LeNet's conv2 mapping table); its weights
  go to digits_spike_weights/ in N2D2's .syntxt layout, normalised for threshold 1, for digits_spike.ini.

    python samples/digits/train.py [name ...]   retrains only the named networks
"""
import sys
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))


class DigitsCNN(nn.Module):
    def __init__(self):
        super().__init__()
        def conv(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU())
        self.features = nn.Sequential(conv(1, 16), conv(16, 32), nn.AvgPool2d(2), conv(32, 32), nn.AvgPool2d(2))
        self.f1, self.f2 = nn.Linear(32 * 2 * 2, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.f2(F.relu(self.f1(torch.flatten(self.features(x), 1))))


class DigitsBNMaxPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(128, 64), nn.BatchNorm1d(64),
                                        nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x):
        return F.softmax(self.classifier(self.features(x)), dim=1)


class Block(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o)
        self.c2, self.b2 = nn.Conv2d(o, o, 3, padding=1, bias=False), nn.BatchNorm2d(o)
        self.skip = nn.Sequential(nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o)) if i != o else nn.Identity()

    def forward(self, x):
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.skip(x))


class DigitsResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.block1, self.block2 = Block(16, 16), Block(16, 32)
        self.fc = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x):
        x = F.max_pool2d(self.block1(self.stem(x)), 2)
        x = F.max_pool2d(self.block2(x), 2)
        return self.fc(torch.flatten(x, 1))


class DigitsInception(nn.Module):
    """Parallel branches joined by Concat; a Dense fed by two branches (a Concat of both)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.b1 = nn.Sequential(nn.Conv2d(16, 8, 1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU())
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(16, 8, 1), nn.ReLU())
        self.mix = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(24, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                                 nn.AvgPool2d(2))
        self.fc = nn.Linear(32 * 2 * 2 + 8, 10)

    def forward(self, x):
        x = self.stem(x)
        b3 = self.b3(x)
        y = self.mix(torch.cat([self.b1(x), b3, self.bp(x)], dim=1))
        side = F.adaptive_avg_pool2d(b3, 1)
        return self.fc(torch.cat([torch.flatten(y, 1), torch.flatten(side, 1)], dim=1))


LENET_MAPPING = np.array([  # LeNet's 6 x 16 table (N2D2 models/LeNet.ini): rows = input channels
    [1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1],
    [1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1],
    [1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1],
    [0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 1, 1],
    [0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0, 1],
    [0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1]], np.float32)


class DigitsLeNetSpike(nn.Module):
    """LeNet_Spike.ini in miniature: no biases, ReLU, max pools, conv2 wired by LeNet's mapping table."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(6, 16, 3, padding=1, bias=False)
        self.fc1 = nn.Linear(16 * 2 * 2, 32, bias=False)
        self.fc2 = nn.Linear(32, 10, bias=False)
        self.register_buffer("mask", torch.from_numpy(LENET_MAPPING.T.copy())[:, :, None, None])

    def forward(self, x, record=None):
        a1 = F.relu(self.conv1(x))
        a2 = F.relu(F.conv2d(F.max_pool2d(a1, 2), self.conv2.weight * self.mask, padding=1))
        a3 = F.relu(self.fc1(torch.flatten(F.max_pool2d(a2, 2), 1)))
        out = self.fc2(a3)
        if record is not None:
            record.extend([a1, a2, a3, out])
        return out


def export_n2d2(model: DigitsLeNetSpike, x_cal: np.ndarray) -> None:
    """Write N2D2 .syntxt weights, normalised for threshold 1 (data-based, as N2D2's normalizeOutputsRange did)."""
    from irc.frontends.n2d2 import weights as n2d2_weights

    acts: list = []
    with torch.no_grad():
        model(torch.from_numpy(x_cal), record=acts)
    scales = [float(np.percentile(a.numpy()[a.numpy() > 0], 99.9)) for a in acts[:3]]
    scales.append(float(np.percentile(np.abs(acts[3].numpy()), 99.9)))
    ws = [model.conv1.weight.detach().numpy(), (model.conv2.weight * model.mask).detach().numpy(),
          model.fc1.weight.detach().numpy(), model.fc2.weight.detach().numpy()]
    folder = os.path.join(HERE, "digits_spike_weights")
    previous = 1.0
    masks = [np.ones((1, 6), bool), LENET_MAPPING.astype(bool)]  # (input channels, outputs) connectivity
    for name, w, lam, i in zip(["conv1", "conv2", "fc1", "fc2"], ws, scales, range(4)):
        w = (w * previous / lam).astype(np.float32)
        if i < 2:
            n2d2_weights.write_conv(folder, name, w, None, masks[i])
        else:
            n2d2_weights.write_fc(folder, name, w, None)
        previous = lam


def data():
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    return train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)


def train(model: nn.Module, x, y, epochs: int, seed: int) -> nn.Module:
    """AdamW with cosine decay; each batch shifted by up to one pixel (augmentation)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            dx, dy = rng.integers(0, 3, 2)
            batch = F.pad(xt[idx], (1, 1, 1, 1))[:, :, dy:dy + 8, dx:dx + 8]
            out = model(batch)
            loss = F.nll_loss(torch.log(out + 1e-9), yt[idx]) if isinstance(model, DigitsBNMaxPool) \
                else F.cross_entropy(out, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return float((model(torch.from_numpy(x)).argmax(1).numpy() == y).mean())


def main() -> None:
    torch.set_num_threads(1)
    x_train, x_test, y_train, y_test = data()
    np.savez_compressed(os.path.join(HERE, "test.npz"), x=x_test, y=y_test)
    np.savez_compressed(os.path.join(HERE, "calibration.npz"), x=x_train[:300], y=y_train[:300])
    nets = [("digits_cnn", DigitsCNN, 120), ("digits_bn_maxpool", DigitsBNMaxPool, 120),
            ("digits_resnet", DigitsResNet, 120), ("digits_inception", DigitsInception, 120),
            ("digits_spike", DigitsLeNetSpike, 120)]
    for i, (name, cls, epochs) in enumerate(nets):
        if sys.argv[1:] and name not in sys.argv[1:]:
            continue
        torch.manual_seed(100 + i)
        model = train(cls(), x_train, y_train, epochs, seed=100 + i)
        if name == "digits_spike":
            export_n2d2(model, x_train[:300])
            print(f"{name}: test accuracy {100 * accuracy(model, x_test, y_test):.2f}%  -> digits_spike_weights/")
            continue
        path = os.path.join(HERE, name + ".onnx")
        torch.onnx.export(model, (torch.from_numpy(x_test[:2]),), path, input_names=["x"], output_names=["y"],
                          dynamo=False, opset_version=13, dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
                          do_constant_folding=(name == "digits_cnn"))
        print(f"{name}: test accuracy {100 * accuracy(model, x_test, y_test):.2f}%  -> {path}")


if __name__ == "__main__":
    main()
