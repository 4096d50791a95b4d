"""Survey: how many real models does irc's numpy target run, and why does it refuse the rest?

    KERAS_BACKEND=torch python benchmarks/real_models.py            # Keras applications + onnx's light models
    python benchmarks/real_models.py --groups onnx-light --only resnet
    python benchmarks/real_models.py --all-members --json survey.json

Models nobody on the project wrote:

* ``keras`` / ``keras-h5``: every ``keras.applications`` family (by default its
  smallest member; ``--all-members`` for all 40) built with ``weights=None`` at
  96x96 (every family's minimum input size is smaller), saved as ``.keras`` and
  as legacy ``.h5`` into the cache directory.  The classifier keeps its logits
  (``classifier_activation=None``: a softmax over 1000 random classes would make
  a 1e-4 comparison meaningless) and biases and BatchNorm statistics are
  randomised a little so every parameter matters.  The reference is Keras's own
  ``predict`` on a fixed random input, stored beside the files.
* ``onnx-light``: the model-zoo CNNs shipped inside the ``onnx`` package
  (``onnx/backend/test/data/light``), plus any ``model.onnx`` under
  ``data/real`` (absent unless downloaded).  Their weights are
  ``ConstantOfShape`` nodes that fill every tensor with 0.02, so every class
  scores the same and any program that runs would "match"; the survey runs a
  copy in the cache whose ``ConstantOfShape`` weights are replaced by seeded
  random tensors of the same shapes (``--light-as-shipped`` for the files as
  they are).
* ``onnx-tests`` (not in the default set): the PyTorch-converted module and
  operator tests and the "simple" models the same package ships.
* ``fixtures`` (not in the default set): the project's real-world-style
  fixtures (tests/fixtures/realworld) against their stored references, to see
  at a glance why each fails.

Each model runs in its own child process, with a wall-clock timeout and an
address-space cap, so a crash or a hang cannot stop the survey: irc.load ->
irc.compile(target="numpy") -> run -> compared with the reference at
rtol = atol = 1e-4.  The outcome is one of

* ``match`` / ``mismatch`` (the max abs difference is shown either way),
* ``refused``: an ``irc.IRCError`` (its first line),
* ``crash``: any other exception (its type and the innermost irc frame), a
  timeout, or a child killed (the memory cap),
* ``skipped``: the reference itself could not be made (Keras failed to build
  or save it, onnxruntime cannot run it): not irc's fault.

A table, the counts per group and the refusals grouped by reason go to stdout;
progress goes to stderr.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
import zlib
from collections import Counter, defaultdict
from typing import Any, Iterable, Sequence

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the checkout's irc, as the other benchmarks run it
IRC_DIRS = tuple(os.path.join(ROOT, d) + os.sep for d in ("irc", "frontends", "passes", "backends"))
RTOL = ATOL = 1e-4
BATCH = 2
OTHER_DYNAMIC_DIM = 32  # a symbolic non-batch dim is fed at this size (onnxruntime needs some size)
RESULT_MARK = "@@real-models-result "

# keras.applications: family -> its members, smallest first; every family builds at 96x96
# with weights=None (the minimum sizes are 75 for the Inceptions, 71 for Xception, 32 elsewhere).
KERAS_FAMILIES: dict[str, list[str]] = {
    "convnext": ["ConvNeXtTiny", "ConvNeXtSmall", "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtXLarge"],
    "densenet": ["DenseNet121", "DenseNet169", "DenseNet201"],
    "efficientnet": [f"EfficientNetB{i}" for i in range(8)],
    "efficientnet_v2": ["EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3",
                        "EfficientNetV2S", "EfficientNetV2M", "EfficientNetV2L"],
    "inception_resnet_v2": ["InceptionResNetV2"],
    "inception_v3": ["InceptionV3"],
    "mobilenet": ["MobileNet"],
    "mobilenet_v2": ["MobileNetV2"],
    "mobilenet_v3": ["MobileNetV3Small", "MobileNetV3Large"],
    "nasnet": ["NASNetMobile", "NASNetLarge"],
    "resnet": ["ResNet50", "ResNet101", "ResNet152"],
    "resnet_v2": ["ResNet50V2", "ResNet101V2", "ResNet152V2"],
    "vgg": ["VGG16", "VGG19"],
    "xception": ["Xception"],
}
KERAS_MIN_SIZE = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}
KERAS_SIZE = 96

GROUPS = ("keras", "keras-h5", "onnx-light", "onnx-tests", "fixtures")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "realworld")
DEFAULT_GROUPS = ("keras", "keras-h5", "onnx-light")


@dataclasses.dataclass
class Entry:
    """One model file to try, with where its reference comes from."""
    group: str
    name: str
    path: str
    reference: str  # "keras": a .ref.npz in the cache; "onnxruntime": computed in the child; else an .npz path


@dataclasses.dataclass
class Outcome:
    status: str  # match | mismatch | refused | crash | skipped
    detail: str = ""
    max_abs_diff: float | None = None
    max_abs_ref: float | None = None
    stage: str = ""  # load | compile | run | compare | reference | build
    seconds: float = 0.0


# ====================================================================== collection
def onnx_data_dir() -> str:
    import importlib.util

    spec = importlib.util.find_spec("onnx")
    if spec is None or not spec.origin:
        raise SystemExit("the onnx package is not installed")
    return os.path.join(os.path.dirname(spec.origin), "backend", "test", "data")


def onnx_entries(groups: Sequence[str]) -> list[Entry]:
    data = onnx_data_dir()
    entries: list[Entry] = []
    if "onnx-light" in groups:
        seen: set[str] = set()
        paths = sorted(glob.glob(os.path.join(data, "light", "*.onnx"))
                       + glob.glob(os.path.join(data, "light", "*", "model.onnx"))
                       + glob.glob(os.path.join(data, "real", "*", "model.onnx")))
        for path in paths:
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            base = os.path.basename(path)
            name = os.path.basename(os.path.dirname(path)) if base == "model.onnx" else base[:-len(".onnx")]
            entries.append(Entry("onnx-light", name.removeprefix("light_").removeprefix("test_"), path,
                                 "onnxruntime"))
    if "onnx-tests" in groups:
        for sub in ("pytorch-converted", "pytorch-operator", "simple"):
            for path in sorted(glob.glob(os.path.join(data, sub, "*", "model.onnx"))):
                name = os.path.basename(os.path.dirname(path)).removeprefix("test_")
                entries.append(Entry("onnx-tests", f"{sub}/{name}", path, "onnxruntime"))
    return entries


def fixture_entries() -> list[Entry]:
    with open(os.path.join(FIXTURES, "fixtures.json")) as f:
        manifest = json.load(f)
    return [Entry("fixtures", e["file"], os.path.join(FIXTURES, e["file"]), os.path.join(FIXTURES, e["reference"]))
            for e in manifest]


def reweighted_copy(path: str, cache: str) -> str:
    """A copy of a light model whose ConstantOfShape weights are seeded random tensors (He-scaled for weights,
    in [0.5, 1.5] for 1-D tensors, so BatchNorm variances stay positive); the graph is otherwise the same."""
    import onnx
    from onnx import numpy_helper

    out = os.path.join(cache, "onnx-light", os.path.basename(os.path.dirname(path)) + "_" + os.path.basename(path)
                       if os.path.basename(path) == "model.onnx" else os.path.basename(path))
    if os.path.exists(out) and os.path.getmtime(out) >= os.path.getmtime(path):
        return out
    model = onnx.load(path)
    g = model.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    rng = np.random.default_rng(zlib.crc32(os.path.basename(path).encode()))
    nodes = []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input and n.input[0] in inits:
            shape = [int(d) for d in inits[n.input[0]]]
            if len(shape) >= 2:
                fan_in = int(np.prod(shape[1:]))
                value = rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
            else:
                value = rng.uniform(0.5, 1.5, shape)
            g.initializer.append(numpy_helper.from_array(value.astype(np.float32), n.output[0]))
        else:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    if model.ir_version < 4:  # initializers not listed among the inputs are allowed from IR version 4
        model.ir_version = 4
    os.makedirs(os.path.dirname(out), exist_ok=True)
    onnx.save(model, out)
    return out


def keras_members(all_members: bool) -> list[str]:
    return [m for members in KERAS_FAMILIES.values() for m in (members if all_members else members[:1])]


def keras_paths(cache: str, name: str) -> dict[str, str]:
    stem = os.path.join(cache, "keras", name)
    return {"keras": stem + ".keras", "keras-h5": stem + ".h5", "ref": stem + ".ref.npz", "error": stem + ".error"}


def selected(name: str, only: Sequence[str]) -> bool:
    return not only or any(o.lower() in name.lower() for o in only)


# ====================================================================== children
def child_limits(mem_gb: float):
    def apply() -> None:
        import resource

        cap = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    return apply


def run_child(job: dict[str, Any], timeout: float, mem_gb: float) -> Outcome:
    """Run one job in a fresh interpreter; whatever happens there comes back as an Outcome."""
    start = time.perf_counter()
    env = dict(os.environ, KERAS_BACKEND=os.environ.get("KERAS_BACKEND", "torch"))
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(job)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=child_limits(mem_gb), start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return Outcome("crash", f"timeout after {timeout:.0f} s", stage="timeout",
                       seconds=time.perf_counter() - start)
    seconds = time.perf_counter() - start
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARK):
            outcome = Outcome(**json.loads(line[len(RESULT_MARK):]))
            outcome.seconds = seconds
            return outcome
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode).name
        why = f"child killed by {sig}" + (f" (memory cap {mem_gb:g} GB?)" if sig in ("SIGKILL", "SIGSEGV") else "")
    else:
        tail = [line for line in err.strip().splitlines() if line.strip()]
        why = f"child exited with status {proc.returncode}: " + (tail[-1] if tail else "no output")
    return Outcome("crash", why[:300], stage="child", seconds=seconds)


def worker(job: dict[str, Any]) -> None:
    """The child's side: do the job, print one result line."""
    try:
        if job["kind"] == "build-keras":
            outcome = build_keras(job["name"], job["cache"])
        else:
            outcome = try_model(Entry(**job["entry"]))
    except MemoryError:
        outcome = Outcome("crash", "MemoryError (memory cap)", stage="child")
    print(RESULT_MARK + json.dumps(dataclasses.asdict(outcome)), flush=True)


