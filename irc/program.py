"""Programs (what a backend builds) and their on-disk artifact.

A :class:`Program` runs the lowered IR on inputs given in the source model's
layout.  ``prog.save(path)`` writes a versioned zip bundle:

* ``manifest.json``: format name and version, irc version, target, options,
  the inputs and outputs, and a sha256 of every other member;
* ``graph.ir``: the lowered IR as text;
* ``weights.npz``: the parameters (read back with ``allow_pickle=False``);
* the generated source, if the target has one (for people to read).

``load_program`` checks the format, version and hashes, parses the IR and
rebuilds the program from it with the same backend.  The stored source is
compared with the regenerated one but never executed: an artifact is data,
so a crafted one cannot run code.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from typing import Any, Mapping

import numpy as np

from . import __version__
from .errors import IRCError
from .meta import check_meta
from .feeds import batch_size, bind_inputs, fixed_rows
from .graph import Graph

FORMAT = "irc-program"
FORMAT_VERSION = 2
"""2: the manifest carries ``manifest_sha256``, a hash of its own other fields (version 1 artifacts, which have
none, still load; their manifest is validated all the same)."""


class Program:
    """A compiled network: ``run`` it, read ``stats``, ``save`` it."""

    target: str = ""
    source_suffix: str = ""

    def __init__(self, graph: Graph, options: Mapping[str, Any], source: str | None = None,
                 companions: Mapping[str, Graph] | None = None):
        self.graph = graph
        self.options = dict(options)
        self.source = source
        self.stats: dict[str, Any] = {}
        self.companions: dict[str, Graph] = dict(companions or {})
        """Other graphs saved with the program (a spiking program keeps its analog network)."""

    # ------------------------------------------------------------------ run
    def run(self, *inputs: Any, batch_size: int | None = None, progress=None, **named: Any):
        """Run on a batch; returns one array per graph output (a single array if there is one).

        Large batches are processed in chunks of ``batch_size`` (the
        ``batch_size`` compile option by default) so memory stays bounded.
        """
        feeds = bind_inputs(self.graph, inputs, named)
        n = _batch(self.graph, feeds)
        chunk = fixed_rows(self.graph) or batch_size or self.options.get("batch_size") or n or 1
        parts: list[list[np.ndarray]] = []
        self._begin_run(n)
        for start in range(0, max(n, 1), chunk):
            sub = {k: (v[start:start + chunk] if self._batched(k) else v) for k, v in feeds.items()}
            parts.append(self._run_chunk(sub, start))
            if progress is not None:
                progress(min(start + chunk, n), n)
        outs = [np.concatenate([p[i] for p in parts], axis=0) if len(parts) > 1 else parts[0][i]
                for i in range(len(parts[0]))]
        # outputs the source model gives time-major: the IR holds every batch first (frontends/onnx_timemajor.py)
        for i, axis in enumerate(self.graph.meta.get("output_batch_axes") or []):
            if axis and i < len(outs):
                outs[i] = np.moveaxis(outs[i], 0, axis)
        self._end_run(n)
        return outs[0] if len(outs) == 1 else outs

    def _batched(self, name: str) -> bool:
        """Whether an input is split into chunks: it has a batch axis, or the model a fixed leading one."""
        return fixed_rows(self.graph) is not None or next(
            v for v in self.graph.inputs if v.name == name).type.has_batch

    def _begin_run(self, n: int) -> None:
        """Reset per-run state (statistics) before the first chunk."""

    def _end_run(self, n: int) -> None:
        """Finish per-run state after the last chunk."""

    def _run_chunk(self, feeds: dict[str, np.ndarray], offset: int) -> list[np.ndarray]:
        raise NotImplementedError

    def write_source(self, path: str) -> list[str]:
        """Write the generated source (the target's own language); returns the paths written."""
        if self.source is None:
            raise IRCError(f"target {self.target!r} generates no source")
        with open(path, "w") as f:
            f.write(self.source)
        return [path]

    # ------------------------------------------------------------- describe
    @property
    def inputs(self):
        return self.graph.inputs

    @property
    def outputs(self):
        return self.graph.outputs

    def __repr__(self) -> str:
        return f"<{type(self).__name__} target={self.target} graph={self.graph.name}>"

    # ----------------------------------------------------------------- save
    def save(self, path: str) -> None:
        from .text import print_graph

        members: dict[str, bytes] = {"graph.ir": print_graph(self.graph).encode(),
                                     "weights.npz": _npz(self.graph)}
        for name, g in self.companions.items():
            members[f"{name}.ir"] = print_graph(g).encode()
            members[f"{name}.npz"] = _npz(g)
        if self.source is not None:
            members["program" + self.source_suffix] = self.source.encode()
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "irc_version": __version__,
            "target": self.target,
            "options": _jsonable(self.options),
            "inputs": [{"name": v.name, "type": str(v.type)} for v in self.graph.inputs],
            "outputs": [{"name": v.name, "type": str(v.type)} for v in self.graph.outputs],
            "sha256": {k: hashlib.sha256(v).hexdigest() for k, v in members.items()},
        }
        sign_manifest(manifest)
        tmp = path + ".tmp"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("manifest.json", json.dumps(manifest, indent=2))
            for k, v in members.items():
                z.writestr(k, v)
        os.replace(tmp, path)


