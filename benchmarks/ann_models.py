"""The networks benchmarks/ann_vs_onnxruntime.py measures, built here from their definitions (random weights).

Each builder writes the model irc reads and the ONNX file onnxruntime runs into a cache folder
($IRC_CACHE_DIR/bench, else ~/.cache/irc/bench) and returns both paths; a model already there is reused.

* LeNet-5 (tanh, average pools, 32x32), a CIFAR ResNet-8 (32x32, basic blocks 16/32/64, BatchNorm) and
  DS-CNN-S, the depthwise-separable keyword-spotting CNN of Zhang et al. 2017 ("Hello Edge", 49x10 MFCC
  input, 64 channels): PyTorch modules exported to ONNX (TorchScript exporter); irc and onnxruntime read
  the same file.
* MobileNetV2 (Keras Application, alpha 1.0, 96x96, 10 classes, random weights): irc reads the ``.keras``
  file through its Keras frontend; onnxruntime runs the same Keras model exported to ONNX by Keras itself
  (``model.export(format="onnx")``, torch backend).

Needs torch (and keras 3 for MobileNetV2) the first time only.
"""
from __future__ import annotations

import os
from typing import Callable

VERSION = "1"  # bump when a definition changes, so cached files are rebuilt


def cache_dir() -> str:
    base = os.environ.get("IRC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "irc")
    path = os.path.join(base, "bench")
    os.makedirs(path, exist_ok=True)
    return path


def _torch_modules():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def randomize_bn(model: nn.Module) -> nn.Module:
        g = torch.Generator().manual_seed(1)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
        return model.eval()

    class LeNet5(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c3 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
            self.f5, self.f6, self.out = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

        def forward(self, x):
            x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
            x = F.avg_pool2d(torch.tanh(self.c3(x)), 2)
            x = torch.flatten(x, 1)
            return self.out(torch.tanh(self.f6(torch.tanh(self.f5(x)))))

    class BasicBlock(nn.Module):
        def __init__(self, i, o, stride):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o)
            self.c2, self.b2 = nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o)
            self.down = None
            if stride != 1 or i != o:
                self.down = nn.Sequential(nn.Conv2d(i, o, 1, stride, bias=False), nn.BatchNorm2d(o))

        def forward(self, x):
            y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
            return F.relu(y + (x if self.down is None else self.down(x)))

    class ResNet8(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            self.layers = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2))
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1)
            return self.fc(torch.flatten(x, 1))

    class DSCNN(nn.Module):
        """DS-CNN-S: a 10x4 stride-2 convolution, four depthwise-separable blocks, average pool, classifier."""

        def __init__(self, channels: int = 64, classes: int = 12):
            super().__init__()
            layers = [nn.Conv2d(1, channels, (10, 4), (2, 2), (5, 1), bias=False), nn.BatchNorm2d(channels),
                      nn.ReLU()]
            for _ in range(4):
                layers += [nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False),
                           nn.BatchNorm2d(channels), nn.ReLU(),
                           nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU()]
            self.body = nn.Sequential(*layers)
            self.fc = nn.Linear(channels, classes)

        def forward(self, x):
            x = F.adaptive_avg_pool2d(self.body(x), 1)
            return self.fc(torch.flatten(x, 1))

    return torch, randomize_bn, {"lenet5": (LeNet5, (1, 32, 32)), "resnet8": (ResNet8, (3, 32, 32)),
                                 "dscnn": (DSCNN, (1, 49, 10))}


def torch_model(key: str) -> tuple[str, str]:
    path = os.path.join(cache_dir(), f"{key}-v{VERSION}.onnx")
    if not os.path.exists(path):
        torch, randomize_bn, defs = _torch_modules()
        cls, shape = defs[key]
        torch.manual_seed(0)
        model = randomize_bn(cls())
        tmp = path + ".tmp"
        torch.onnx.export(model, torch.zeros((1,) + shape), tmp, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}}, opset_version=17, dynamo=False)
        os.replace(tmp, path)
    return path, path


def mobilenet_v2() -> tuple[str, str]:
    keras_path = os.path.join(cache_dir(), f"mobilenetv2_96-v{VERSION}.keras")
    onnx_path = os.path.join(cache_dir(), f"mobilenetv2_96-v{VERSION}.onnx")
    if not (os.path.exists(keras_path) and os.path.exists(onnx_path)):
        os.environ.setdefault("KERAS_BACKEND", "torch")
        import warnings

        import keras
        import numpy as np

        keras.utils.set_random_seed(0)
        model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None, classes=10)
        model.predict(np.zeros((1, 96, 96, 3), np.float32), verbose=0)  # Keras exports called models only
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.export(onnx_path + ".tmp", format="onnx", verbose=False)
        model.save(keras_path)
        os.replace(onnx_path + ".tmp", onnx_path)
    return keras_path, onnx_path


MODELS: dict[str, Callable[[], tuple[str, str]]] = {
    "LeNet-5 32x32": lambda: torch_model("lenet5"),
    "ResNet-8 32x32": lambda: torch_model("resnet8"),
    "DS-CNN-S 49x10": lambda: torch_model("dscnn"),
    "MobileNetV2 96x96": mobilenet_v2,
}
"""Benchmark name -> builder returning (file irc reads, ONNX file onnxruntime runs)."""
