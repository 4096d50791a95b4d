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
from .options import parse_timesteps

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
        opts["timesteps"] = max(parse_timesteps(args.timesteps))
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
        opts[key.replace("-", "_")] = value  # the target's option schema parses and checks it
    return opts


COMPILE_FLAGS = {"calibration": "--calibration", "encoding": "--encoding", "percentile": "--percentile",
                 "per_channel": "--per-channel/--per-layer", "terminate_delta": "--terminate-delta",
                 "seed": "--seed", "option": "-O", "weights": "--weights", "print_ir": "--print-ir",
                 "input_shape": "--input-shape"}
"""Flags that shape compilation: an artifact was compiled already, so they cannot apply to it."""


def _refuse_compile_flags(args: argparse.Namespace, prog) -> None:
    """An artifact runs as it was compiled: a flag it cannot honour is an error, not silently ignored."""
    given = [flag for key, flag in COMPILE_FLAGS.items() if getattr(args, key, None) not in (None, False, [])]
    if given:
        raise IRCError(f"{', '.join(given)} cannot change a compiled program", file=args.model,
                       hint="these are set when compiling: run the model file itself, or `irc compile` it again")
    if args.target and args.target != prog.target:
        raise IRCError(f"the artifact is a {prog.target} program; --target {args.target} cannot change it",
                       file=args.model, hint=f"compile the model for {args.target}, or drop --target")


def _check_runnable(target: str) -> None:
    """A target that cannot run on this machine is refused before anything runs."""
    from .registry import backend_for

    ok, why = backend_for(target).available()
    if not ok:
        raise IRCError(f"target {target!r} cannot run here: {why}",
                       hint="`irc compile --emit source` writes its source anyway; `irc targets` lists what runs here")


def _load_model(path: str, args: argparse.Namespace):
    from .driver import load

    kwargs = {}
    if getattr(args, "weights", None):
        kwargs["weights"] = args.weights
    if getattr(args, "dt", None) is not None and path.lower().endswith(".nir"):
        kwargs["dt"] = args.dt
    return load(path, input_shapes=_input_shapes(args), **kwargs)


def _input_shapes(args: argparse.Namespace) -> dict[str | None, tuple[int, ...]] | None:
    """``--input-shape [NAME=]1x3x224x224`` (repeatable) as irc.load's input_shapes."""
    from .shapes import parse_input_shape

    shapes: dict[str | None, tuple[int, ...]] = {}
    for text in getattr(args, "input_shape", None) or []:
        name, sizes = parse_input_shape(text)
        if name in shapes:
            raise IRCError(f"--input-shape is given twice for {name or 'the input'}")
        shapes[name] = sizes
    return shapes or None


def _compile(path: str, args: argparse.Namespace):
    from .driver import compile as irc_compile

    print_ir = (lambda text: print(text, file=sys.stderr)) if getattr(args, "print_ir", False) else None
    return irc_compile(_load_model(path, args), target=args.target or "numpy", print_ir=print_ir,
                       **_target_options(args))


