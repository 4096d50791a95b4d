"""Fuzz irc's frontends and artifact loader with mutated copies of valid seed files.

Each case takes one seed (ONNX, ``.keras``, ``.h5``, N2D2 INI, ``.ircp``), applies one or more structured
mutations (dims <= 0, huge dims, dangling names, cycles, duplicate names, wrong types, changed numbers and
strings) or byte mutations (truncation, bit flips, inserted bytes), and runs it the way a user would:
load -> compile (numpy) -> run -> spike conversion (spike-numpy) -> run.  Anything that ends in something
other than success or an :class:`irc.IRCError` is a finding.

Cases run in a worker process that handles many of them, each under a time limit (``signal.alarm``) and the
worker under a memory limit (``resource.setrlimit``); a worker that dies (segfault, kill) is counted and
restarted.  Everything is deterministic in (frontend, case number), so ``--replay onnx:123`` re-runs one case
in-process with its traceback and ``--keep DIR`` keeps the files of the findings.

    python tools/fuzz.py --cases 10000 --frontends onnx,keras,h5,ini,ircp
    python tools/fuzz.py --replay keras:4711
"""
from __future__ import annotations

import argparse
import collections
import copy
import io
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import sys
import tempfile
import time
import traceback
import zipfile
from typing import Any, Callable

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTENDS = ("onnx", "keras", "h5", "ini", "ircp")

SEEDS = {
    "onnx": ["tests/fixtures/onnx/view_reshape.onnx", "tests/fixtures/onnx/pools_ceil_padded.onnx",
             "tests/fixtures/onnx/dilated_strided.onnx", "tests/fixtures/onnx/separable.onnx",
             "tests/fixtures/onnx/multibranch_concat.onnx", "tests/fixtures/onnx/mlp.onnx",
             "samples/digits/digits_cnn.onnx"],
    "keras": ["tests/fixtures/keras/seq_cnn.keras", "tests/fixtures/keras/functional_branches.keras",
              "tests/fixtures/keras/conv1d.keras", "tests/fixtures/keras/merge_layout.keras",
              "tests/fixtures/keras/nested.keras", "tests/fixtures/keras/depthwise_separable.keras"],
    "h5": ["tests/fixtures/keras/seq_cnn.h5", "tests/fixtures/keras/functional_branches.h5",
           "tests/fixtures/keras/conv1d.h5", "tests/fixtures/keras/merge_layout.h5",
           "tests/fixtures/keras/depthwise_separable.h5"],
    "ini": ["samples/digits/digits_spike.ini", "tests/fixtures/n2d2_corpus/LeNet.ini"],
    "ircp": [],  # made at start-up from samples/digits/digits_cnn.onnx (numpy and spike-numpy)
}

HUGE = [0, -1, -7, 2**31, 2**31 - 1, 2**40, 2**63 - 1, 10**12]


def _pick_number(rng: random.Random, old: Any) -> Any:
    choices = HUGE + [1, 2, 3]
    if isinstance(old, (int, float)) and not isinstance(old, bool):
        choices += [old + 1, old - 1, -old, old * 1000]
    if isinstance(old, float):
        choices += [float("nan"), float("inf"), 1e308, -1e-300]
    return rng.choice(choices)


