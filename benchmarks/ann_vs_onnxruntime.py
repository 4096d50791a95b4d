"""irc's numpy target against onnxruntime, in one process.

    python benchmarks/ann_vs_onnxruntime.py [--repeats 30]

For LeNet-5 (32x32) and a small residual net (16x16, 3 basic blocks), at
batch 1 and 256: the median time of repeated runs of each, and the ratio
irc-numpy / onnxruntime (lower is better; 1.0 = as fast as onnxruntime).
Both use all cores (numpy's BLAS threads, onnxruntime's intra-op threads).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import irc  # noqa: E402

MODELS = {
    "LeNet-5 32x32": os.path.join(HERE, "..", "tests", "fixtures", "onnx", "lenet5_tanh.onnx"),
    "ResNet-tiny 16x16": os.path.join(HERE, "..", "tests", "fixtures", "onnx", "resnet_tiny.onnx"),
}


def median_time(fn, repeats: int) -> float:
    fn()
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--profile", action="store_true", help="print where irc's time goes, per node, at batch 256")
    args = ap.parse_args()
    print(f"{'model':20s} {'batch':>5s} {'onnxruntime ms':>15s} {'irc-numpy ms':>13s} {'ratio':>7s}")
    for name, path in MODELS.items():
        graph = irc.load(path)
        prog = irc.compile(graph, target="numpy")
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        in_name = sess.get_inputs()[0].name
        for batch in (1, 256):
            x = np.random.default_rng(0).standard_normal(graph.inputs[0].type.concrete(batch)).astype(np.float32)
            np.testing.assert_allclose(prog.run(x), sess.run(None, {in_name: x})[0], rtol=1e-3, atol=1e-4)
            t_ort = median_time(lambda: sess.run(None, {in_name: x}), args.repeats)
            t_irc = median_time(lambda: prog.run(x), args.repeats)
            print(f"{name:20s} {batch:5d} {t_ort * 1e3:15.3f} {t_irc * 1e3:13.3f} {t_irc / t_ort:7.2f}")
        if args.profile:
            profile(prog, graph, args.repeats)


def profile(prog, graph, repeats: int) -> None:
    """Time each node of the generated program at batch 256 (the reference interpreter's split)."""
    from irc.interp import run_graph

    x = np.random.default_rng(0).standard_normal(prog.graph.inputs[0].type.concrete(256)).astype(np.float32)
    times: dict[str, list[float]] = {}
    last = [time.perf_counter()]

    def hook(node, outs):
        now = time.perf_counter()
        times.setdefault(f"{node.op} {node.name}", []).append(now - last[0])
        last[0] = now

    for _ in range(max(3, repeats // 5)):
        last[0] = time.perf_counter()
        run_graph(prog.graph, {prog.graph.inputs[0].name: x}, hook=hook)
    total = sum(statistics.median(v) for v in times.values())
    for k, v in sorted(times.items(), key=lambda kv: -statistics.median(kv[1])):
        print(f"    {statistics.median(v) * 1e3:8.3f} ms {100 * statistics.median(v) / total:5.1f}%  {k}")
    floor = gemm_floor(prog.graph, 256, repeats)
    print(f"    the network's GEMMs alone, on numpy's BLAS with the same shapes: {floor * 1e3:.3f} ms "
          f"of {total * 1e3:.3f} ms")


def gemm_floor(graph, batch: int, repeats: int) -> float:
    """Seconds numpy's matmul needs for the GEMMs of every Conv and Dense at this batch: the floor of any
    numpy-only program that lowers them to BLAS, whatever it does around them."""
    rng = np.random.default_rng(0)
    total = 0.0
    for node in graph.nodes:
        if node.op not in ("Conv", "Dense"):
            continue
        w = graph.param(node.inputs[1])
        groups = node.attrs.get("group", 1) if node.op == "Conv" else 1
        positions = batch * int(np.prod(node.output.type.sample_shape[1:])) if node.op == "Conv" else batch
        a = rng.standard_normal((groups, w.shape[0] // groups, int(np.prod(w.shape[1:])))).astype(np.float32)
        b = rng.standard_normal((groups, a.shape[2], positions)).astype(np.float32)
        total += median_time(lambda: np.matmul(a, b), max(3, repeats // 3))
    return total


if __name__ == "__main__":
    main()