# ------------------------------------------------------------------ commands
def cmd_compile(args: argparse.Namespace) -> int:
    check_writable(args.output)
    prog = _compile(args.model, args)
    if hasattr(prog, "specialised"):  # its input sizes are not known: nothing to write yet
        prog.refuse(f"write --emit {args.emit} for")
    out = args.output
    if args.emit == "ir":
        from .text import print_graph

        with open(out, "w") as f:
            f.write(print_graph(prog.graph))
        print(f"wrote {out} (IR after the {prog.target} pipeline)")
    elif args.emit == "nir":
        from .backends.nir_export import to_nir

        to_nir(prog, out, lossy=args.lossy, **({} if args.dt is None else {"dt": args.dt}))
        print(f"wrote {out} (NIR graph of the {prog.target} program)")
    elif args.emit == "source":
        if prog.source is None:
            raise IRCError(f"target {prog.target!r} generates no source")
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
    """Stream the inputs through the program, here or on a Dask cluster (see irc.evaluation)."""
    from .evaluation import evaluate
    from .stream import open_source

    if not os.path.exists(args.model):
        raise IRCError("file not found", file=args.model)
    if args.scheduler and args.workers is not None:
        raise IRCError("give --scheduler (an existing cluster) or --workers (one on this machine), not both")
    client = None
    if args.scheduler or args.workers is not None:
        from . import distributed  # an IRCError saying how to install it when dask is missing

        if args.workers is not None and args.workers < 1:
            raise IRCError(f"--workers must be at least 1, got {args.workers}")
        if args.scheduler:
            client = distributed.connect(args.scheduler)  # fail fast, before compiling anything
    for path in (args.output, getattr(args, "plot", None)):
        if path:
            check_writable(path)
    if getattr(args, "plot", None):
        from .report import require_matplotlib

        require_matplotlib()
    if args.batch_size is not None and args.batch_size < 1:
        raise IRCError(f"--batch-size must be at least 1, got {args.batch_size}")
    try:
        if _is_artifact(args.model):
            from .program import load_program

            prog = load_program(args.model)
            _refuse_compile_flags(args, prog)
            _check_runnable(prog.target)
            how = "artifact"
        else:
            _check_runnable(args.target or "numpy")
            prog = _compile(args.model, args)
            how = "compiled on the fly"
        if args.timesteps and not getattr(prog, "spiking", False):
            raise IRCError(f"--timesteps applies to spiking programs; this one is a {prog.target} program",
                           hint="compile it for spike-numpy or spike-llvm (with --calibration)")
        source = open_source(args.input, prog.graph.inputs, args.labels)
        if source.samples == 0:
            raise IRCError("the input holds no samples", file=args.input)
        print(f"model: {args.model} ({how}), target: {prog.target}, samples: {source.samples}")
        with _cluster(args, client) as cluster:
            if cluster is not None:
                print(f"dask: {distributed.describe(cluster)}")
            if getattr(prog, "spiking", False):
                from .report import run_spiking

                return run_spiking(prog, source, args, cluster)
            result = evaluate(prog, source, batch_size=args.batch_size, client=cluster, scores_path=args.output,
                              progress=not args.quiet, label="running")
    finally:
        if client is not None:
            client.close()
    n = result.samples
    print(f"time: {result.elapsed_s * 1e3:.1f} ms total, {result.elapsed_s / max(n, 1) * 1e3:.4f} ms per sample")
    point = result.points[-1]
    if point.correct is not None:
        print(f"accuracy: {100.0 * point.correct / n:.2f}% ({point.correct}/{n})")
    else:
        preds = result.predictions[None]
        shown = " ".join(str(p) for p in preds[:20])
        print(f"predictions: {shown}{' ...' if len(preds) > 20 else ''}")
    from .report import print_cluster_notes

    print_cluster_notes(result)
    if args.output:
        print(f"wrote {args.output} (scores)")
    return 0


def _cluster(args: argparse.Namespace, client):
    """The client to run on: the given one, a LocalCluster of --workers processes, or None (here)."""
    from contextlib import nullcontext

    if args.workers is not None:
        from .distributed import local_cluster

        return local_cluster(args.workers)
    return nullcontext(client)


def check_writable(path: str) -> None:
    """An output path irc can write: checked before any long work, so a typo costs nothing."""
    full = os.path.abspath(path)
    folder = os.path.dirname(full)
    if os.path.isdir(full):
        raise IRCError("is a folder; give a file name to write", file=path)
    if not os.path.isdir(folder):
        raise IRCError("the folder to write it in does not exist", file=path, hint=f"create it: mkdir -p {folder}")
    if not os.access(folder, os.W_OK) or (os.path.exists(full) and not os.access(full, os.W_OK)):
        raise IRCError("cannot write here (permission denied)", file=path)