# ---------------------------------------------------------------------------------------------- bytes
def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Truncation, bit flips, overwritten or inserted bytes."""
    b = bytearray(data)
    kind = rng.choice(["truncate", "flip", "flip", "overwrite", "insert", "zero_run"])
    if not b:
        return bytes(b)
    if kind == "truncate":
        return bytes(b[:rng.randrange(len(b))])
    if kind == "flip":
        for _ in range(rng.choice([1, 1, 2, 8, 64])):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "overwrite":
        i = rng.randrange(len(b))
        b[i:i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff",
                                 bytes(rng.randrange(256) for _ in range(4))])
    elif kind == "insert":
        i = rng.randrange(len(b))
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 4, 100])))
    else:
        i = rng.randrange(len(b))
        b[i:i + rng.choice([8, 64, 512])] = bytes(min(512, len(b) - i))
    return bytes(b)


# ---------------------------------------------------------------------------------------------- JSON
def _json_paths(obj: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _json_paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _json_paths(v, path + (i,))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def _names(obj: Any) -> list[str]:
    """Every string in a JSON document (layer names, keys, ...) for dangling/duplicate-name mutations."""
    return [s for p in _json_paths(obj) if isinstance(s := _get(obj, p), str)] or ["x"]


def mutate_json(doc: Any, rng: random.Random) -> Any:
    """One structured change to a JSON document: a leaf's value, a deleted key, a cycle, a type swap."""
    doc = copy.deepcopy(doc)
    paths = [p for p in _json_paths(doc) if p]
    if not paths:
        return rng.choice([None, [], {}, 0, "x"])
    inbound = [p for p in paths if p[-1] in ("inbound_nodes", "inbound_layers", "input_layers", "output_layers")]
    if inbound and rng.random() < 0.15:
        # a loop: point a layer's inputs at itself or at a later layer
        p = rng.choice(inbound)
        names = [s for s in _names(_get(doc, p[:-1])) if s]
        target = rng.choice(_names(doc))
        node = _get(doc, p)
        text = json.dumps(node)
        for s in set(names):
            if f'"{s}"' in text and rng.random() < 0.5:
                text = text.replace(f'"{s}"', json.dumps(target))
        parent = _get(doc, p[:-1])
        parent[p[-1]] = json.loads(text)
        return doc
    path = rng.choice(paths)
    parent, key = _get(doc, path[:-1]), path[-1]
    old = parent[key]
    kind = rng.random()
    if kind < 0.12:
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif kind < 0.2 and isinstance(parent, list):
        parent.insert(key, copy.deepcopy(old))  # duplicate entry (duplicate layer / name)
    elif isinstance(old, bool):
        parent[key] = rng.choice([not old, None, 0, "true", []])
    elif isinstance(old, (int, float)):
        parent[key] = _pick_number(rng, old) if rng.random() < 0.85 else rng.choice(["1", None, [old], {}])
    elif isinstance(old, str):
        parent[key] = rng.choice(["", "missing_layer", rng.choice(_names(doc)), old * 2, "x" * 10000,
                                  "a'b\"c*/\n%@", None, 3, old.upper(), "../../etc/passwd"])
    elif isinstance(old, list):
        parent[key] = rng.choice([[], old[:-1], old + old[-1:], [None], [-1] * max(1, len(old)),
                                  [2**31] * max(1, len(old)), {}, "x"])
    elif isinstance(old, dict):
        parent[key] = rng.choice([{}, [], None, "x", {k: None for k in old}])
    else:
        parent[key] = rng.choice([0, "x", [], {}])
    return doc


