"""What `irc run` prints for a spiking program: analog vs spiking, side by side, over a streamed data set."""
from __future__ import annotations

import argparse

from .errors import IRCError
from .options import parse_timesteps


def print_cluster_notes(result) -> None:
    """What happened on the cluster that a user should know: reruns after a worker died."""
    for note in result.notes:
        print(f"dask: {note}")
    for r in result.reruns:
        print(f"dask: samples {r.start}-{r.stop - 1} were run again: their worker died "
              f"({r.times} time{'s' if r.times > 1 else ''})")


def run_spiking(prog, source, args: argparse.Namespace, client=None) -> int:
    """Stream ``source`` through ``prog`` (and its analog network, batch by batch) and print the table."""
    from .evaluation import evaluate

    steps = parse_timesteps(args.timesteps) if args.timesteps else [int(prog.options["timesteps"])]
    compare = not getattr(args, "no_analog", False) and "analog" in prog.companions
    result = evaluate(prog, source, timesteps=steps, batch_size=args.batch_size, client=client,
                      compare_analog=compare, scores_path=getattr(args, "output", None),
                      progress=not getattr(args, "quiet", False), label=f"simulating {max(steps)} steps")
    n = result.samples
    labelled = result.points[0].correct is not None
    if compare:
        line = f"analog network (numpy): {result.seconds.get('analog', 0.0) / n * 1e3:.3f} ms per sample"
        if result.analog_accuracy is not None:
            line += f", accuracy {100 * result.analog_accuracy:.2f}%"
        print(line)
    encoders = prog.graph.find("Encode")
    encoding = encoders[0].attrs["mode"] if encoders else "?"
    print(f"spiking network ({prog.target}, {encoding} input, {len(prog.graph.find('IF'))} neuron layers):")
    print_thresholds(prog, steps)
    head = f"{'T':>5s} {'accuracy':>9s}"
    if compare and labelled:
        head += f" {'vs analog':>10s}"
    if compare:
        head += f" {'agrees':>7s}"
    head += f" {'mean T':>7s} {'spikes/sample':>14s} {'SOPs/MAC':>9s} {'energy SNN/ANN':>15s}"
    print(head)
    for p in result.points:
        row = f"{p.timesteps:5d}"
        row += f" {100 * p.accuracy:8.2f}%" if labelled else f" {'-':>9s}"
        if compare and labelled:
            row += f" {100 * (p.accuracy - result.analog_accuracy):+8.2f}pp"
        if compare:
            row += f" {100 * p.agreement:6.1f}%"
        s = p.stats
        energy = s["energy_pj"]
        ratio = energy["snn"] / energy["ann"] if energy["ann"] else float("nan")
        row += f" {s['mean_timesteps']:7.1f} {s['spikes'] / max(n, 1):14.1f} {s['sops_per_mac']:9.3f} {ratio:15.3f}"
        print(row)
    last = result.stats
    dt = result.seconds.get("spiking", 0.0)
    print(f"time: {dt:.2f} s for {n} samples x {max(steps)} steps ({dt / n * 1e3:.2f} ms per sample)"
          + (f"; {result.elapsed_s:.2f} s wall on {result.workers} workers" if result.workers else ""))
    print(f"at T={last['timesteps']}: {last['synaptic_ops']:,} synaptic ops ({last['synaptic_ops_ac']:,} accumulates "
          f"on events, {last['synaptic_ops_mac']:,} multiply-accumulates on real-valued inputs) vs "
          f"{last['macs']:,} MACs of the analog network; N2D2's read events per virtual synapse per pattern: "
          f"{last['read_events_per_virtual_synapse']:.3f}")
    print(f"energy model: {last['energy_pj']['model']}")
    print("firing rate per layer (spikes per neuron per step): " + ", ".join(
        f"{name} {layer['rate']:.3f}" for name, layer in last["layers"].items()))
    print_cluster_notes(result)
    if getattr(args, "output", None):
        print(f"wrote {args.output} (scores at T={result.points[-1].timesteps})")
    if getattr(args, "plot", None):
        plot(result, args.plot)
        print(f"wrote {args.plot}")
    return 0


def print_thresholds(prog, steps: list[int]) -> None:
    """The threshold method, the T it was fitted for (against the T being run) and each layer's range."""
    from .meta import meta_json

    info = meta_json(prog.graph, "thresholds")
    if not info:
        return
    fitted = info.get("fitted_for_timesteps")
    line = f"thresholds: {info.get('method', '?')}"
    if fitted is not None:
        line += f", fitted for T={fitted}"
        others = [t for t in steps if t != fitted]
        if others:
            line += f" (T={','.join(map(str, others))} run with them; compile with --timesteps T to fit each)"
    if info.get("samples"):
        line += (f"; fitted on {info['samples']} calibration samples, at most "
                 f"{info.get('positions_per_channel', '?')} positions per channel (a seeded subsample)")
    bias = info.get("bias_correction")
    if bias:
        line += f"; bias correction on {len(bias.get('shifts', {}))} layers"
    check = info.get("output_check")
    if isinstance(check, dict) and {"fitted", "percentile"} <= check.keys():
        line += (f"; output error on calibration data (relative MSE): fitted {check['fitted']:.3g}, "
                 f"percentile rule {check['percentile']:.3g}, kept the {check.get('kept', '?')}")
    print(line)
    print("  per layer (min..max): " + ", ".join(f"{k} {lo:.3g}..{hi:.3g}" for k, (lo, hi) in info.get("layers", {}).items()))


def require_matplotlib():
    """pyplot (headless), or one IRCError saying how to install it (checked before a run that will plot)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise IRCError("--plot needs matplotlib", hint="pip install 'irc-compiler[plot]'") from None
    return plt


def plot(result, path: str) -> None:
    """Accuracy (or agreement with the analog network) against timesteps, and firing rate per layer."""
    plt = require_matplotlib()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ts = [p.timesteps for p in result.points]
    if result.points[0].accuracy is not None:
        ax1.plot(ts, [100 * p.accuracy for p in result.points], "o-", label="spiking")
        if result.analog_accuracy is not None:
            ax1.axhline(100 * result.analog_accuracy, color="gray", ls="--", label="analog")
        ax1.set_ylabel("accuracy (%)")
    elif result.points[0].agreement is not None:
        ax1.plot(ts, [100 * p.agreement for p in result.points], "o-", label="agreement with analog")
        ax1.set_ylabel("agreement (%)")
    ax1.set_xscale("log", base=2)
    ax1.set_xlabel("timesteps")
    ax1.legend()
    ax1.grid(alpha=0.3)
    layers = result.stats["layers"]
    names = list(layers)
    ax2.barh(range(len(names)), [layers[k]["rate"] for k in names])
    ax2.set_yticks(range(len(names)))
    ax2.set_yticklabels([k[-30:] for k in names], fontsize=7)
    ax2.invert_yaxis()
    ax2.set_xlabel(f"firing rate at T={result.points[-1].timesteps} (spikes per neuron per step)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