def cmd_inspect(args: argparse.Namespace) -> int:
    from .analysis import layer_table

    graph = _load_model(args.model, args)
    if graph.meta.get("unspecialised"):
        print(f"{graph.name}: inputs " + ", ".join(f"{v.name} {v.type}" for v in graph.inputs))
        print("the input sizes are not known yet, so the layers are not lowered: give --input-shape "
              "NAME=1x3x224x224")
        return 0
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

    import textwrap

    for name in TARGETS:
        backend = backend_for(name)
        ok, why = backend.available()
        status = "available" if ok else f"unavailable: {why}"
        print(f"{name:12s} {status}")
        print(f"{'':12s} {backend.summary}")
        print(f"{'':12s} options (-O key=value):")
        for key, opt in sorted(backend.options.items()):
            print(f"{'':14s} {key:16s} {opt.describe()}: {opt.help}")
        ops = backend.lowering_table().ops() if backend.lowering_table() is not None else []
        if ops and getattr(args, "ops", False):
            print(textwrap.fill("ops: " + ", ".join(ops), width=110, initial_indent=" " * 13,
                                subsequent_indent=" " * 18))
    return 0


# ------------------------------------------------------------------- parser
def _add_target_flags(p: argparse.ArgumentParser, default_target: str) -> None:
    p.add_argument("--target", "-t", help=f"target (default {default_target}; see `irc targets`)")
    p.add_argument("--weights", help="directory of weight files (N2D2 INI models)")
    p.add_argument("--input-shape", action="append", metavar="[NAME=]1x3x224x224",
                   help="sizes of an input's symbolic dims (repeatable; NAME optional with one input)")
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
    p.add_argument("--input", "-i", required=True,
                   help=".npy (memory-mapped) or .npz inputs, or a folder of .npy/.npz shards; read one batch at a "
                        "time (an .npz may also hold labels 'y')")
    p.add_argument("--labels", "-l", help=".npy/.npz class labels")
    p.add_argument("--batch-size", type=int, help="samples per batch (default: up to 1024, under 64 MiB of input)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the batches on this Dask cluster (tcp://host:8786; pip install 'irc-compiler[cluster]')")
    p.add_argument("--workers", type=int, metavar="N",
                   help="run the batches on N worker processes of a Dask LocalCluster started for this run")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    p.add_argument("--output", help="save the output scores to this .npy")
    p.add_argument("--plot", help="spiking: draw accuracy against timesteps and firing rates to this .png")
    p.add_argument("--no-analog", action="store_true", help="spiking: skip the analog comparison run")
    _add_target_flags(p, "numpy")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("inspect", help="table of layers, shapes, parameters and MACs")
    p.add_argument("model")
    p.add_argument("--weights", help="directory of weight files (N2D2 INI models)")
    p.add_argument("--input-shape", action="append", metavar="[NAME=]1x3x224x224",
                   help="sizes of an input's symbolic dims (repeatable; NAME optional with one input)")
    p.add_argument("--after", help="show the graph after a pipeline (e.g. analog)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("targets", help="list targets, whether they can run here, and their options")
    p.add_argument("--ops", action="store_true", help="also list the ops each target runs")
    p.set_defaults(func=cmd_targets)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """irc's own warnings as one line each; others as Python prints them."""
    from .errors import IRCWarning

    if issubclass(category, IRCWarning):
        print(f"irc: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(_python_showwarning_format(message, category, filename, lineno, line))


def _python_showwarning_format(message, category, filename, lineno, line) -> str:
    import warnings

    return warnings.formatwarning(message, category, filename, lineno, line)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        return args.func(args)
    except IRCError as e:
        print(f"irc: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("irc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output went to `head` or a closed pipe
        sys.stderr.close()
        return 0
    except MemoryError:
        print("irc: error: out of memory; try a smaller --batch-size", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