# ---------------------------------------------------------------------------------------------- ONNX
def mutate_onnx(data: bytes, rng: random.Random) -> bytes:
    import onnx
    from onnx import helper

    if rng.random() < 0.2:
        return mutate_bytes(data, rng)
    m = onnx.load_from_string(data)
    g = m.graph
    names = [o for n in g.node for o in n.output] + [i.name for i in g.input] + [i.name for i in g.initializer]
    kind = rng.choice(["init_dims", "init_dims", "init_data", "init_type", "input_dims", "input_rank0",
                       "input_type", "dangling", "cycle", "duplicate", "attr", "attr", "attr", "op_type",
                       "remove_node", "no_outputs", "output_name", "const_node", "opset", "huge_init"])
    if kind.startswith("init") and not g.initializer:
        kind = "attr"
    if kind == "init_dims":
        t = rng.choice(g.initializer)
        if t.dims and rng.random() < 0.7:
            t.dims[rng.randrange(len(t.dims))] = rng.choice(HUGE + [d + 1 for d in t.dims])
        elif rng.random() < 0.5:
            t.dims.append(rng.choice([1, 2, 0]))
        elif t.dims:
            del t.dims[-1]
    elif kind == "init_data":
        t = rng.choice(g.initializer)
        if t.raw_data:
            t.raw_data = t.raw_data[:rng.randrange(len(t.raw_data) + 1)]
        elif t.float_data:
            del t.float_data[rng.randrange(len(t.float_data)):]
        elif t.int64_data:
            t.int64_data.extend([rng.choice(HUGE[:6])])
    elif kind == "init_type":
        t = rng.choice(g.initializer)
        t.data_type = rng.choice([0, 2, 3, 6, 7, 8, 9, 10, 11, 14, 16, 99])
    elif kind == "huge_init":
        g.initializer.append(helper.make_tensor("huge_" + str(rng.randrange(99)), 1,
                                                [2**20, 2**20] if rng.random() < 0.5 else [2**31, 2], [],
                                                raw=True))
        if g.node:
            n = rng.choice(g.node)
            if n.input:
                n.input[rng.randrange(len(n.input))] = g.initializer[-1].name
    elif kind in ("input_dims", "input_rank0", "input_type"):
        if not g.input:
            return mutate_bytes(data, rng)
        vi = rng.choice(g.input)
        tt = vi.type.tensor_type
        if kind == "input_rank0":
            tt.shape.ClearField("dim")
        elif kind == "input_type":
            tt.elem_type = rng.choice([0, 2, 6, 7, 9, 10, 11, 14, 15, 16])
        elif tt.shape.dim:
            d = tt.shape.dim[rng.randrange(len(tt.shape.dim))]
            if rng.random() < 0.2:
                d.dim_param = rng.choice(["", "h", "batch"])
            else:
                d.dim_value = rng.choice(HUGE + [1, 3])
    elif kind == "dangling" and g.node:
        n = rng.choice(g.node)
        if n.input:
            n.input[rng.randrange(len(n.input))] = rng.choice(["missing", ""])
    elif kind == "cycle" and len(g.node) > 1:
        i = rng.randrange(len(g.node) - 1)
        j = rng.randrange(i, len(g.node))
        if g.node[i].input and g.node[j].output:
            g.node[i].input[0] = g.node[j].output[0]
    elif kind == "duplicate" and g.node:
        n = rng.choice(g.node)
        if n.output:
            n.output[0] = rng.choice(names)
    elif kind == "attr":
        nodes = [n for n in g.node if n.attribute]
        if nodes:
            n = rng.choice(nodes)
            a = rng.choice(n.attribute)
            if a.type == onnx.AttributeProto.INT:
                a.i = rng.choice(HUGE + [2, 3])
            elif a.type == onnx.AttributeProto.INTS:
                if a.ints and rng.random() < 0.8:
                    a.ints[rng.randrange(len(a.ints))] = rng.choice(HUGE + [2])
                else:
                    del a.ints[:]
            elif a.type == onnx.AttributeProto.FLOAT:
                a.f = rng.choice([0.0, -1.0, float("nan"), float("inf"), 1e38])
            elif a.type == onnx.AttributeProto.STRING:
                a.s = rng.choice([b"", b"\xff\xfe", b"SAME_UPPER", b"VALID", b"x" * 1000])
            elif a.type == onnx.AttributeProto.TENSOR:
                a.t.dims[:] = [rng.choice(HUGE + [2])]
            else:
                a.name = rng.choice(["axis", "perm", "bogus"])
    elif kind == "op_type" and g.node:
        rng.choice(g.node).op_type = rng.choice(["Relu", "Gemm", "Concat", "Gather", "Softmax", "Reshape",
                                                 "Transpose", "Conv", "MaxPool", "Add", "Flatten", "Squeeze"])
    elif kind == "remove_node" and g.node:
        del g.node[rng.randrange(len(g.node))]
    elif kind == "no_outputs":
        del g.output[:]
    elif kind == "output_name" and g.output:
        g.output[0].name = rng.choice(names + ["missing"])
    elif kind == "const_node" and g.node:
        value = np.asarray(rng.choice([[2**31, -1], [0], [[1.0]], np.zeros((0,)), [float("nan")]]))
        value = value.astype(np.int64 if value.dtype.kind in "iu" else np.float32)
        node = helper.make_node("Constant", [], ["fz_const"], value=onnx.numpy_helper.from_array(value))
        g.node.insert(0, node)
        n = rng.choice(g.node[1:])
        if n.input:
            n.input[rng.randrange(len(n.input))] = "fz_const"
    elif kind == "opset":
        m.opset_import[0].version = rng.choice([0, 1, 5, 7, 11, 13, 99, -1])
    out = m.SerializeToString()
    return mutate_bytes(out, rng) if rng.random() < 0.05 else out