# ====================================================================== Keras builds
def randomize_keras(model, seed: int) -> None:
    """Small random biases and BatchNorm statistics (Keras initialises them to constants)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        leaf = w.path.rsplit("/", 1)[-1]
        if leaf == "moving_variance":
            value = rng.uniform(0.8, 1.25, w.shape)
        elif leaf == "gamma":
            value = rng.uniform(0.8, 1.2, w.shape)
        elif leaf in ("bias", "beta", "moving_mean"):
            value = rng.uniform(-0.1, 0.1, w.shape)
        else:
            continue
        w.assign(value.astype("float32"))


def build_keras(name: str, cache: str) -> Outcome:
    """Build, save (.keras, .h5) and predict one keras.applications model."""
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("KERAS_BACKEND", "torch")
    paths = keras_paths(cache, name)
    os.makedirs(os.path.dirname(paths["keras"]), exist_ok=True)
    stage = "build"
    try:
        import keras

        size = max(KERAS_SIZE, KERAS_MIN_SIZE.get(name, 32))
        model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                                   classifier_activation=None)
        seed = zlib.crc32(name.encode())
        randomize_keras(model, seed)
        stage = "save .keras"
        model.save(paths["keras"])
        stage = "predict"
        x = np.random.default_rng(seed).standard_normal((BATCH, size, size, 3)).astype(np.float32)
        y = np.asarray(model.predict(x, verbose=0))
        np.savez(paths["ref"], x0=x, y0=y)
        stage = "save .h5"
        model.save(paths["keras-h5"])
    except Exception as e:  # the reference could not be made: record why, irc is not at fault
        why = f"Keras {stage} failed: {type(e).__name__}: {first_line(str(e))}"
        with open(paths["error"], "w") as f:
            f.write(why)
        return Outcome("skipped", why, stage="build")
    if os.path.exists(paths["error"]):
        os.remove(paths["error"])
    return Outcome("match", "built", stage="build")


def ensure_keras(names: Iterable[str], cache: str, rebuild: bool, timeout: float, mem_gb: float) -> None:
    todo = []
    for name in names:
        p = keras_paths(cache, name)
        if rebuild or not (os.path.exists(p["ref"]) and os.path.exists(p["keras"]) and
                           (os.path.exists(p["keras-h5"]) or os.path.exists(p["error"]))):
            todo.append(name)
    for i, name in enumerate(todo, 1):
        outcome = run_child({"kind": "build-keras", "name": name, "cache": cache}, timeout, mem_gb)
        if outcome.status == "crash":
            with open(keras_paths(cache, name)["error"], "w") as f:
                f.write(f"Keras build crashed: {outcome.detail}")
        progress(f"[build {i}/{len(todo)}] {name}: {outcome.detail} ({outcome.seconds:.0f} s)")


def keras_entries(names: Iterable[str], cache: str, groups: Sequence[str]) -> list[Entry]:
    entries = []
    for group in ("keras", "keras-h5"):
        if group in groups:
            entries += [Entry(group, name, keras_paths(cache, name)[group], "keras") for name in names]
    return entries


# ====================================================================== one model
def first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else ""


def irc_frame(tb) -> str:
    """file:line of the innermost frame in irc's own code (and the innermost frame, if elsewhere)."""
    frames = traceback.extract_tb(tb)
    ours = [f for f in frames if f.filename.startswith(IRC_DIRS)]
    where = f"{os.path.relpath(ours[-1].filename, ROOT)}:{ours[-1].lineno}" if ours else "no irc frame"
    last = frames[-1] if frames else None
    if last is not None and ours and last is not ours[-1]:
        where += f" (innermost: {os.path.basename(last.filename)}:{last.lineno} {last.name})"
    return where


