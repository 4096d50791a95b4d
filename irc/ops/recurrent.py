"""Recurrent ops: LSTM and GRU with ONNX semantics (default activations, no peepholes, full-length sequences).

Outputs Y (all hidden states), Y_h (the last one per direction) and, for LSTM, Y_c.  They run on the numpy
targets only; other targets refuse them by name when a program is built.
"""
from __future__ import annotations

import numpy as np

from ..errors import IRCError
from ..types import TensorType
from . import Attr, OpDef, OpExample, register

DIRECTIONS = {"forward": 1, "reverse": 1, "bidirectional": 2}


class _Recurrent(OpDef):
    params = ("w", "r", "b")
    gates: int = 0
    states: int = 1

    def infer(self, ins, a):
        x, w, r = ins[0], ins[1], ins[2]
        b = ins[3] if len(ins) > 3 else None
        hid, layout = a["hidden_size"], a["layout"]
        self.require_analog(ins)
        if a["direction"] not in DIRECTIONS:
            raise IRCError(f"{self.name} direction {a['direction']!r} is not one of {sorted(DIRECTIONS)}")
        if layout not in (0, 1):
            raise IRCError(f"{self.name} layout must be 0 or 1, got {layout}")
        dirs = DIRECTIONS[a["direction"]]
        if x.rank != 3:
            raise IRCError(f"{self.name} input must be 3-d (sequence, batch, features), got {list(x.shape)}")
        t, n = (x.shape[0], x.shape[1]) if layout == 0 else (x.shape[1], x.shape[0])
        g = self.gates * hid
        if tuple(w.shape) != (dirs, g, x.shape[2]) or tuple(r.shape) != (dirs, g, hid):
            raise IRCError(f"{self.name} weights W {list(w.shape)} / R {list(r.shape)} do not match "
                           f"{dirs} direction(s), hidden_size {hid}, {x.shape[2]} features")
        if b is not None and tuple(b.shape) != (dirs, 2 * g):
            raise IRCError(f"{self.name} bias B has shape {list(b.shape)}, expected [{dirs}, {2 * g}]")
        state = (dirs, n, hid) if layout == 0 else (n, dirs, hid)
        for s in ins[4:4 + self.states]:
            # (directions, batch, hidden) in layout 0, (batch, directions, hidden) in layout 1
            if s is not None and (s.rank != 3 or s.shape[2] != hid or s.shape[layout] != dirs
                                  or s.shape[1 - layout] not in (1, n)):
                raise IRCError(f"{self.name} initial state has shape {list(s.shape)}, expected {list(state)}")
        y = (t, dirs, n, hid) if layout == 0 else (n, t, dirs, hid)
        return [TensorType(y, x.dtype)] + [TensorType(state, x.dtype) for _ in range(self.states)]

    def macs(self, ins, outs, a):
        x, w, r = ins[0], ins[1], ins[2]
        t = x.shape[0] if a["layout"] == 0 else x.shape[1]
        return int(t * w.shape[0] * w.shape[1] * (w.shape[2] + r.shape[2]))

    def _example(self, rng, extra):
        hid, feats, t = 3, 4, 5
        direction = str(rng.choice(sorted(DIRECTIONS)))
        d = DIRECTIONS[direction]
        g = self.gates * hid
        x = rng.standard_normal((2, t, feats)).astype(np.float32)
        w = (rng.standard_normal((d, g, feats)) * 0.5).astype(np.float32)
        r = (rng.standard_normal((d, g, hid)) * 0.5).astype(np.float32)
        b = (rng.standard_normal((d, 2 * g)) * 0.5).astype(np.float32)
        return OpExample([x, w, r, b], {"hidden_size": hid, "direction": direction, "layout": 1, **extra},
                         params=(1, 2, 3))


_COMMON = {
    "hidden_size": Attr("int"),
    "direction": Attr("str", "forward", "forward, reverse or bidirectional"),
    "layout": Attr("int", 0, "0: (sequence, batch, features); 1: batch first"),
}


@register
class LSTM(_Recurrent):
    name = "LSTM"
    inputs = ("x", "w", "r", "b?", "initial_h?", "initial_c?")
    kernel = "lstm"
    gates = 4
    states = 2
    attrs = dict(_COMMON)
    doc = "ONNX LSTM (gates i, o, f, c; sigmoid/tanh/tanh): outputs Y, Y_h, Y_c."

    def example(self, rng):
        return self._example(rng, {})


@register
class GRU(_Recurrent):
    name = "GRU"
    inputs = ("x", "w", "r", "b?", "initial_h?")
    kernel = "gru"
    gates = 3
    states = 1
    attrs = {**_COMMON, "linear_before_reset": Attr("bool", False)}
    doc = "ONNX GRU (gates z, r, h; sigmoid/tanh): outputs Y, Y_h."

    def example(self, rng):
        return self._example(rng, {"linear_before_reset": bool(rng.integers(0, 2))})