# ---------------------------------------------------------------------------------------------- HDF5
def mutate_h5_file(path: str, rng: random.Random, config_attr: str | None) -> None:
    """Structured changes to an HDF5 file in place: config JSON, dataset shapes/dtypes, external storage."""
    import h5py

    with h5py.File(path, "r+") as f:
        datasets: list[str] = []
        f.visit(lambda n: datasets.append(n) if isinstance(f[n], h5py.Dataset) else None)
        kind = rng.choice(["config", "config", "config", "shape", "dtype", "huge", "external", "extlink",
                           "delete", "attr", "scalar"])
        if config_attr is None and kind == "config":
            kind = "shape"
        if kind == "config":
            raw = f.attrs[config_attr]
            doc = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            for _ in range(rng.choice([1, 1, 2, 3])):
                doc = mutate_json(doc, rng)
            f.attrs[config_attr] = json.dumps(doc)
            return
        if not datasets:
            return
        name = rng.choice(datasets)
        ds = f[name]
        arr = ds[()]
        parent, leaf = ds.parent, name.rsplit("/", 1)[-1]
        if kind == "attr":
            attrs = [(obj, k) for obj in (f, parent) for k in obj.attrs]
            if attrs:
                obj, k = rng.choice(attrs)
                obj.attrs[k] = rng.choice([b"\xff\xfe", np.array([1, 2]), "missing", 7, np.zeros((0,))])
            return
        del parent[leaf]
        if kind == "shape":
            shape = list(arr.shape) or [1]
            shape[rng.randrange(len(shape))] += rng.choice([1, -1])
            parent.create_dataset(leaf, data=np.resize(arr, [max(s, 0) for s in shape]))
        elif kind == "dtype":
            parent.create_dataset(leaf, data=rng.choice([arr.astype(np.complex64), arr.astype("S4"),
                                                         arr.astype(np.float16), arr.astype(np.int8)]))
        elif kind == "huge":
            parent.create_dataset(leaf, shape=rng.choice([(2**20, 2**20), (2**31,), (2**16, 2**16, 4)]),
                                  dtype=np.float32)
        elif kind == "external":
            host = os.path.join(os.path.dirname(path), "secret.bin")
            with open(host, "wb") as fh:
                fh.write(np.arange(max(arr.size, 1), dtype=np.float32).tobytes())
            parent.create_dataset(leaf, shape=arr.shape, dtype=np.float32,
                                  external=[(host, 0, h5py.h5f.UNLIMITED)])
        elif kind == "extlink":
            parent[leaf] = h5py.ExternalLink("/etc/hostname", "/x")
        elif kind == "scalar":
            parent.create_dataset(leaf, data=np.float32(1.0))
        # kind == "delete": the dataset stays deleted


def mutate_keras(data: bytes, rng: random.Random, tmp: str) -> bytes:
    if rng.random() < 0.15:
        return mutate_bytes(data, rng)
    zin = zipfile.ZipFile(io.BytesIO(data))
    members = {n: zin.read(n) for n in zin.namelist()}
    target = rng.choice(["config.json"] * 3 + ["model.weights.h5"] * 2 + ["metadata.json", "drop", "bytes_h5"])
    if target == "drop":
        members.pop(rng.choice(list(members)))
    elif target == "bytes_h5" and "model.weights.h5" in members:
        members["model.weights.h5"] = mutate_bytes(members["model.weights.h5"], rng)
    elif target.endswith(".json") and target in members:
        doc = json.loads(members[target])
        for _ in range(rng.choice([1, 1, 2, 3])):
            doc = mutate_json(doc, rng)
        members[target] = json.dumps(doc).encode()
    elif target == "model.weights.h5" and target in members:
        p = os.path.join(tmp, "w.h5")
        with open(p, "wb") as f:
            f.write(members[target])
        mutate_h5_file(p, rng, None)
        with open(p, "rb") as f:
            members[target] = f.read()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return buf.getvalue()


