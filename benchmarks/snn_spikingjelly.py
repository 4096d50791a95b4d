"""SpikingJelly 2.0's training-free conversions as a baseline for irc's (benchmarks only, never a dependency).

    pip install torch==2.13.0 && pip install --no-deps spikingjelly==2.0.0 loguru tqdm requests

``torch_model(graph)`` rebuilds a chain-shaped irc IR graph (Conv, BatchNorm, Relu, AvgPool, MaxPool,
Flatten, Dense, Dropout; a final Softmax dropped, same argmax) as a torch ``nn.Sequential`` with the same
parameters, so SpikingJelly converts exactly the network irc converts; ``check_model`` compares it with irc's
analog output first.  ``spikingjelly_accs`` converts with ``RateCodingRecipe(mode="99.9%", channel_wise=True,
half_threshold=True)`` ("rate", its best recipe) or ``LocalThresholdBalancingRecipe`` ("ltb", Bu et al.
2025) on the calibration inputs and reads the accumulated output out at every requested T (one run).
"""
from __future__ import annotations

import copy

import numpy as np


def _symmetric(pads: list[int], nd: int, what: str) -> list[int]:
    begin, end = list(pads[:nd]) or [0] * nd, list(pads[nd:]) or [0] * nd
    if begin != end:
        raise ValueError(f"{what}: asymmetric pads {pads} (not needed by the benchmark networks)")
    return begin


def torch_model(graph):
    """The chain graph as an eval-mode torch nn.Sequential with the graph's parameters."""
    import torch
    import torch.nn as nn

    def p(v):
        return torch.from_numpy(np.array(graph.param(v), np.float32))

    layers = []
    nodes = list(graph.nodes)
    for i, node in enumerate(nodes):
        a, ins = node.attrs, node.inputs
        rank = ins[0].type.rank
        if node.op == "Conv":
            w = p(ins[1])
            nd = w.ndim - 2
            conv = nn.Conv2d(w.shape[1] * a.get("group", 1), w.shape[0], tuple(w.shape[2:]),
                             stride=tuple(a.get("strides") or [1] * nd),
                             padding=tuple(_symmetric(a.get("pads") or [], nd, node.name)),
                             dilation=tuple(a.get("dilations") or [1] * nd), groups=a.get("group", 1),
                             bias=len(ins) > 2 and ins[2] is not None)
            conv.weight.data = w
            if conv.bias is not None:
                conv.bias.data = p(ins[2])
            layers.append(conv)
        elif node.op == "Dense":
            w = p(ins[1])
            lin = nn.Linear(w.shape[1], w.shape[0], bias=len(ins) > 2 and ins[2] is not None)
            lin.weight.data = w
            if lin.bias is not None:
                lin.bias.data = p(ins[2])
            layers.append(lin)
        elif node.op == "BatchNorm":
            scale, shift, mean, var = (p(v) for v in ins[1:5])
            bn = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(len(scale), eps=float(a.get("epsilon", 1e-5)))
            bn.weight.data, bn.bias.data, bn.running_mean.data, bn.running_var.data = scale, shift, mean, var
            layers.append(bn)
        elif node.op == "Relu":
            layers.append(nn.ReLU())
        elif node.op in ("AvgPool", "MaxPool"):
            k = list(a["kernel"])
            pad = tuple(_symmetric(a.get("pads") or [], len(k), node.name))
            stride = tuple(a.get("strides") or k)
            layers.append(nn.AvgPool2d(tuple(k), stride, pad, count_include_pad=bool(a.get("count_include_pad")))
                          if node.op == "AvgPool" else nn.MaxPool2d(tuple(k), stride, pad))
        elif node.op == "Flatten":
            layers.append(nn.Flatten())
        elif node.op in ("Dropout", "Identity"):
            continue
        elif node.op in ("Softmax", "LogSoftmax") and i == len(nodes) - 1:
            continue  # same argmax; SpikingJelly has no spiking softmax
        else:
            raise ValueError(f"{node.name}: {node.op} is not rebuilt for SpikingJelly")
    return nn.Sequential(*layers).eval()


def check_model(model, graph, x: np.ndarray) -> float:
    """Largest |torch - irc analog| logit difference on x (raises if the rebuilt model is not the same net)."""
    import torch

    import irc

    want = irc.compile(graph).run(x)
    if graph.nodes[-1].op == "Softmax":
        want = np.log(np.maximum(want, 1e-30))
        with torch.no_grad():
            got = torch.log_softmax(model(torch.from_numpy(x)), 1).numpy()
    else:
        with torch.no_grad():
            got = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(got - want).max())
    if diff > 1e-3 * max(1.0, float(np.abs(want).max())):
        raise AssertionError(f"the torch rebuild differs from irc's analog network by {diff}")
    return diff


LTB_BATCH = 16
LTB_EPOCHS = 4
"""LTB's thresholds start at 0 and grow by one step per calibration batch (theta += 2 mean(max(a - theta, 0))):
four batches of 64 leave them far too low (~45 % on digits_cnn at every T), so it gets the same calibration
inputs as 16 batches of 16, four times over (64 steps).  Measured on digits_cnn at T=2/4/8/32: 64x1 44.9/42.2/
44.2/45.6 %, 16x1 92.9/96.0/97.3/98.4 %, 16x4 93.8/98.9/99.3/99.6 %, 16x16 89.1/98.2/99.6/99.6 %."""


def spikingjelly_accs(model, cal: np.ndarray, x: np.ndarray, y: np.ndarray, steps: list[int],
                      recipe_name: str, batch: int | None = None, epochs: int | None = None) -> dict[int, float]:
    """Accuracy after each of ``steps`` (one run of max(steps)) of SpikingJelly's conversion."""
    import torch
    from spikingjelly.activation_based import ann2snn, functional

    ltb = recipe_name != "rate"
    batch = batch or (LTB_BATCH if ltb else 64)
    epochs = epochs or (LTB_EPOCHS if ltb else 1)
    loader = [(torch.from_numpy(cal[i:i + batch]), torch.zeros(len(cal[i:i + batch])))
              for _ in range(epochs) for i in range(0, len(cal), batch)]
    if not ltb:
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
