"""A plain PyTorch clock-driven simulation of an irc spiking graph (the peer in benchmarks).

Every step runs every layer on the whole batch, dense, as PyTorch SNN
libraries do; the semantics are the IR's (same neurons, same gated pool, same
readout), so its predictions agree with spike-numpy's.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from irc.graph import Graph
from irc.ops.nn import spatial_attrs


def _pad2d(x, pads, value=0.0):
    top, left, bottom, right = pads[0], pads[1], pads[2], pads[3]
    return F.pad(x, (left, right, top, bottom), value=value) if any(pads) else x


class TorchSNN:
    def __init__(self, graph: Graph, device: str = "cpu"):
        self.g = graph
        self.device = device
        self.p = {k: torch.from_numpy(np.array(v)).to(device) for k, v in graph.params.items()}

    def param(self, v):
        return self.p[v.name] if v is not None else None

    @torch.no_grad()
    def run(self, x: np.ndarray, timesteps: int) -> np.ndarray:
        g = self.g
        xin = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
        state: dict[str, dict] = {}
        out = None
        for t in range(timesteps):
            env = {id(g.inputs[0]): xin}
            for n in g.nodes:
                a = n.attrs
                ins = [env[id(v)] if v is not None and not v.is_param else self.param(v) for v in n.inputs]
                if n.op == "Encode":
                    y = ins[0] * a["gain"]
                elif n.op == "Conv":
                    (sh, sw), pads, dil = spatial_attrs(a, 2)
                    y = F.conv2d(_pad2d(ins[0], pads), ins[1], ins[2] if len(ins) > 2 else None, (sh, sw), 0, dil,
                                 a["group"])
                elif n.op == "Dense":
                    y = F.linear(ins[0], ins[1], ins[2] if len(ins) > 2 else None)
                elif n.op == "ScaleShift":
                    shape = (1, -1) + (1,) * (ins[0].dim() - 2)
                    y = ins[0] * ins[1].view(shape) + (ins[2].view(shape) if len(ins) > 2 and ins[2] is not None else 0)
                elif n.op in ("Add", "Sub", "Mul", "Div"):
                    y = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div}[n.op](ins[0], ins[1])
                elif n.op == "AvgPool":
                    (sh, sw), pads, _ = spatial_attrs(a, 2)
                    y = F.avg_pool2d(_pad2d(ins[0], pads), a["kernel"], (sh, sw), 0, a["ceil_mode"], True)
                elif n.op == "GlobalAvgPool":
                    y = ins[0].mean(dim=(2, 3), keepdim=True)
                elif n.op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
                    y = ins[0].reshape((ins[0].shape[0],) + n.output.type.sample_shape)
                elif n.op == "Concat":
                    y = torch.cat(ins, dim=a["axis"])
                elif n.op == "GatedMaxPool":
                    s = state.setdefault(n.name, {})
                    (sh, sw), pads, _ = spatial_attrs(a, 2)
                    s["cnt"] = s.get("cnt", torch.zeros_like(ins[0])) + ins[0]
                    lead = F.max_pool2d(_pad2d(s["cnt"], pads, float("-inf")), a["kernel"], (sh, sw), 0,
                                        ceil_mode=a["ceil_mode"])
                    y = lead - s.get("lead", torch.zeros_like(lead))
                    s["lead"] = lead
                elif n.op == "IF":
                    s = state.setdefault(n.name, {})
                    th = ins[1].view((1, -1) + (1,) * (ins[0].dim() - 2))
                    v = s.get("v")
                    if v is None:
                        v = (a["init"] * th).expand_as(ins[0]).clone()
                        s["cnt"] = torch.zeros_like(ins[0])
                    if a["decay"] != 1.0:
                        v = v * a["decay"]
                    v = v + ins[0]
                    spk = (v >= th).float()
                    if a["negative"] == "bipolar":
                        spk = spk - (v <= -th).float()
                    elif a["negative"] == "corrective":
                        spk = spk - ((v < 0) & (s["cnt"] > 0)).float()
                        s["cnt"] = s["cnt"] + spk
                    v = torch.where(spk != 0, torch.zeros_like(v), v) if a["reset"] == "zero" else v - spk * th
                    s["v"] = v
                    y = spk
                elif n.op == "Readout":
                    out = ins[0] if out is None else out + ins[0]
                    continue
                else:
                    raise NotImplementedError(n.op)
                env[id(n.output)] = y
        return (out / timesteps).cpu().numpy()