def mutate_h5(data: bytes, rng: random.Random, tmp: str) -> bytes:
    if rng.random() < 0.15:
        return mutate_bytes(data, rng)
    p = os.path.join(tmp, "m.h5")
    with open(p, "wb") as f:
        f.write(data)
    mutate_h5_file(p, rng, "model_config")
    with open(p, "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------------------------- INI
def mutate_ini(text: str, rng: random.Random, tmp: str) -> str:
    lines = text.split("\n")
    sections = [ln.strip()[1:-1] for ln in lines if ln.strip().startswith("[") and ln.strip().endswith("]")]
    for _ in range(rng.choice([1, 1, 2, 3])):
        kvs = [i for i, ln in enumerate(lines) if "=" in ln and not ln.lstrip().startswith(";")]
        kind = rng.choice(["value", "value", "value", "delete", "dup_section", "input", "include", "bytes",
                           "weights", "weights"])
        if kind == "value" and kvs:
            i = rng.choice(kvs)
            key, _, value = lines[i].partition("=")
            words = value.split()
            new = rng.choice(["0", "-1", "-5", str(2**31), str(2**40), "", "abc", "0 0", "-1 -1", "1e400",
                              "nan", value + " " + value, "[missing]NbOutputs", "\\"])
            if words and rng.random() < 0.5:
                words[rng.randrange(len(words))] = new
                new = " ".join(words)
            lines[i] = f"{key}={new}"
        elif kind == "delete" and kvs:
            del lines[rng.choice(kvs)]
        elif kind == "dup_section" and sections:
            lines.append(f"[{rng.choice(sections)}]")
            lines.append("Input=" + rng.choice(sections))
            lines.append("Type=Fc")
            lines.append("NbOutputs=3")
        elif kind == "input" and kvs:
            ins = [i for i in kvs if lines[i].split("=")[0].strip() == "Input"] or kvs
            i = rng.choice(ins)
            lines[i] = "Input=" + rng.choice(sections + ["missing", "env,env", ""])
        elif kind == "include":
            lines.append(f"[fz@{rng.choice(['/etc/passwd', '../../../etc/hostname', 'missing.tpl'])}]")
            lines.append("Input=" + (sections[-1] if sections else "env"))
        elif kind == "bytes":
            b = mutate_bytes("\n".join(lines).encode(), rng)
            lines = b.decode("latin-1").split("\n")
        elif kind == "weights":
            wdir = os.path.join(tmp, "weights")
            files = sorted(os.listdir(wdir)) if os.path.isdir(wdir) else []
            if files:
                p = os.path.join(wdir, rng.choice(files))
                with open(p, "rb") as f:
                    raw = f.read()
                if rng.random() < 0.5:
                    raw = mutate_bytes(raw, rng)
                else:
                    toks = raw.split()
                    if toks:
                        toks[rng.randrange(len(toks))] = rng.choice([b"nan", b"x", b"1e400", b"\xff\xfe", b""])
                    raw = b" ".join(toks)
                with open(p, "wb") as f:
                    f.write(raw)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- .ircp
def mutate_ircp(data: bytes, rng: random.Random) -> bytes:
    import hashlib

    if rng.random() < 0.15:
        return mutate_bytes(data, rng)
    zin = zipfile.ZipFile(io.BytesIO(data))
    members = {n: zin.read(n) for n in zin.namelist()}
    manifest = json.loads(members["manifest.json"])
    target = rng.choice(["manifest", "manifest", "manifest", "graph", "weights", "drop"])
    rehash = rng.random() < 0.7  # most tampering re-signs, to get past the hashes
    if target == "manifest":
        field = rng.choice(["target", "format_version", "options", "options", "timesteps", "inputs", "any"])
        if field == "target":
            manifest["target"] = rng.choice(["numpy", "spike-numpy", "spike-llvm", "cuda", "nope", 3, None])
        elif field == "format_version":
            manifest["format_version"] = rng.choice([0, -1, True, 1.5, "1", None, 2])
        elif field == "timesteps":
            manifest.setdefault("options", {})["timesteps"] = rng.choice([10**9, 0, -1, "64", 2.5, None])
        elif field == "options":
            opts = manifest.setdefault("options", {})
            if opts and rng.random() < 0.7:
                k = rng.choice(list(opts))
                opts[k] = rng.choice([None, "x", -1, 10**12, [], {}, True, 1.5, float("nan")])
            else:
                opts[rng.choice(["bogus", "calibration", "threads"])] = rng.choice([1, "x", [1, 2]])
        else:
            manifest = mutate_json(manifest, rng)
    elif target == "graph":
        text = members["graph.ir"].decode()
        b = mutate_bytes(text.encode(), rng) if rng.random() < 0.5 else _mutate_ir_text(text, rng).encode()
        members["graph.ir"] = b
    elif target == "weights":
        members["weights.npz"] = mutate_bytes(members["weights.npz"], rng)
    else:
        members.pop(rng.choice([k for k in members if k != "manifest.json"]))
    if rehash and isinstance(manifest, dict):
        manifest["sha256"] = {k: hashlib.sha256(v).hexdigest() for k, v in members.items()
                              if k != "manifest.json"}
        try:
            from irc.program import sign_manifest
            sign_manifest(manifest)
        except ImportError:
            pass
    members["manifest.json"] = json.dumps(manifest).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for k, v in members.items():
            z.writestr(k, v)
    return buf.getvalue()


def _mutate_ir_text(text: str, rng: random.Random) -> str:
    import re

    tokens = list(re.finditer(r"-?\d+|%[\w.]+|\b[a-z]\w*\b", text))
    if not tokens:
        return text
    t = rng.choice(tokens)
    s = t.group()
    if s.lstrip("-").isdigit():
        new = str(rng.choice(HUGE + [1, 2]))
    elif s.startswith("%"):
        new = rng.choice(["%missing", s + "x", rng.choice(tokens).group()])
    else:
        new = rng.choice(["f64", "i64", "spike", "analog", "bogus", "N", "relu", "gemm"])
    return text[:t.start()] + new + text[t.end():]


# ---------------------------------------------------------------------------------------------- running
def make_inputs(graph, rng: np.random.Generator, batch: int = 2) -> list[np.ndarray]:
    from irc.types import DTYPES

    out = []
    for v in graph.inputs:
        shape = [batch if isinstance(d, str) else d for d in v.type.shape]
        if int(np.prod(shape, dtype=np.float64)) > 5_000_000:
            raise _Skip("input too large to make")
        out.append(rng.standard_normal(shape).astype(DTYPES.get(v.type.dtype, np.float32)))
    return out


class _Skip(Exception):
    pass


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def run_case(path: str, frontend: str, weights: str | None, rng: np.random.Generator) -> None:
    """What a user does with a file: load, compile, run, convert to spikes, run."""
    import irc

    if frontend == "ircp":
        prog = irc.load_program(path)
        # a tampered but valid timesteps (8000, within the schema's range) is a long run, not a finding: cap it
        steps = {"timesteps": min(int(prog.options["timesteps"]), 16)} if "timesteps" in prog.options else {}
        prog.run(*make_inputs(prog.graph, rng), **steps)
        return
    g = irc.load(path, **({"weights": weights} if weights else {}))
    x = make_inputs(g, rng)
    prog = irc.compile(g, "numpy")
    prog.run(*x)
    if len(g.inputs) == 1:
        sp = irc.compile(g, "spike-numpy", calibration=x[0], timesteps=3)
        sp.run(*x)


def _where(tb) -> str:
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if ROOT in f.filename and "tools/fuzz.py" not in f.filename] or frames
    f = ours[-1]
    return f"{os.path.relpath(f.filename, ROOT)}:{f.lineno}"