def _npz(graph: Graph) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **{f"p{i}": arr for i, arr in enumerate(graph.params.values())})
    return buf.getvalue()


def _read_graph(members: dict[str, bytes], ir: str, npz: str, path: str) -> Graph:
    from .text import parse_graph

    arrays = _read_npz(members[npz], npz, path)
    try:
        text = members[ir].decode("utf-8")
    except UnicodeDecodeError as e:
        raise IRCError(f"{ir} is not UTF-8 text ({e.reason} at byte {e.start})", file=path,
                       hint="the artifact is damaged; compile the model again") from None
    try:
        return parse_graph(text, arrays)
    except IRCError as e:
        if e.line is not None and e.file is None:  # a line of the member, not of the zip file itself
            e.message = f"{ir} line {e.line}: {e.message}"
            e.line = None
        raise e.with_file(path)


def _read_npz(data: bytes, npz: str, path: str) -> list[np.ndarray]:
    """The parameters p0, p1, ... of an .npz member, each array's declared shape checked (irc.limits) before
    it is read; pickled objects are refused."""
    from .limits import WeightBudget, check_shape

    budget = WeightBudget(npz, file=path)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            arrays = []
            for i in range(len(names)):
                with z.open(f"p{i}.npy") as f:
                    version = np.lib.format.read_magic(f)
                    shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0) else
                                       np.lib.format.read_array_header_2_0(f))
                    check_shape(shape, f"array p{i} of {npz}", itemsize=dtype.itemsize or 1, file=path)
                    budget.add(int(np.prod(shape, dtype=np.float64)) * dtype.itemsize)
                with z.open(f"p{i}.npy") as f:
                    arrays.append(np.lib.format.read_array(f, allow_pickle=False))
    except IRCError:
        raise
    except Exception as e:  # zip, header and data errors of a damaged member; pickles
        raise IRCError(f"cannot read {npz} ({type(e).__name__}: {e})", file=path) from None
    return arrays


def _batch(graph: Graph, feeds: Mapping[str, np.ndarray]) -> int:
    return batch_size(graph, feeds)


