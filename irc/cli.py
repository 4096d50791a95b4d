"""The ``irc`` command line: compile, run, inspect, targets.

User errors (IRCError) are printed in one or two lines on stderr with exit
code 2, never with a traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Sequence

import numpy as np

from . import __version__
from .errors import IRCError

ARTIFACT_SUFFIX = ".ircp"


def _target_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options given on the command line, for the target to validate."""
    from .data import load_arrays

    opts: dict[str, Any] = {}
    if getattr(args, "calibration", None):
        arrays = load_arrays(args.calibration)
        from .data import INPUT_KEYS

        key = next((k for k in ("",) + INPUT_KEYS if k in arrays), None)
        if key is None:
            if len(arrays) != 1:
                raise IRCError(f"cannot tell which array holds the calibration inputs ({sorted(arrays)})",
                               file=args.calibration)
            key = next(iter(arrays))
        opts["calibration"] = arrays[key]
    if getattr(args, "timesteps", None):
        opts["timesteps"] = max(_int_list(args.timesteps, "--timesteps"))
    for name in ("encoding", "percentile", "seed", "terminate_delta"):
        value = getattr(args, name, None)
        if value is not None:
            opts[name] = value
    if getattr(args, "per_channel", None) is not None:
        opts["per_channel"] = args.per_channel
    for item in getattr(args, "option", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise IRCError(f"--option needs KEY=VALUE, got {item!r}")
        opts[key.replace("-", "_")] = _parse_value(value)
    return opts


def _parse_value(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise IRCError(f"{flag} takes integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise IRCError(f"{flag} takes positive integers, got {text!r}")
    return values


def _load_model(path: str, args: argparse.Namespace):
    from .driver import load

    kwargs = {}
    if getattr(args, "weights", None):
        kwargs["weights"] = args.weights
    if getattr(args, "dt", None) is not None and path.lower().endswith(".nir"):
        kwargs["dt"] = args.dt
    return load(path, **kwargs)


def _compile(path: str, args: argparse.Namespace):
    from .driver import compile as irc_compile

    print_ir = (lambda text: print(text, file=sys.stderr)) if getattr(args, "print_ir", False) else None
    return irc_compile(_load_model(path, args), target=args.target, print_ir=print_ir, **_target_options(args))


# ------------------------------------------------------------------ commands
def cmd_compile(args: argparse.Namespace) -> int:
    prog = _compile(args.model, args)
    out = args.output
    if args.emit == "ir":
        from .text import print_graph

        with open(out, "w") as f:
            f.write(print_graph(prog.graph))
        print(f"wrote {out} (IR after the {args.target} pipeline)")
    elif args.emit == "nir":
        from .backends.nir_export import to_nir

        to_nir(prog, out, lossy=args.lossy, **({} if args.dt is None else {"dt": args.dt}))
        print(f"wrote {out} (NIR graph of the {args.target} program)")
    elif args.emit == "source":
        if prog.source is None:
            raise IRCError(f"target {args.target!r} generates no source")
        written = prog.write_source(out)
        print("wrote " + ", ".join(written))
    else:
        prog.save(out)
        print(f"wrote {out} (target {prog.target}, {len(prog.graph.nodes)} nodes, "
              f"{prog.graph.num_params():,} parameters)")
    return 0


def _is_artifact(path: str) -> bool:
    if path.endswith(ARTIFACT_SUFFIX):
        return True
    import zipfile

    return zipfile.is_zipfile(path) and not path.endswith((".keras", ".npz"))


def cmd_run(args: argparse.Namespace) -> int:
    from .data import as_class_labels, load_arrays, pick_inputs, pick_labels
    from .progress import Progress

    if not os.path.exists(args.model):
        raise IRCError("file not found", file=args.model)
    if _is_artifact(args.model):
        from .program import load_program

        prog = load_program(args.model)
        how = "artifact"
    else:
        prog = _compile(args.model, args)
        how = "compiled on the fly"
    arrays = load_arrays(args.input)
    inputs = pick_inputs(arrays, [v.name for v in prog.graph.inputs], args.input)
    n = len(inputs[0]) if prog.graph.inputs[0].type.has_batch else 1
    labels = None
    if args.labels:
        label_arrays = load_arrays(args.labels)
        labels = pick_labels(label_arrays) if "" not in label_arrays else label_arrays[""]
        if labels is None:
            raise IRCError("no labels found (name the array 'y' or 'labels')", file=args.labels)
        labels = as_class_labels(labels, n, args.labels)
    elif pick_labels(arrays) is not None:
        labels = as_class_labels(pick_labels(arrays), n, args.input)
    print(f"model: {args.model} ({how}), target: {prog.target}, samples: {n}")
    if getattr(prog, "spiking", False):
        from .report import run_spiking

        return run_spiking(prog, inputs, labels, args)
    start = time.perf_counter()
    out = prog.run(*inputs, batch_size=args.batch_size, progress=Progress("running"))
    elapsed = time.perf_counter() - start
    scores = out[0] if isinstance(out, list) else out
    print(f"time: {elapsed * 1e3:.1f} ms total, {elapsed / max(n, 1) * 1e3:.4f} ms per sample")
    preds = scores.reshape(len(scores), -1).argmax(axis=1)
    if labels is not None:
        correct = int((preds == labels).sum())
        print(f"accuracy: {100.0 * correct / n:.2f}% ({correct}/{n})")
    else:
        shown = " ".join(str(p) for p in preds[:20])
        print(f"predictions: {shown}{' ...' if len(preds) > 20 else ''}")
    if args.output:
        np.save(args.output, scores)
        print(f"wrote {args.output} (scores)")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from .analysis import layer_table

    graph = _load_model(args.model, args)
    if args.after:
        from .passes import PIPELINES, PassContext, run_pipeline

        if args.after not in PIPELINES:
            raise IRCError(f"unknown pipeline {args.after!r}", hint="pipelines: " + ", ".join(PIPELINES))
        graph = run_pipeline(graph, PIPELINES[args.after], PassContext())
    rows = layer_table(graph)
    print(f"{graph.name}: inputs " + ", ".join(f"{v.name} {v.type}" for v in graph.inputs))
    header = ("layer", "op", "output shape", "params", "MACs")
    table = [header] + [(r.node.name, r.node.op, "x".join(str(d) for d in r.node.outputs[0].type.shape),
                         f"{r.params:,}", f"{r.macs:,}") for r in rows]
    widths = [min(max(len(row[i]) for row in table), 40) for i in range(5)]
    for i, row in enumerate(table):
        cells = [row[0][:40].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]),
                 row[3].rjust(widths[3]), row[4].rjust(widths[4])]
        print("  ".join(cells))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    total_params = graph.num_params()
    total_macs = sum(r.macs for r in rows)
    print(f"total: {len(rows)} layers, {total_params:,} parameters, {total_macs:,} MACs per sample")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from .registry import TARGETS, backend_for

    for name in TARGETS:
        backend = backend_for(name)
        ok, why = backend.available()
        status = "available" if ok else f"unavailable: {why}"
        print(f"{name:12s} {status}")
        print(f"{'':12s} {backend.summary}")
        opts = ", ".join(sorted(backend.options))
        print(f"{'':12s} options: {opts}")
    return 0


# ------------------------------------------------------------------- parser
def _add_target_flags(p: argparse.ArgumentParser, default_target: str) -> None:
    p.add_argument("--target", "-t", default=default_target, help=f"target (default {default_target}; see `irc targets`)")
    p.add_argument("--weights", help="directory of weight files (N2D2 INI models)")
    p.add_argument("--calibration", help=".npy/.npz of calibration inputs (spiking targets)")
    p.add_argument("--timesteps", help="timesteps (run: a comma-separated list gives accuracy against timesteps)")
    p.add_argument("--encoding", choices=["current", "poisson", "periodic"], help="input encoding (spiking)")
    p.add_argument("--percentile", type=float, help="threshold percentile of activations (spiking, default 99.9)")
    p.add_argument("--per-channel", action="store_true", default=None,
                   help="one threshold per channel (spiking; the default)")
    p.add_argument("--per-layer", dest="per_channel", action="store_false", help="one threshold per layer (spiking)")
    p.add_argument("--terminate-delta", type=float, help="early decision margin in spikes (spiking; 0 = off)")
    p.add_argument("--seed", type=int, help="seed of random encodings (spiking)")
    p.add_argument("--dt", type=float, help="NIR files (read or written): seconds per step (default 1e-4)")
    p.add_argument("--option", "-O", action="append", metavar="KEY=VALUE", help="any other target option")
    p.add_argument("--print-ir", action="store_true", help="print the IR after each pass (stderr)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="irc", description="irc: compile trained neural networks to numpy, "
                                     "spiking and CUDA programs")
    parser.add_argument("--version", action="version", version=f"irc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="compile a model into a program artifact, IR text or source")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--emit", choices=["program", "ir", "source", "nir"], default="program")
    p.add_argument("--lossy", action="store_true",
                   help="--emit nir: write what NIR cannot say exactly anyway, with a warning listing the changes")
    _add_target_flags(p, "numpy")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("run", help="run a model or artifact on inputs; accuracy with labels")
    p.add_argument("model", help="a model file (compiled on the fly) or an .ircp artifact")
    p.add_argument("--input", "-i", required=True, help=".npy or .npz inputs (an .npz may also hold labels 'y')")
    p.add_argument("--labels", "-l", help=".npy/.npz class labels")
    p.add_argument("--batch-size", type=int, help="samples per chunk")
    p.add_argument("--output", help="save the output scores to this .npy")
    p.add_argument("--plot", help="spiking: draw accuracy against timesteps and firing rates to this .png")
    p.add_argument("--no-analog", action="store_true", help="spiking: skip the analog comparison run")
    _add_target_flags(p, "numpy")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("inspect", help="table of layers, shapes, parameters and MACs")
    p.add_argument("model")
    p.add_argument("--weights", help="directory of weight files (N2D2 INI models)")
    p.add_argument("--after", help="show the graph after a pipeline (e.g. analog)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("targets", help="list targets and whether they can run here")
    p.set_defaults(func=cmd_targets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except IRCError as e:
        print(f"irc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("irc: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("irc: error: out of memory; try a smaller --batch-size", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