def onnx_inputs(path: str) -> dict[str, np.ndarray]:
    """The inputs the package ships beside the model, else fixed random ones shaped like its inputs."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(path)
    inits = {t.name for t in model.graph.initializer}
    specs = [vi for vi in model.graph.input if vi.name not in inits]
    shipped = sorted(glob.glob(os.path.join(os.path.dirname(path), "test_data_set_0", "input_*.pb")),
                     key=lambda p: int(re.findall(r"\d+", os.path.basename(p))[-1]))
    if len(shipped) == len(specs) and specs:
        feeds = {}
        for vi, pb in zip(specs, shipped):
            t = onnx.TensorProto()
            with open(pb, "rb") as f:
                t.ParseFromString(f.read())
            feeds[vi.name] = numpy_helper.to_array(t)
        return feeds
    rng = np.random.default_rng(zlib.crc32(os.path.basename(os.path.dirname(path)).encode() + path.encode()))
    feeds = {}
    for vi in specs:
        tt = vi.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (BATCH if i == 0 else
                 OTHER_DYNAMIC_DIM) for i, d in enumerate(tt.shape.dim)]
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[vi.name] = rng.random(shape) < 0.5
        else:
            feeds[vi.name] = rng.integers(0, 4, shape).astype(dtype)
    return feeds


def reference(entry: Entry) -> tuple[dict[str, np.ndarray] | list[np.ndarray], list[np.ndarray]]:
    if entry.reference not in ("keras", "onnxruntime"):
        data = np.load(entry.reference)
        xs = [data[f"x{i}"] for i in range(sum(1 for k in data.files if k.startswith("x")))]
        return xs, [data[f"y{i}"] for i in range(sum(1 for k in data.files if k.startswith("y")))]
    if entry.reference == "keras":
        ref = keras_paths(os.path.dirname(os.path.dirname(entry.path)), entry.name)
        if os.path.exists(ref["error"]):
            with open(ref["error"]) as f:
                raise RuntimeError(f.read().strip())
        data = np.load(ref["ref"])
        xs = [data[k] for k in sorted(k for k in data.files if k.startswith("x"))]
        return xs, [data[k] for k in sorted(k for k in data.files if k.startswith("y"))]
    import onnxruntime as ort

    feeds = onnx_inputs(entry.path)
    sess = ort.InferenceSession(entry.path, providers=["CPUExecutionProvider"])
    return feeds, [np.asarray(y) for y in sess.run(None, feeds)]


def try_model(entry: Entry) -> Outcome:
    """load -> compile -> run -> compare, each failure classified."""
    try:
        inputs, expected = reference(entry)
    except Exception as e:
        return Outcome("skipped", f"no reference: {type(e).__name__}: {first_line(str(e))}"[:300], stage="reference")
    import irc

    stage = "load"
    try:
        graph = irc.load(entry.path)
        stage = "compile"
        prog = irc.compile(graph, target="numpy")
        stage = "run"
        got = prog.run(inputs) if isinstance(inputs, dict) else prog.run(*inputs)
    except irc.IRCError as e:
        return Outcome("refused", first_line(str(e)), stage=stage)
    except Exception as e:
        return Outcome("crash", f"{type(e).__name__}: {first_line(str(e))[:160]} @ {irc_frame(e.__traceback__)}",
                       stage=stage)
    got = got if isinstance(got, list) else [got]
    return compare(got, expected)


def compare(got: Sequence[np.ndarray], expected: Sequence[np.ndarray]) -> Outcome:
    if len(got) != len(expected):
        return Outcome("mismatch", f"{len(got)} outputs, the reference has {len(expected)}", stage="compare")
    worst, scale, ok = 0.0, 0.0, True
    for i, (g, y) in enumerate(zip(got, expected)):
        g = np.asarray(g)
        if g.shape != y.shape:
            return Outcome("mismatch", f"output {i} has shape {list(g.shape)}, the reference {list(y.shape)}",
                           stage="compare")
        g64, y64 = g.astype(np.float64), y.astype(np.float64)
        diff = np.abs(g64 - y64)
        worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
        if np.isnan(g64).any() != np.isnan(y64).any():
            worst = float("nan")
        scale = max(scale, float(np.nanmax(np.abs(y64))) if y64.size else 0.0)
        ok = ok and bool(np.allclose(g64, y64, rtol=RTOL, atol=ATOL, equal_nan=True))
    return Outcome("match" if ok else "mismatch", "", max_abs_diff=worst, max_abs_ref=scale, stage="compare")


# ====================================================================== reporting
OP_LIST = re.compile(r"\d+ unsupported op\(s\): (.*)")
LAYER_LIST = re.compile(r"\d+ unsupported layer\(s\): (.*)")
LAYER_ITEM = re.compile(r"(\w+) '[^']*'(?: \((.*?)\))?(?=; \w+ '|$)")


def reasons(detail: str) -> list[str]:
    """The distinct reasons in one refusal, without file and node names, so that models group by them."""
    if m := OP_LIST.search(detail):
        return sorted({f"unsupported op {op}" for op in re.findall(r"(?:^|; )([\w.]+) \(node", m.group(1))})
    if m := LAYER_LIST.search(detail):
        found = set()
        for cls, why in LAYER_ITEM.findall(m.group(1)):
            why = re.sub(r"; supported: .*", "", why or "")
            found.add(f"Keras {why}" if why else f"unsupported Keras layer {cls}")
        return sorted(found)
    detail = re.sub(r"\b(input|value) '[^']*'", r"\1 '…'", detail)        # the names differ, the reason not
    return [re.sub(r"'[^']*' is computed", "'…' is computed", detail)]


def location_free(detail: str) -> str:
    """Drop the 'path, node ...: ' prefix of an IRCError line."""
    m = re.match(r"^(?:/|\.|[A-Za-z]:)[^:]*(?::\d+)?(?:, node '[^']*')?: (.*)$", detail)
    if m:
        return m.group(1)
    m = re.match(r"^node '[^']*': (.*)$", detail)
    return m.group(1) if m else detail


def fmt_diff(o: Outcome) -> str:
    if o.max_abs_diff is None:
        return ""
    return f"{o.max_abs_diff:.1e} / {o.max_abs_ref:.1e}"


def print_report(results: list[tuple[Entry, Outcome]], out=sys.stdout) -> None:
    rows = [(e.group, e.name, o.status, fmt_diff(o), f"{o.seconds:.1f}",
             (o.stage + ": " if o.status in ("refused", "crash") and o.stage else "") + location_free(o.detail))
            for e, o in results]
    head = ("group", "model", "status", "max|diff| / max|ref|", "s", "detail")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths)) + "  " + head[5]
    print(line, file=out)
    print("-" * min(len(line) + 40, 160), file=out)
    for r in rows:
        detail = r[5] if len(r[5]) <= 150 else r[5][:147] + "..."
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + detail, file=out)

    print("\nCounts", file=out)
    statuses = ("match", "mismatch", "refused", "crash", "skipped")
    by_group: dict[str, Counter] = defaultdict(Counter)
    for e, o in results:
        by_group[e.group][o.status] += 1
    print("  " + "group".ljust(12) + "".join(s.rjust(10) for s in statuses) + "total".rjust(8), file=out)
    for group in [g for g in GROUPS if g in by_group]:
        c = by_group[group]
        print("  " + group.ljust(12) + "".join(str(c[s]).rjust(10) for s in statuses)
              + str(sum(c.values())).rjust(8), file=out)

    print("\nRefusals by reason (a model with several reasons counts under each)", file=out)
    for group in [g for g in GROUPS if g in by_group]:
        grouped: dict[str, list[str]] = defaultdict(list)
        for e, o in results:
            if e.group == group and o.status == "refused":
                for reason in reasons(location_free(o.detail)):
                    grouped[reason].append(e.name)
        if not grouped:
            continue
        print(f"  {group}:", file=out)
        for reason, names in sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            shown = ", ".join(names[:6]) + (f", +{len(names) - 6}" if len(names) > 6 else "")
            print(f"    {reason[:110]}: {len(names)} model{'s' if len(names) != 1 else ''} ({shown})", file=out)
    crashes = [(e, o) for e, o in results if o.status == "crash"]
    if crashes:
        print("\nCrashes", file=out)
        for e, o in crashes:
            print(f"  {e.group}/{e.name}: {o.stage}: {o.detail}", file=out)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ====================================================================== main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Groups: " + ", ".join(GROUPS) + f" (default: {', '.join(DEFAULT_GROUPS)}).")
    p.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "irc-real-models"),
                   help="where the Keras models and their references are built (default: %(default)s)")
    p.add_argument("--groups", nargs="+", choices=GROUPS, default=list(DEFAULT_GROUPS), metavar="GROUP",
                   help="which model sets to survey")
    p.add_argument("--only", nargs="+", default=[], metavar="TEXT",
                   help="keep the models whose name contains any of these (case-insensitive)")
    p.add_argument("--all-members", action="store_true",
                   help="every keras.applications model, not only the smallest of each family")
    p.add_argument("--light-as-shipped", action="store_true",
                   help="run onnx's light models with their constant 0.02 weights instead of seeded random ones")
    p.add_argument("--rebuild", action="store_true", help="build the Keras models again even if cached")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per model run (default: %(default)s)")
    p.add_argument("--build-timeout", type=float, default=900.0,
                   help="seconds per Keras model build (default: %(default)s)")
    p.add_argument("--mem-gb", type=float, default=8.0,
                   help="address-space cap of each child process, GB (default: %(default)s)")
    p.add_argument("--json", metavar="PATH", help="also write every result (with untruncated first lines) as JSON")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    cache = os.path.abspath(args.cache)
    entries: list[Entry] = []
    if {"keras", "keras-h5"} & set(args.groups):
        names = [n for n in keras_members(args.all_members) if selected(n, args.only)]
        ensure_keras(names, cache, args.rebuild, args.build_timeout, args.mem_gb)
        entries += keras_entries(names, cache, args.groups)
    for e in onnx_entries(args.groups):
        if selected(e.name, args.only):
            if e.group == "onnx-light" and not args.light_as_shipped:
                e.path = reweighted_copy(e.path, cache)
            entries.append(e)
    if "fixtures" in args.groups:
        entries += [e for e in fixture_entries() if selected(e.name, args.only)]
    if not entries:
        progress("no model matches")
        return 1
    results: list[tuple[Entry, Outcome]] = []
    for i, entry in enumerate(entries, 1):
        outcome = run_child({"kind": "run", "entry": dataclasses.asdict(entry)}, args.timeout, args.mem_gb)
        results.append((entry, outcome))
        progress(f"[{i}/{len(entries)}] {entry.group}/{entry.name}: {outcome.status} ({outcome.seconds:.1f} s)")
    print_report(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{**dataclasses.asdict(e), **dataclasses.asdict(o)} for e, o in results], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
