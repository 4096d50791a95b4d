"""Stream 100,000 digit-sized samples through the spike-llvm digits program, here and on a 2-worker Dask cluster.

    python benchmarks/stream_digits.py [--samples 100000] [--timesteps 16] [--shard 10000] [--workers 2]

The bundled digits (samples/digits/test.npz, 450 images) are repeated into a
temporary folder of .npy shards (inputs) and one labels file, written shard by
shard.  The program is samples/digits/digits_cnn.onnx compiled for spike-llvm
with samples/digits/calibration.npz, saved as an artifact.  Each run happens in
a child process of its own, so its peak RSS is its own:

* local: ``irc.evaluate(artifact, folder, labels=...)`` on this machine;
* cluster: the same with ``client=`` a LocalCluster of N single-threaded
  worker processes (the scheduler lives in the driver).

It prints both times, the peak RSS of the driver and of every worker next to
the size of the data, and checks that accuracy, predictions and every
statistic (spikes, synaptic ops, per-layer spikes and rates, mean timesteps,
energy) are identical.  With --in-memory it also checks them against one
``prog.sweep`` over the whole array held in memory.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
DIGITS = os.path.join(ROOT, "samples", "digits")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_data(folder: str, samples: int, shard: int) -> tuple[str, str, int]:
    """Shards of the digits repeated, written one at a time; returns (shard folder, labels file, bytes)."""
    d = np.load(os.path.join(DIGITS, "test.npz"))
    x, y = d["x"], d["y"]
    shards = os.path.join(folder, "shards")
    os.makedirs(shards)
    labels = np.lib.format.open_memmap(os.path.join(folder, "labels.npy"), mode="w+", dtype=np.int64,
                                       shape=(samples,))
    for k, start in enumerate(range(0, samples, shard)):
        idx = np.arange(start, min(start + shard, samples)) % len(x)
        np.save(os.path.join(shards, f"part{k}.npy"), x[idx])
        labels[start:start + len(idx)] = y[idx]
    labels.flush()
    del labels
    return shards, os.path.join(folder, "labels.npy"), samples * x[0].nbytes


def child(args) -> None:
    """One measured run in this process; its summary goes to args.out."""
    import irc

    t0 = time.perf_counter()
    workers_rss: dict[str, float] = {}
    if args.child == "local":
        result = irc.evaluate(args.artifact, args.data, labels=args.labels, timesteps=args.timesteps)
    elif args.child == "in-memory":
        prog = irc.load_program(args.artifact)
        x = np.concatenate([np.load(os.path.join(args.data, f)) for f in
                            sorted(os.listdir(args.data), key=lambda f: int(f[4:-4]))])
        point = prog.sweep(x, timesteps=[args.timesteps])[0]
        y = np.load(args.labels)
        pred = point.scores.reshape(len(x), -1).argmax(1)
        summary = {"seconds": time.perf_counter() - t0, "rss": peak_rss_mib(), "workers_rss": {}, "busy": None,
                   "accuracy": float((pred == y).mean()), "stats": point.stats, "predictions": pred.astype(np.int32),
                   "reruns": []}
        with open(args.out, "wb") as f:
            pickle.dump(summary, f)
        return
    else:
        from irc.distributed import local_cluster

        with local_cluster(args.workers) as client:
            t0 = time.perf_counter()  # the cluster's start-up is not the evaluation's time
            result = irc.evaluate(args.artifact, args.data, labels=args.labels, timesteps=args.timesteps,
                                  client=client)
            workers_rss = client.run(peak_rss_mib)
    summary = {"seconds": time.perf_counter() - t0, "rss": peak_rss_mib(), "workers_rss": workers_rss,
               "accuracy": result.accuracy, "stats": result.stats,
               "predictions": result.predictions[args.timesteps], "reruns": [vars(r) for r in result.reruns],
               "batch_size": result.batch_size, "busy": result.seconds.get("spiking", 0.0)}
    with open(args.out, "wb") as f:
        pickle.dump(summary, f)


def run_child(mode: str, args, artifact: str, data: str, labels: str, tmp: str) -> dict:
    out = os.path.join(tmp, f"{mode}.pkl")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--artifact", artifact, "--data", data,
           "--labels", labels, "--timesteps", str(args.timesteps), "--workers", str(args.workers), "--out", out]
    subprocess.run(cmd, check=True)
    with open(out, "rb") as f:
        return pickle.load(f)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--timesteps", type=int, default=16)
    ap.add_argument("--shard", type=int, default=10_000, help="samples per .npy shard")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--in-memory", action="store_true", help="also check against one in-memory prog.sweep")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--artifact", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--labels", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    import irc

    with tempfile.TemporaryDirectory() as tmp:
        shards, labels, nbytes = make_data(tmp, args.samples, args.shard)
        g = irc.load(os.path.join(DIGITS, "digits_cnn.onnx"))
        cal = np.load(os.path.join(DIGITS, "calibration.npz"))["x"]
        artifact = os.path.join(tmp, "snn.ircp")
        irc.compile(g, target="spike-llvm", calibration=cal, timesteps=args.timesteps).save(artifact)
        print(f"data: {args.samples:,} samples of 1x8x8 float32 ({nbytes / 2**20:.1f} MiB) in "
              f"{len(os.listdir(shards))} .npy shards; spike-llvm, T={args.timesteps}; cores: {os.cpu_count()}")
        runs = {"local": run_child("local", args, artifact, shards, labels, tmp),
                "cluster": run_child("cluster", args, artifact, shards, labels, tmp)}
        # memory is bounded if a tenth of the data needs the same: the same run over the first shard(s)
        tenth = os.path.join(tmp, "tenth")
        os.makedirs(tenth)
        part = sorted(os.listdir(shards), key=lambda f: int(f[4:-4]))[:max(1, len(os.listdir(shards)) // 10)]
        for f in part:
            os.link(os.path.join(shards, f), os.path.join(tenth, f))
        rows = sum(len(np.load(os.path.join(tenth, f), mmap_mode="r")) for f in part)
        np.save(os.path.join(tmp, "labels_tenth.npy"), np.load(labels, mmap_mode="r")[:rows])
        small = run_child("local", args, artifact, tenth, os.path.join(tmp, "labels_tenth.npy"), tmp)
        if args.in_memory:
            runs["in-memory"] = run_child("in-memory", args, artifact, shards, labels, tmp)
    ref = runs["local"]
    print(f"{'run':10s} {'time (s)':>9s} {'samples/s':>10s} {'busy (s)':>9s} {'driver peak RSS':>16s}  "
          f"workers' peak RSS")
    for name, r in runs.items():
        workers = ", ".join(f"{v:.0f}" for v in r["workers_rss"].values()) or "-"
        busy = f"{r['busy']:9.1f}" if r.get("busy") is not None else f"{'-':>9s}"
        print(f"{name:10s} {r['seconds']:9.1f} {args.samples / r['seconds']:10.0f} {busy} {r['rss']:12.0f} MiB  "
              f"{workers}{' MiB' if r['workers_rss'] else ''}")
    print(f"(busy: the simulation's own time, summed over workers; memory: the same local run over {rows:,} samples "
          f"peaks at {small['rss']:.0f} MiB, over {args.samples:,} at {ref['rss']:.0f} MiB)")
    print(f"batch size: {ref['batch_size']}; accuracy {100 * ref['accuracy']:.2f}%, "
          f"{ref['stats']['spikes']:,} spikes, {ref['stats']['synaptic_ops']:,} synaptic ops")
    for name, r in runs.items():
        if name == "local":
            continue
        same = (r["stats"] == ref["stats"] and r["accuracy"] == ref["accuracy"]
                and np.array_equal(r["predictions"], ref["predictions"]))
        print(f"{name} vs local: statistics, accuracy and predictions {'identical' if same else 'DIFFER'}"
              + (f"; reruns {r['reruns']}" if r["reruns"] else ""))
        if not same:
            diff = {k: (ref["stats"][k], r["stats"].get(k)) for k in ref["stats"] if ref["stats"][k] != r["stats"].get(k)}
            print(json.dumps(diff, default=str)[:2000])
            sys.exit(1)


if __name__ == "__main__":
    main()
