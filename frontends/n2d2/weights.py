"""N2D2's trained-parameter files (``.syntxt``) and weight fillers.

Files live in one folder, one set per layer, named after the section with
``< > : " | ? *`` and control characters replaced by ``_``.  A single file
``<name>.syntxt`` interleaves weights and biases; otherwise split files
``<name>_weights.syntxt`` / ``<name>_biases.syntxt`` (BatchNorm:
``_scales``, ``_biases``, ``_means``, ``_variances``).  Values are read in
N2D2's exact order: Conv (OCHW) per output, the kernels of its *connected*
channels only, x fastest; Fc (OC) per output, its inputs in CHW order.
"""
from __future__ import annotations

import os
import re
import warnings

import numpy as np

from irc.errors import IRCError
from irc.limits import MAX_TEXT_BYTES

_UNSAFE = re.compile(r'[<>:"|?*\x00-\x1f]')


def file_stem(section: str) -> str:
    return _UNSAFE.sub("_", section)


def read_text(path: str, what: str) -> str:
    """A text file whole, its size checked first (irc.limits.MAX_TEXT_BYTES); binary content is an IRCError."""
    try:
        MAX_TEXT_BYTES.check(os.path.getsize(path), what, file=path)
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise IRCError(f"cannot read {what} ({e.strerror})", file=path) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise IRCError(f"{what} is not text (byte {e.start} is {raw[e.start]:#04x}); N2D2 weights are "
                       "whitespace-separated decimal numbers", file=path,
                       hint="binary weight files are not read; export the weights as text") from None


class ValueStream:
    """Whitespace-separated decimal values of one file, read in order."""

    def __init__(self, path: str):
        self.path = path
        text = read_text(path, "the weights file")
        try:
            self.values = np.array([float(t) for t in text.split()], np.float64)
        except ValueError as e:
            raise IRCError(f"not a weights file: {e}", file=path) from None
        self.pos = 0

    def take(self, n: int, what: str) -> np.ndarray:
        if self.pos + n > len(self.values):
            raise IRCError(f"the file ends after {len(self.values)} values; {what} needs {self.pos + n}",
                           file=self.path, hint="the weights do not match this INI (channels, mapping, NoBias?)")
        out = self.values[self.pos:self.pos + n]
        self.pos += n
        return out

    def done(self) -> None:
        if self.pos != len(self.values):
            raise IRCError(f"the file has {len(self.values)} values, {self.pos} expected (synaptic file size larger "
                           "than expected)", file=self.path)


def _paths(folder: str, section: str, suffixes: list[str]) -> tuple[str | None, list[str]]:
    stem = os.path.join(folder, file_stem(section))
    single = stem + ".syntxt"
    if os.path.exists(single):
        return single, []
    split = [f"{stem}_{s}.syntxt" for s in suffixes]
    missing = [p for p in split if not os.path.exists(p)]
    if missing:
        raise IRCError(f"no trained parameters for [{section}]: neither {single} nor {missing[0]} exists",
                       file=missing[0], hint="pass the folder N2D2 exported (weights/ or weights_validation/)")
    return None, split


