"""irc's numpy target against onnxruntime, in one process.

    python benchmarks/ann_vs_onnxruntime.py [--repeats 15] [--profile] [--models LeNet,DS-CNN] [--batches 1,256]

The networks (benchmarks/ann_models.py, built on first use and cached): LeNet-5, a CIFAR ResNet-8, the
depthwise-separable DS-CNN-S keyword spotter and Keras's MobileNetV2 at 96x96 (irc reads the .keras file,
onnxruntime runs Keras's own ONNX export of the same model).  For batch 1 and 256: onnxruntime, irc with
its default kernels (``kernels=llvm``: numpy formulations plus JIT-compiled llvmlite kernels) and irc with
``-O kernels=numpy`` (numpy only), timed interleaved (each repeat runs all three in turn), with the median,
the fastest and the slowest run in ms and the irc/onnxruntime ratio of medians (lower is better; 1.0 = as
fast as onnxruntime).  Everyone uses all cores: onnxruntime its intra-op threads, irc its batch threads.

``--profile`` adds, per network at the largest batch: irc's time per node (from the generated program, one
thread, one call of as many samples as the program runs per call, its CHUNK, scaled to the batch), for both
kernel choices; the CPU time of one run with one thread each (irc and onnxruntime), which a busy machine does
not inflate as it does wall time; the BLAS floor (numpy's matmul alone on the GEMMs the program makes, with
their shapes); and onnxruntime's own time per op type (its profiler).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import irc  # noqa: E402
from ann_models import MODELS  # noqa: E402
from node_profile import profile_program  # noqa: E402

KERNELS = ("llvm", "numpy")


SETTLE_S = 0.05
WARM_S = 0.1


def interleaved(fns: dict, repeats: int, budget_s: float) -> dict[str, list[float]]:
    """Each repeat runs every function once, in turn; stops after ``repeats`` or once past the time budget
    (but never before 5 repeats).  Every timed run is preceded by a pause (SETTLE_S) and then at least WARM_S
    of untimed runs of the same function (at least one), for both contenders alike:

    * onnxruntime's threads keep spinning for a while after a run and would otherwise take the cores of
      whatever runs next (measured: irc's numpy-only ResNet-8 at batch 1, 1.5 ms alone, 10 ms right after
      onnxruntime; ResNet-8 at batch 256 with JIT kernels, 46 ms alone, 79 ms right after it);
    * after the pause, the first runs of a program whose threads sleep between runs (irc's) are slow on
      this VM, while onnxruntime's spinning threads hide it (measured, LeNet-5 kernels=numpy at batch 256:
      6.8 ms back to back, 11.2 ms one untimed run after a 50 ms pause, 6.6-7.0 ms after 50-200 ms of
      untimed runs; onnxruntime 4.9-5.5 ms either way): steady-state times are compared.
    """
    for f in fns.values():
        f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    for i in range(repeats):
        for k, f in fns.items():
            time.sleep(SETTLE_S)  # let the previous contender's threads stop spinning
            warm_until = time.perf_counter() + WARM_S
            f()
            while time.perf_counter() < warm_until:
                f()
            t = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t)
        if i >= 4 and time.perf_counter() - start > budget_s:
            break
    return times


def fmt(ts: list[float]) -> str:
    return f"{statistics.median(ts) * 1e3:9.2f} [{min(ts) * 1e3:.2f}-{max(ts) * 1e3:.2f}]"


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--budget", type=float, default=40.0, help="seconds per network and batch before stopping")
    ap.add_argument("--models", default="", help="comma-separated name prefixes (default: all)")
    ap.add_argument("--batches", default="1,256")
    ap.add_argument("--profile", action="store_true", help="where the time goes, per node, at the largest batch")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    wanted = [m for m in MODELS if not args.models or any(m.startswith(p) for p in args.models.split(","))]
    print(f"ms: median [fastest-slowest] of interleaved runs; ratio = irc median / onnxruntime median; "
          f"{os.cpu_count()} cores")
    print(f"{'model':18s} {'batch':>5s} {'repeats':>7s} {'onnxruntime ms':>26s} "
          + " ".join(f"{'irc ' + k + ' ms':>26s} {'ratio':>6s}" for k in KERNELS), flush=True)
    for name in wanted:
        irc_path, onnx_path = MODELS[name]()
        graph = irc.load(irc_path)
        progs = {k: irc.compile(graph, target="numpy", kernels=k) for k in KERNELS}
        sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        for batch in batches:
            x = np.random.default_rng(0).standard_normal(graph.inputs[0].type.concrete(batch)).astype(np.float32)
            ref = sess.run(None, {in_name: x})[0]
            for k, p in progs.items():
                np.testing.assert_allclose(p.run(x), ref, rtol=1e-3, atol=1e-4, err_msg=f"{name} kernels={k}")
            fns = {"ort": lambda: sess.run(None, {in_name: x})}
            fns.update({k: (lambda p=p: p.run(x)) for k, p in progs.items()})
            times = interleaved(fns, args.repeats, args.budget)
            t_ort = statistics.median(times["ort"])
            cells = " ".join(f"{fmt(times[k])} {statistics.median(times[k]) / t_ort:6.2f}" for k in KERNELS)
            print(f"{name:18s} {batch:5d} {len(times['ort']):7d} {fmt(times['ort'])} {cells}", flush=True)
        if args.profile:
            profile(name, graph, progs, onnx_path, max(batches), max(3, args.repeats // 5))


def program_chunk(prog) -> int:
    """The samples per run_batch call the generated program uses (its CHUNK; 0: the whole batch)."""
    return int(prog._fn.__globals__.get("CHUNK", 0))


def profile(name: str, graph, progs: dict, onnx_path: str, batch: int, repeats: int, top: int = 12) -> None:
    x = np.random.default_rng(0).standard_normal(graph.inputs[0].type.concrete(batch)).astype(np.float32)
    chunk = min(batch, program_chunk(progs["llvm"]) or batch)
    print(f"\n  {name}, batch {batch}: where irc's time goes (one thread, median of {repeats} runs; the program "
          f"runs {chunk} samples per call: one call timed, times x{batch / chunk:.3g})")
    for k, prog in progs.items():
        nodes = [(node, t * batch / chunk) for node, t in profile_program(prog, x[:chunk], repeats)]
        total = sum(t for _, t in nodes)
        by_kind: dict[str, float] = defaultdict(float)
        for node, t in nodes:
            by_kind[node.split(" (")[1].rstrip(")") if " (" in node else node.split(" ")[0]] += t
        print(f"    kernels={k}: {total * 1e3:.1f} ms in {len(nodes)} nodes; by formulation: "
              + ", ".join(f"{kind} {t * 1e3:.1f}" for kind, t in sorted(by_kind.items(), key=lambda kv: -kv[1])))
        for node, t in nodes[:top]:
            print(f"      {t * 1e3:9.3f} ms {100 * t / total:5.1f}%  {node}")
    cpu = one_thread_cpu(progs, onnx_path, x, repeats)
    print(f"    one thread each, CPU time of the calling thread (min of {repeats}; robust to a busy machine): "
          f"onnxruntime {cpu['ort'] * 1e3:.1f} ms, "
          + ", ".join(f"irc {k} {cpu[k] * 1e3:.1f} ms (ratio {cpu[k] / cpu['ort']:.2f})" for k in progs))
    gemm, rest = gemm_floor(progs["numpy"], batch, repeats)
    print(f"    BLAS floor: the GEMMs of the numpy formulations alone on numpy's matmul (same shapes): "
          f"{gemm * 1e3:.1f} ms; {rest}")
    ort_ops = ort_profile(onnx_path, x, repeats)
    total = sum(ort_ops.values())
    print(f"    onnxruntime per op type ({total * 1e3:.1f} ms per run, its profiler): "
          + ", ".join(f"{op} {t * 1e3:.1f}" for op, t in sorted(ort_ops.items(), key=lambda kv: -kv[1])[:8]))
    print(flush=True)


def one_thread_cpu(progs: dict, onnx_path: str, x: np.ndarray, repeats: int) -> dict[str, float]:
    """Seconds of CPU time (the calling thread's) per run with one thread each: onnxruntime with one intra-op
    thread, irc's programs with threads=1.  Other processes taking the cores do not count, unlike wall time.
    (A JIT kernel with more than conv_kernels.SPLIT_MACS multiply-adds per call would still split its rows over
    threads, uncounted; at these networks' CHUNK sizes none has.)"""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    fns = {"ort": lambda: sess.run(None, feed)}
    fns.update({k: (lambda p=p: p._fn(p._weights, x, threads=1)) for k, p in progs.items()})
    best: dict[str, float] = {}
    for f in fns.values():
        f()
    for _ in range(repeats):
        for k, f in fns.items():
            t = time.thread_time()
            f()
            best[k] = min(best.get(k, np.inf), time.thread_time() - t)
    return best


def gemm_floor(prog, batch: int, repeats: int) -> tuple[float, str]:
    """Seconds numpy's matmul needs for the GEMMs the numpy formulations make (pointwise, im2col,
    block-diagonal grouped convolutions, Dense) at this batch, BLAS on all its threads; and what has no GEMM."""
    rng = np.random.default_rng(0)
    total, depthwise_macs = 0.0, 0
    for node in prog.graph.nodes:
        if node.op == "Dense":
            k, m = node.inputs[1].type.shape[1], node.inputs[1].type.shape[0]
            p = batch
        elif node.op == "Conv" and node.inputs[1].type.rank == 4:
            out = node.outputs[0].type
            m, cg, kh, kw = node.inputs[1].type.shape
            p = batch * out.shape[2] * out.shape[3]
            if cg == 1 and node.attrs["group"] == node.inputs[0].type.shape[1] > 1:
                depthwise_macs += p * m * kh * kw
                continue
            k = kh * kw * node.inputs[0].type.shape[1]
        else:
            continue
        a = rng.standard_normal((p, k)).astype(np.float32)
        b = rng.standard_normal((k, m)).astype(np.float32)
        total += statistics.median(interleaved({"mm": lambda: np.matmul(a, b)}, repeats, 5.0)["mm"])
    rest = (f"depthwise convolutions ({depthwise_macs / 1e6:.0f} M multiply-adds) have no GEMM"
            if depthwise_macs else "every convolution is a GEMM")
    return total, rest


def ort_profile(path: str, x: np.ndarray, repeats: int) -> dict[str, float]:
    """onnxruntime's time per op type per run, from its own profiler."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(os.environ.get("TMPDIR", "/tmp"), "irc_ort_profile")
    sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(repeats):
        sess.run(None, feed)
    trace = sess.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e.get("args", {}).get("op_name", "?")] += e["dur"] * 1e-6 / repeats
    return dict(per_op)


if __name__ == "__main__":
    main()