def classify(exc: BaseException | None) -> str:
    import irc

    if exc is None:
        return "ok"
    if isinstance(exc, _Skip):
        return "skipped"
    if isinstance(exc, irc.IRCError):
        return "IRCError"
    if isinstance(exc, _Timeout):
        return "TIMEOUT"
    return f"{type(exc).__name__} at {_where(exc.__traceback__)}"


class Case:
    """One mutated input, rebuilt deterministically from (frontend, number)."""

    def __init__(self, frontend: str, number: int, seeds: dict[str, list[str]], tmp: str):
        self.frontend, self.number = frontend, number
        rng = random.Random(f"{frontend}:{number}")
        seed = seeds[frontend][number % len(seeds[frontend])]
        self.dir = os.path.join(tmp, f"{frontend}-{number}")
        os.makedirs(self.dir, exist_ok=True)
        self.weights = None
        with open(seed, "rb") as f:
            data = f.read()
        if frontend == "onnx":
            out = mutate_onnx(data, rng)
            name = "m.onnx"
        elif frontend == "keras":
            out, name = mutate_keras(data, rng, self.dir), "m.keras"
        elif frontend == "h5":
            out, name = mutate_h5(data, rng, self.dir), "m.h5"
        elif frontend == "ini":
            wsrc = os.path.join(os.path.dirname(seed), os.path.splitext(os.path.basename(seed))[0] + "_weights")
            if os.path.isdir(wsrc):
                self.weights = os.path.join(self.dir, "weights")
                shutil.copytree(wsrc, self.weights)
            out, name = mutate_ini(data.decode("utf-8", "replace"), rng, self.dir).encode("utf-8", "replace"), "m.ini"
        else:
            out, name = mutate_ircp(data, rng), "m.ircp"
        self.path = os.path.join(self.dir, name)
        with open(self.path, "wb") as f:
            f.write(out)

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def _worker(conn, seeds, tmp: str, time_limit: int, mem_limit: int) -> None:
    import resource
    import warnings

    warnings.simplefilter("ignore")
    if mem_limit:
        resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))
    signal.signal(signal.SIGALRM, _alarm)
    os.environ.setdefault("IRC_VERIFY", "1")
    # irc reads HDF5 in a child under this limit; below the case's own, a stuck libhdf5 is an IRCError, not a HANG
    os.environ.setdefault("IRC_MAX_READ_SECONDS", str(max(1, time_limit // 2)))
    import irc  # noqa: F401  (imported once per worker, not per case)

    while True:
        job = conn.recv()
        if job is None:
            return
        frontend, number = job
        exc: BaseException | None = None
        case = None
        t0 = time.perf_counter()
        try:
            signal.alarm(time_limit)
            try:
                case = Case(frontend, number, seeds, tmp)
            except Exception as e:  # a mutation that could not be written is not a finding
                raise _Skip(str(e))
            run_case(case.path, frontend, case.weights, np.random.default_rng(number))
        except BaseException as e:  # noqa: BLE001  (classifying everything is the point)
            exc = e
        finally:
            signal.alarm(0)
        outcome = classify(exc)
        detail = "" if outcome in ("ok", "IRCError", "skipped") else \
            "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300]
        if case is not None:
            case.cleanup()
        conn.send((outcome, detail, time.perf_counter() - t0))


def make_ircp_seeds(tmp: str) -> list[str]:
    import irc

    x = np.load(os.path.join(ROOT, "samples/digits/calibration.npz"))
    cal = x[x.files[0]][:16]
    out = []
    for target, opts in (("numpy", {}), ("spike-numpy", {"calibration": cal, "timesteps": 8})):
        p = os.path.join(tmp, f"seed-{target}.ircp")
        irc.compile(os.path.join(ROOT, "samples/digits/digits_cnn.onnx"), target, **opts).save(p)
        out.append(p)
    return out


def fuzz(frontends: list[str], cases: int, start: int = 0, time_limit: int = 20, mem_limit: int = 3 << 30,
         keep: str | None = None, report: Callable[[str], None] = print, every: float = 30.0,
         deadline: float | None = None) -> dict:
    """Run ``cases`` mutated inputs per frontend (fewer if ``deadline``, a time.time(), comes first);
    returns {frontend: Counter(outcome)}, findings and the number of cases run per frontend."""
    tmp = tempfile.mkdtemp(prefix="irc-fuzz-")
    seeds = {k: [os.path.join(ROOT, p) for p in v] for k, v in SEEDS.items()}
    if "ircp" in frontends:
        seeds["ircp"] = make_ircp_seeds(tmp)
    counts: dict[str, collections.Counter] = {f: collections.Counter() for f in frontends}
    findings: dict[str, list[str]] = collections.defaultdict(list)
    ctx = mp.get_context("fork")
    proc = conn = None
    last = time.time()

    def start_worker():
        nonlocal proc, conn
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(child, seeds, tmp, time_limit, mem_limit), daemon=True)
        proc.start()
        conn = parent

    start_worker()
    done = 0
    try:
        for number in range(start, start + cases):
            if deadline is not None and time.time() > deadline:
                report(f"deadline reached after {done} cases per frontend")
                break
            done += 1
            for frontend in frontends:
                conn.send((frontend, number))
                if conn.poll(time_limit + 30):
                    try:
                        outcome, detail, _ = conn.recv()
                    except EOFError:
                        outcome, detail = f"CRASH (exit {proc.join(5) or proc.exitcode})", ""
                        start_worker()
                else:
                    proc.kill()
                    proc.join()
                    outcome, detail = ("CRASH" if proc.exitcode not in (None, -9) else "HANG"), ""
                    start_worker()
                counts[frontend][outcome] += 1
                if outcome not in ("ok", "IRCError", "skipped"):
                    key = f"{frontend}: {outcome}"
                    if not findings[key]:
                        report(f"new finding {key}: {frontend}:{number} {detail[:200]}")
                    if len(findings[key]) < 5:
                        findings[key].append(f"{frontend}:{number} {detail}")
                        if keep:
                            os.makedirs(keep, exist_ok=True)
                            c = Case(frontend, number, seeds, tmp)
                            dst = os.path.join(keep, f"{frontend}-{number}")
                            shutil.rmtree(dst, ignore_errors=True)
                            shutil.copytree(c.dir, dst)
                            c.cleanup()
                if time.time() - last > every:
                    last = time.time()
                    report(f"[{number - start + 1}/{cases}] " + summary(counts))
    finally:
        try:
            conn.send(None)
        except Exception:
            pass
        proc.join(5)
        if proc.is_alive():
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"counts": counts, "findings": dict(findings), "cases": done}


def summary(counts: dict[str, collections.Counter]) -> str:
    return "; ".join(f"{f}: " + ", ".join(f"{k} {v}" for k, v in c.most_common()) for f, c in counts.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000, help="mutated inputs per frontend")
    ap.add_argument("--start", type=int, default=0, help="first case number (to continue a run)")
    ap.add_argument("--frontends", default=",".join(FRONTENDS))
    ap.add_argument("--time-limit", type=int, default=20, help="seconds per case")
    ap.add_argument("--mem-limit-gb", type=float, default=3.0, help="address space of the worker")
    ap.add_argument("--keep", help="copy the files of findings into this folder")
    ap.add_argument("--replay", help="FRONTEND:NUMBER: rebuild one case and run it here, with its traceback")
    ap.add_argument("--minutes", type=float, help="stop starting new cases after this many minutes")
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    if args.replay:
        frontend, number = args.replay.split(":")
        tmp = tempfile.mkdtemp(prefix="irc-fuzz-")
        seeds = {k: [os.path.join(ROOT, p) for p in v] for k, v in SEEDS.items()}
        if frontend == "ircp":
            seeds["ircp"] = make_ircp_seeds(tmp)
        case = Case(frontend, int(number), seeds, tmp)
        print("case file:", case.path)
        run_case(case.path, frontend, case.weights, np.random.default_rng(int(number)))
        print("ok")
        return 0
    frontends = [f for f in args.frontends.split(",") if f]
    t0 = time.time()
    result = fuzz(frontends, args.cases, args.start, args.time_limit, int(args.mem_limit_gb * (1 << 30)),
                  args.keep, report=lambda s: print(s, flush=True),
                  deadline=t0 + 60 * args.minutes if args.minutes else None)
    print(f"\n{result['cases']} cases per frontend in {time.time() - t0:.0f} s (cases {args.start}..)")
    for f, c in result["counts"].items():
        print(f"{f:6} " + ", ".join(f"{k}: {v}" for k, v in sorted(c.items())))
    bad = result["findings"]
    if bad:
        print("\nfindings (first cases of each):")
        for k, cases in sorted(bad.items()):
            print(" ", k)
            for c in cases:
                print("     ", c)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