def read_conv(folder: str, section: str, shape: tuple[int, int, int, int], mask: np.ndarray, has_bias: bool,
              export_format: str = "OCHW", flip: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Conv weights (M, C, KH, KW) (unconnected pairs zero) and bias (M,) from N2D2's files."""
    m, c, kh, kw = shape
    single, split = _paths(folder, section, ["weights"] + (["biases"] if has_bias else []))
    w = np.zeros(shape, np.float32)
    bias = np.zeros(m, np.float32) if has_bias else None
    stream = ValueStream(single or split[0])
    if export_format == "OCHW":
        for o in range(m):
            for ch in range(c):
                if mask[ch, o]:
                    k = stream.take(kh * kw, f"kernel ({o}, {ch}) of [{section}]").reshape(kh, kw)
                    w[o, ch] = k[::-1, ::-1] if flip else k
            if single and has_bias:
                bias[o] = stream.take(1, f"bias {o} of [{section}]")[0]
    elif export_format == "HWCO" and not single:
        for y in range(kh):
            for x in range(kw):
                for ch in range(c):
                    for o in range(m):
                        if mask[ch, o]:
                            w[o, ch, y, x] = stream.take(1, f"weight of [{section}]")[0]
    else:
        raise IRCError(f"[{section}]: WeightsExportFormat={export_format} is not supported here "
                       "(OCHW, or HWCO in split files)")
    stream.done()
    if has_bias and not single:
        b = ValueStream(split[1])
        bias[:] = b.take(m, f"biases of [{section}]")
        b.done()
    return w, bias


def read_fc(folder: str, section: str, outputs: int, inputs: int, has_bias: bool,
            export_format: str = "OC") -> tuple[np.ndarray, np.ndarray | None]:
    """Fc weights (outputs, inputs) and bias from N2D2's files."""
    single, split = _paths(folder, section, ["weights"] + (["biases"] if has_bias else []))
    stream = ValueStream(single or split[0])
    w = np.zeros((outputs, inputs), np.float32)
    bias = np.zeros(outputs, np.float32) if has_bias else None
    if export_format == "OC":
        for o in range(outputs):
            w[o] = stream.take(inputs, f"weights of output {o} of [{section}]")
            if single and has_bias:
                bias[o] = stream.take(1, f"bias {o} of [{section}]")[0]
    elif export_format == "CO" and not single:
        w[:] = stream.take(inputs * outputs, f"weights of [{section}]").reshape(inputs, outputs).T
    else:
        raise IRCError(f"[{section}]: WeightsExportFormat={export_format} is not supported here")
    stream.done()
    if has_bias and not single:
        b = ValueStream(split[1])
        bias[:] = b.take(outputs, f"biases of [{section}]")
        b.done()
    return w, bias


def read_batchnorm(folder: str, section: str, channels: int) -> tuple[np.ndarray, ...]:
    """BatchNorm (scales, biases, means, variances)."""
    single, split = _paths(folder, section, ["scales", "biases", "means", "variances"])
    if single:
        s = ValueStream(single)
        v = s.take(4 * channels, f"parameters of [{section}]").reshape(channels, 4).T
        s.done()
        return tuple(np.ascontiguousarray(a, np.float32) for a in v)
    out = []
    for path in split:
        s = ValueStream(path)
        out.append(s.take(channels, f"parameters of [{section}]").astype(np.float32))
        s.done()
    return tuple(out)


# -------------------------------------------------------------- writing
def _write(path: str, rows: list[np.ndarray]) -> None:
    with open(path, "w") as f:
        for row in rows:
            f.write(" ".join(repr(float(v)) for v in np.ravel(row)) + " \n")


def write_conv(folder: str, section: str, w: np.ndarray, bias: np.ndarray | None, mask: np.ndarray) -> None:
    """Write Conv parameters as N2D2 exports them (split files, OCHW, connected kernels only)."""
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, file_stem(section))
    _write(stem + "_weights.syntxt", [np.concatenate([w[o, c].ravel() for c in range(w.shape[1]) if mask[c, o]] or
                                                     [np.zeros(0)]) for o in range(w.shape[0])])
    if bias is not None:
        _write(stem + "_biases.syntxt", list(bias))


def write_fc(folder: str, section: str, w: np.ndarray, bias: np.ndarray | None) -> None:
    os.makedirs(folder, exist_ok=True)
    stem = os.path.join(folder, file_stem(section))
    _write(stem + "_weights.syntxt", list(w))
    if bias is not None:
        _write(stem + "_biases.syntxt", list(bias))


# -------------------------------------------------------------- fillers
def fill(doc, section: str, key: str, shape: tuple[int, ...], fan_in: int, fan_out: int,
         rng: np.random.Generator) -> np.ndarray:
    """Initial values from N2D2's filler keys (WeightsFiller / BiasFiller); N2D2's cell default is Normal(0, 0.05)."""
    kind = doc.get_str(section, key, "NormalFiller") if doc.has_key(section, key) else "NormalFiller"

    def param(name: str, default):
        full = f"{key}.{name}"
        if not doc.has_key(section, full):
            return default
        return doc.get_str(section, full) if isinstance(default, str) else doc.get_float(section, full)

    if kind == "ConstantFiller":
        return np.full(shape, param("Value", 0.0), np.float32)
    if kind == "NormalFiller":
        std = param("StdDev", 1.0) if doc.has_key(section, key) else 0.05
        return rng.normal(param("Mean", 0.0), std, shape).astype(np.float32)
    if kind == "UniformFiller":
        return rng.uniform(param("Min", 0.0), param("Max", 1.0), shape).astype(np.float32)
    norm = param("VarianceNorm", "FanIn")
    n = {"FanIn": fan_in, "FanOut": fan_out, "Average": (fan_in + fan_out) / 2}.get(norm)
    if n is None:
        raise IRCError(f"unknown {key}.VarianceNorm {norm!r} in [{section}]")
    if kind == "XavierFiller":
        scale = param("Scaling", 1.0) * np.sqrt(3.0 / max(n, 1))
        if param("Distribution", "Uniform") == "Normal":
            return rng.normal(0.0, scale / np.sqrt(3.0), shape).astype(np.float32)
        return rng.uniform(-scale, scale, shape).astype(np.float32)
    if kind == "HeFiller":
        std = param("Scaling", 1.0) * np.sqrt(2.0 / max(n, 1))
        return rng.normal(param("MeanNorm", 0.0), std, shape).astype(np.float32)
    raise IRCError(f"unknown filler {kind!r} for {key} in [{section}]")


def warn_filled(path: str) -> None:
    warnings.warn(f"{path}: no weights folder given; parameters come from the INI's fillers (random). "
                  "Pass weights=DIR (irc.load) or --weights DIR (CLI) to use trained ones.", stacklevel=3)
