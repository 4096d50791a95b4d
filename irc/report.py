"""What `irc run` prints for a spiking program: analog vs spiking, side by side."""
from __future__ import annotations

import argparse
import time

import numpy as np

from .errors import IRCError


def _int_list(text: str) -> list[int]:
    values = [int(v) for v in str(text).split(",") if v.strip()]
    if not values or min(values) < 1:
        raise IRCError(f"--timesteps takes positive integers separated by commas, got {text!r}")
    return values


def run_spiking(prog, inputs: list[np.ndarray], labels: np.ndarray | None, args: argparse.Namespace) -> int:
    from .progress import Progress

    steps = _int_list(args.timesteps) if args.timesteps else [int(prog.options["timesteps"])]
    n = len(inputs[0])
    analog_pred = None
    if not getattr(args, "no_analog", False) and "analog" in prog.companions:
        t = time.perf_counter()
        analog_scores = prog.analog().run(*inputs, batch_size=args.batch_size)
        dt = time.perf_counter() - t
        analog_pred = np.asarray(analog_scores).reshape(n, -1).argmax(axis=1)
        line = f"analog network (numpy): {dt / n * 1e3:.3f} ms per sample"
        if labels is not None:
            line += f", accuracy {100 * (analog_pred == labels).mean():.2f}%"
        print(line)
    encoders = prog.graph.find("Encode")
    encoding = encoders[0].attrs["mode"] if encoders else "?"
    print(f"spiking network ({prog.target}, {encoding} input, {len(prog.graph.find('IF'))} neuron layers):")
    t = time.perf_counter()
    points = prog.sweep(*inputs, timesteps=steps, batch_size=args.batch_size,
                        progress=Progress(f"simulating {max(steps)} steps"))
    dt = time.perf_counter() - t
    head = f"{'T':>5s} {'accuracy':>9s}"
    if analog_pred is not None and labels is not None:
        head += f" {'vs analog':>10s}"
    if analog_pred is not None:
        head += f" {'agrees':>7s}"
    head += f" {'mean T':>7s} {'spikes/sample':>14s} {'SOPs/MAC':>9s} {'energy SNN/ANN':>15s}"
    print(head)
    for p in points:
        pred = np.asarray(p.scores).reshape(n, -1).argmax(axis=1)
        row = f"{p.timesteps:5d}"
        row += f" {100 * (pred == labels).mean():8.2f}%" if labels is not None else f" {'-':>9s}"
        if analog_pred is not None and labels is not None:
            row += f" {100 * ((pred == labels).mean() - (analog_pred == labels).mean()):+8.2f}pp"
        if analog_pred is not None:
            row += f" {100 * (pred == analog_pred).mean():6.1f}%"
        s = p.stats
        energy = s["energy_pj"]
        ratio = energy["snn"] / energy["ann"] if energy["ann"] else float("nan")
        row += f" {s['mean_timesteps']:7.1f} {s['spikes'] / max(n, 1):14.1f} {s['sops_per_mac']:9.3f} {ratio:15.3f}"
        print(row)
    last = points[-1].stats
    print(f"time: {dt:.2f} s for {n} samples x {max(steps)} steps ({dt / n * 1e3:.2f} ms per sample)")
    print(f"at T={last['timesteps']}: {last['synaptic_ops']:,} synaptic ops ({last['synaptic_ops_ac']:,} accumulates "
          f"on events, {last['synaptic_ops_mac']:,} multiply-accumulates on real-valued inputs) vs "
          f"{last['macs']:,} MACs of the analog network; N2D2's read events per virtual synapse per pattern: "
          f"{last['read_events_per_virtual_synapse']:.3f}")
    print(f"energy model: {last['energy_pj']['model']}")
    print("firing rate per layer (spikes per neuron per step): " + ", ".join(
        f"{name} {layer['rate']:.3f}" for name, layer in last["layers"].items()))
    prog.stats = last
    if getattr(args, "output", None):
        np.save(args.output, points[-1].scores)
        print(f"wrote {args.output} (scores at T={points[-1].timesteps})")
    if getattr(args, "plot", None):
        plot(points, labels, analog_pred, args.plot)
        print(f"wrote {args.plot}")
    return 0


def plot(points, labels, analog_pred, path: str) -> None:
    """Accuracy (or agreement with the analog network) against timesteps, and firing rate per layer."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise IRCError("--plot needs matplotlib", hint="pip install 'irc-compiler[plot]'") from None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ts = [p.timesteps for p in points]
    n = len(points[0].scores)
    if labels is not None:
        acc = [100 * (np.asarray(p.scores).reshape(n, -1).argmax(1) == labels).mean() for p in points]
        ax1.plot(ts, acc, "o-", label="spiking")
        if analog_pred is not None:
            ax1.axhline(100 * (analog_pred == labels).mean(), color="gray", ls="--", label="analog")
        ax1.set_ylabel("accuracy (%)")
    else:
        agree = [100 * (np.asarray(p.scores).reshape(n, -1).argmax(1) == analog_pred).mean() for p in points]
        ax1.plot(ts, agree, "o-", label="agreement with analog")
        ax1.set_ylabel("agreement (%)")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("timesteps")
    ax1.legend()
    ax1.grid(alpha=0.3)
    layers = points[-1].stats["layers"]
    names = list(layers)
    ax2.barh(range(len(names)), [layers[k]["rate"] for k in names])
    ax2.set_yticks(range(len(names)))
    ax2.set_yticklabels([k[-30:] for k in names], fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlabel(f"firing rate at T={points[-1].timesteps} (spikes per neuron per step)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