def _jsonable(options: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in options.items():
        if isinstance(v, np.ndarray):
            continue  # calibration data is folded into the IR, not stored
        if isinstance(v, (np.integer, np.floating)):
            v = v.item()
        out[k] = v
    json.dumps(out)
    return out


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """sha256 of a manifest's fields but ``manifest_sha256`` (canonical JSON: sorted keys, no spaces)."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def sign_manifest(manifest: dict[str, Any]) -> None:
    """Set ``manifest_sha256`` so that a changed target, option or hash table is detected on load."""
    manifest["manifest_sha256"] = manifest_digest(manifest)


_HEX64 = frozenset("0123456789abcdef")


def _check_manifest(manifest: Any, path: str) -> dict[str, Any]:
    """The manifest checked against its schema (types, choices, ranges) and its own hash; one IRCError each."""
    from .limits import MAX_STRING
    from .registry import TARGETS

    def bad(why: str) -> IRCError:
        return IRCError(f"the manifest {why}: the artifact was modified or is damaged", file=path,
                        hint="compile the model again with `irc compile`")

    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IRCError("not an irc program artifact (wrong format name)", file=path)
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise bad(f"has format_version {version!r}; it must be an integer from 1 to {FORMAT_VERSION}")
    if version > FORMAT_VERSION:
        raise IRCError(f"the artifact has format version {version}; this irc reads up to {FORMAT_VERSION}",
                       file=path, hint="upgrade irc, or compile the model again with this version")
    if version >= 2 or "manifest_sha256" in manifest:
        if manifest.get("manifest_sha256") != manifest_digest(manifest):
            raise IRCError("the manifest does not match its hash: the artifact was modified or corrupted",
                           file=path)
    if manifest.get("target") not in TARGETS:
        raise bad(f"names target {manifest.get('target')!r}, which is not one of {', '.join(TARGETS)}")
    if not isinstance(manifest.get("irc_version", ""), str) or len(manifest.get("irc_version", "")) > 100:
        raise bad("has an irc_version that is not a short string")
    if not isinstance(manifest.get("options", {}), dict):
        raise bad("has options that are not a mapping")
    hashes = manifest.get("sha256")
    if not isinstance(hashes, dict) or not all(
            isinstance(k, str) and len(k) <= MAX_STRING.value and isinstance(v, str) and len(v) == 64
            and set(v) <= _HEX64 for k, v in hashes.items()):
        raise bad("has no table of member hashes (sha256: {name: 64 hex digits})")
    for key in ("inputs", "outputs"):
        ports = manifest.get(key, [])
        if not isinstance(ports, list) or not all(
                isinstance(p, dict) and isinstance(p.get("name"), str) and isinstance(p.get("type"), str)
                for p in ports):
            raise bad(f"has {key} that are not a list of {{name, type}}")
    return manifest


def _check_ports(manifest: dict[str, Any], graph: Graph, path: str) -> None:
    """The manifest's inputs and outputs are the graph's (a manifest edited to lie about them is refused)."""
    for key, values in (("inputs", graph.inputs), ("outputs", graph.outputs)):
        if key in manifest and [(p["name"], p["type"]) for p in manifest[key]] != \
                [(v.name, str(v.type)) for v in values]:
            raise IRCError(f"the manifest's {key} do not match the stored IR: the artifact was modified",
                           file=path)


def load_program(path: str) -> Program:
    """Load a program saved with :meth:`Program.save`."""
    from .registry import backend_for

    if not os.path.exists(path):
        raise IRCError("file not found", file=path)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as e:  # damaged headers
        raise IRCError(f"not an irc program artifact ({e})", file=path,
                       hint="the file may be truncated; compile it again with `irc compile`") from None
    with z:
        try:
            manifest = json.loads(_read_member(z, "manifest.json", path))
        except IRCError:
            raise
        except Exception as e:
            raise IRCError(f"the artifact is damaged ({e})", file=path) from None
        manifest = _check_manifest(manifest, path)
        members: dict[str, bytes] = {}
        for name, digest in manifest["sha256"].items():
            data = _read_member(z, name, path)
            if hashlib.sha256(data).hexdigest() != digest:
                raise IRCError(f"member {name!r} does not match its hash: the artifact was modified or corrupted",
                               file=path)
            members[name] = data
    for required in ("graph.ir", "weights.npz"):
        if required not in members:
            raise IRCError(f"the artifact lacks {required}", file=path)
    graph = _read_graph(members, "graph.ir", "weights.npz", path)
    _check_ports(manifest, graph, path)
    try:
        check_meta(graph)
    except IRCError as e:
        raise e.with_file(path)
    companions = {k[:-3]: _read_graph(members, k, k[:-3] + ".npz", path)
                  for k in members if k.endswith(".ir") and k != "graph.ir" and k[:-3] + ".npz" in members}
    from .passes import PassContext

    backend = backend_for(manifest["target"])()
    try:
        options = backend.check_options(manifest.get("options", {}))
    except IRCError as e:
        raise IRCError(f"the manifest's options are invalid ({e.message})", file=path,
                       hint="the artifact was modified or is damaged; compile the model again") from None
    ctx = PassContext(analog_graph=companions.get("analog"))
    try:
        prog = backend.build(graph, options, ctx=ctx)
    except IRCError as e:
        raise e.with_file(path)
    stored = next((members[k] for k in members if k.startswith("program")), None)
    if stored is not None and prog.source is not None and stored != prog.source.encode():
        if manifest.get("irc_version") == __version__:
            raise IRCError("the stored source does not match its IR: the artifact was modified", file=path)
    return prog


def _read_member(z: zipfile.ZipFile, name: str, path: str) -> bytes:
    """One member of the zip, its declared size checked (irc.limits) before it is inflated."""
    from .limits import MAX_WEIGHT_BYTES

    try:
        info = z.getinfo(name)
    except KeyError:
        raise IRCError(f"the artifact has no {name}" if name == "manifest.json" else
                       f"member {name!r} is missing", file=path) from None
    MAX_WEIGHT_BYTES.check(info.file_size, f"member {name!r}", file=path)
    try:
        return z.read(name)
    except Exception as e:  # zlib.error, BadZipFile, NotImplementedError, CRC errors, EOFError
        raise IRCError(f"member {name!r} is missing or damaged ({e})", file=path) from None
