"""Keras frontend: Keras 3 ``.keras`` archives and legacy ``.h5`` files, read with zipfile, json and h5py.

No TensorFlow and no Keras at run time, and nothing from the file is executed:
the model is its ``config.json`` (or the ``model_config`` attribute) plus
h5py datasets.

Weights.  A ``.keras`` archive names its weight groups by snake_case class
name plus a counter per container, in layer order (``layers/conv2d_1/vars/0``
may belong to the layer called ``conv2d_7``), so they are matched by order
exactly as Keras's own loader does.  A legacy ``.h5`` lists each top-level
layer's datasets in its ``weight_names`` attribute, in Keras's legacy order
(trainable variables first), which for a nested model interleaves its layers'
variables; the variables are put back in place by the same rule and their
names checked.  Nested models (a Sequential or Functional model used as a
layer) are flattened into the one graph; a layer called several times (a
shared layer) is lowered once per call, with its parameters shared.

Layout.  ``run`` takes exactly what ``model.predict`` takes, so graph inputs
keep Keras's layout (channels-last for the usual models).  Every tensor
remembers which Keras axis each IR axis holds; a layer that needs another
arrangement (Conv and pooling want the IR's channels-first one, Flatten and
Reshape want Keras's own order) gets an explicit Transpose, made once per
value and arrangement.  Outputs come back in Keras's layout.  ``data_format``
is honoured per layer, so channels-first models load too.
``passes/layout.py`` (``fold_transposes``) folds the transpose in front of a
Flatten -> Dense into the Dense's weights.

Everything is float32.  A layer option without an exact IR equivalent is
refused, listed with every other unsupported layer in one error.
"""
from __future__ import annotations

import io
import json
import os
import re
import time
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Union

import numpy as np

from irc.errors import IRCError, UnsupportedError
from irc.graph import Graph, Value
from irc.limits import MAX_NODES, MAX_READ_SECONDS, MAX_TEXT_BYTES, check_shape
from irc.ops import same_pads
from irc.shapes import bind_shapes, is_free, stub_graph, symbol_name
from irc.types import BATCH, TensorType

CONTAINERS = ("Sequential", "Functional", "Model")
"""Model classes whose config lists layers (nested models are flattened)."""

LayerEntry = dict
"""One entry of a config's ``layers`` list: class_name, config, inbound_nodes."""

Ref = tuple[str, int, int]
"""A Keras tensor reference: (layer name, call index, output index)."""

Operand = Union[Ref, np.ndarray]
"""A positional argument of a layer call: a tensor reference, or a constant (``keras.ops.add(x, 3.0)``)."""

Weights = dict[str, np.ndarray]
"""A layer's arrays by variable role ('kernel', 'bias', 'moving_mean', ...)."""


def load(path: str, input_shapes: dict | None = None, **options: Any) -> Graph:
    """Read a Keras model file (.keras archive, or legacy .h5/.hdf5) into a Graph; ``input_shapes`` binds
    ``None`` sizes of the inputs (irc/shapes.py)."""
    if options:
        raise IRCError(f"the Keras frontend takes no options but input_shapes, got {sorted(options)}", file=path)
    if not os.path.exists(path):
        raise IRCError("file not found", file=path)
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        return Lowering(read_model(path), name, input_shapes).run()
    except IRCError as e:
        raise e.with_file(path)
    except RecursionError:  # a config of models nested thousands deep (JSON parsing or the layer walk)
        raise IRCError("the model config nests models or lists too deeply to read", file=path,
                       hint=DAMAGED) from None


def read_model(path: str) -> "KerasModel":
    """By suffix: .keras is an archive, .h5/.hdf5 legacy HDF5; anything else by its content."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".keras" or (suffix not in (".h5", ".hdf5") and zipfile.is_zipfile(path)):
        return read_isolated(read_archive, path)
    return read_isolated(read_legacy_h5, path)


def read_isolated(reader: Callable[[str], "KerasModel"], path: str) -> "KerasModel":
    """``reader(path)`` in a forked child under a time limit (irc.limits.MAX_READ_SECONDS).

    libhdf5 can loop forever or crash inside C on a damaged file (a corrupt global heap while reading a string
    attribute, say), where no Python signal reaches it; in a child that becomes one IRCError.  Where fork is
    not available (or ``IRC_H5_IN_PROCESS=1``) the reader runs here."""
    import pickle
    import select
    import signal

    import h5py  # noqa: F401  (imported once here, not in every child)

    if os.environ.get("IRC_H5_IN_PROCESS", "") not in ("", "0") or not hasattr(os, "fork"):
        return reader(path)
    limit = MAX_READ_SECONDS.value
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(rfd)
        _read_in_child(reader, path, wfd)
    os.close(wfd)
    chunks: list[bytes] = []
    try:
        with os.fdopen(rfd, "rb") as pipe:
            deadline = time.monotonic() + limit
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([pipe], [], [], left)[0]:
                    os.kill(pid, signal.SIGKILL)
                    raise IRCError(f"reading the file's HDF5 data did not finish within {limit} s (libhdf5 is "
                                   "stuck in a damaged file)", hint="save the model again; if the file is fine "
                                   f"and only huge, raise {MAX_READ_SECONDS.env}")
                chunk = pipe.read1(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        _, status = os.waitpid(pid, 0)
    try:
        kind, payload = pickle.loads(b"".join(chunks))
    except Exception:  # noqa: BLE001  (nothing or half a message: the child died inside libhdf5)
        raise IRCError(f"libhdf5 crashed reading the file (status {status})",
                       hint="the file is damaged; save the model again") from None
    if kind == "error":
        cls, fields = payload
        raise cls(fields.pop("message"), **fields)
    config, by_index, version = payload
    layers = [config, *all_layers(config)]
    return KerasModel(config, {id(layers[i]): arrays for i, arrays in by_index.items()}, version)


def _read_in_child(reader: Callable[[str], "KerasModel"], path: str, wfd: int) -> None:
    """The child's side of read_isolated: a KerasModel (weights keyed by layer position) or an IRCError."""
    import pickle

    try:
        try:
            model = reader(path)
            index = {id(layer): i for i, layer in enumerate([model.config, *all_layers(model.config)])}
            msg = ("ok", (model.config, {index[k]: v for k, v in model.weights.items()}, model.keras_version))
        except IRCError as e:
            msg = ("error", (type(e), {"message": e.message, "file": e.file, "node": e.node, "line": e.line,
                                       "hint": e.hint}))
        except BaseException as e:  # noqa: BLE001  (a bug of irc's: the parent shows it as an IRCError)
            msg = ("error", (IRCError, {"message": f"reading the file failed ({type(e).__name__}: {e})"}))
        with os.fdopen(wfd, "wb") as pipe:
            pipe.write(pickle.dumps(msg, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        os._exit(0)


# =================================================================== the config
DAMAGED = "the file was not written by Keras, or was edited or damaged; save the model again"

MALFORMED = (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError, OverflowError)
"""What reading a config Keras did not write (a missing key, a string for a number) raises in plain Python."""


def malformed(error: Exception, what: str, node: str | None = None) -> IRCError:
    """The IRCError for a config value irc cannot read, keeping the Python error as its cause."""
    detail = f"{type(error).__name__}: {error}"
    return IRCError(f"{what} is malformed ({detail})", node=node,
                    hint=DAMAGED)


def checked_config(fn: Callable) -> Callable:
    """Decorate a reader of the model's structure: malformed entries become one clear IRCError."""
    def reader(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MALFORMED as e:
            raise malformed(e, "the model's layer graph") from e
    reader.__name__, reader.__doc__ = fn.__name__, fn.__doc__
    return reader


def layer_name(layer: LayerEntry) -> str:
    return str(layer.get("config", {}).get("name") or layer.get("name") or "?")


def is_container(layer: LayerEntry) -> bool:
    return layer.get("class_name") in CONTAINERS


def container_layers(model: LayerEntry) -> list[LayerEntry]:
    """The layers a model holds weights for, in order (a Sequential's InputLayer holds none)."""
    layers = model["config"].get("layers", [])
    if model["class_name"] == "Sequential":
        return [layer for layer in layers if layer["class_name"] != "InputLayer"]
    return list(layers)


def all_layers(model: LayerEntry) -> Iterator[LayerEntry]:
    """Every layer of a model, nested models' layers included (depth first)."""
    for layer in model["config"].get("layers", []):
        yield layer
        if is_container(layer):
            yield from all_layers(layer)


def trainable(layer: LayerEntry) -> bool:
    return bool(layer.get("config", {}).get("trainable", True))


def parse_config(raw: bytes | str) -> LayerEntry:
    """The model config from its JSON text, checked to be a model Keras could have saved."""
    MAX_TEXT_BYTES.check(len(raw), "the model config")
    try:
        config = json.loads(raw)
    except RecursionError:
        raise IRCError("the model config nests lists or objects too deeply", hint=DAMAGED) from None
    except (ValueError, TypeError) as e:
        raise IRCError(f"the model config is not valid JSON ({e})", hint="the file may be truncated; save it again")
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise IRCError("the model config is not a Keras model description")
    if config.get("class_name") not in CONTAINERS:
        raise UnsupportedError(f"the file holds a {config.get('class_name')!r}; irc reads Sequential and "
                               "Functional models", hint="subclassed models have no layer graph in the file")
    check_structure(config, "the model")
    return config


def check_structure(model: LayerEntry, where: str) -> None:
    """Every layer entry a dict with a class name, a config dict and a name; functional models their ends."""
    def bad(why: str) -> IRCError:
        return IRCError(f"the model config is malformed: {where} {why}",
                        hint=DAMAGED)

    layers = model["config"].get("layers", [])
    if not isinstance(layers, list):
        raise bad("has a 'layers' entry that is not a list")
    MAX_NODES.check(len(layers), f"{where}'s layer list")
    if model.get("class_name") != "Sequential":
        for key in ("input_layers", "output_layers"):
            if key not in model["config"]:
                raise bad(f"has no {key!r}")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("class_name"), str):
            raise bad(f"has a layer entry {i} without a class name")
        if not isinstance(layer.get("config"), dict):
            raise bad(f"has a {layer['class_name']} layer without a config")
        name = layer["config"].get("name", layer.get("name"))
        if not isinstance(name, str):
            raise bad(f"has a {layer['class_name']} layer without a name (entry {i})")
        if is_container(layer):
            check_structure(layer, f"the nested model {name!r}")


# ================================================================ weight specs
@dataclass(frozen=True)
class Var:
    """One variable a layer stores: its role, whether Keras trains it, names it may be saved under."""

    role: str
    trains: bool = True
    aliases: tuple[str, ...] = ()

    def matches(self, saved_name: str) -> bool:
        """The saved leaf name is this variable's role or an alias; Keras uniquifies unnamed variables
        per session (``variable``, ``variable_1``, ...), so an alias also matches with a numeric suffix."""
        leaf = saved_name.rsplit("/", 1)[-1].split(":")[0]
        if leaf == self.role:
            return True
        base, _, suffix = leaf.rpartition("_")
        return leaf in self.aliases or (suffix.isdigit() and base in self.aliases)


def layer_vars(layer: LayerEntry) -> list[Var]:
    """The variables of a (non-container) layer in Keras's own order (``layer.weights``)."""
    rule = RULES.get(layer["class_name"])
    return rule.variables(layer["config"]) if rule is not None else []


# ========================================================== reading .keras files
def read_archive(path: str) -> "KerasModel":
    """A Keras 3 archive: config.json and model.weights.h5 in a zip."""
    try:
        with zipfile.ZipFile(path) as z:
            members = set(z.namelist())
            if "config.json" not in members:
                raise IRCError("the archive has no config.json: not a Keras model archive")
            config = parse_config(z.read("config.json"))
            check_supported(config)
            if "model.weights.h5" not in members:
                raise UnsupportedError("the archive has no model.weights.h5 (sharded or npz weights are not read)",
                                       hint="save the model with model.save('m.keras')")
            blob = z.read("model.weights.h5")
            version = archive_version(z.read("metadata.json")) if "metadata.json" in members else "3"
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
        raise IRCError(f"not a readable .keras archive ({type(e).__name__}: {e})",
                       hint="the file may be truncated or damaged; save it again") from None
    weights: dict[int, list[np.ndarray]] = {}
    with open_h5(io.BytesIO(blob), "model.weights.h5 in the archive") as f:
        if "layers" not in f or not is_group(f["layers"]):
            raise IRCError("model.weights.h5 has no 'layers' group")
        try:
            read_archive_container(config, f["layers"], "layers", weights)
        except OSError as e:
            raise IRCError(f"the archive's weights are unreadable ({e})") from None
    return KerasModel(config, weights, version)


def archive_version(raw: bytes) -> str:
    """``keras_version`` from an archive's metadata.json ('3' when it is unreadable: only Keras 3 and late
    Keras 2 write archives)."""
    try:
        meta = json.loads(raw)
        return str(meta.get("keras_version", "3")) if isinstance(meta, dict) else "3"
    except (ValueError, TypeError):
        return "3"


def is_group(node: Any) -> bool:
    import h5py

    return isinstance(node, h5py.Group)


def snake_case(class_name: str) -> str:
    """Keras's ``naming.to_snake_case``: how an archive names a layer's weight group."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def archive_keys(layers: list[LayerEntry]) -> list[str]:
    """Group names in Keras's order: class name in snake_case, then _1, _2, ... per repeat."""
    seen: dict[str, int] = {}
    keys = []
    for layer in layers:
        base = snake_case(layer["class_name"])
        keys.append(base if base not in seen else f"{base}_{seen[base] + 1}")
        seen[base] = seen.get(base, -1) + 1
    return keys


def is_operation(layer: LayerEntry) -> bool:
    """A ``keras.ops`` call saved in a functional model (``keras.ops.add(x, 3.0)``): an Operation, not a Layer, so
    Keras gives it no weight group and it does not count in the archive's group names."""
    return str(layer.get("module") or "").startswith(("keras.src.ops.", "keras.ops."))


def read_archive_container(model: LayerEntry, group, where: str, out: dict[int, list[np.ndarray]]) -> None:
    layers = [layer for layer in container_layers(model) if not is_operation(layer)]
    for layer, key in zip(layers, archive_keys(layers)):
        sub = group[key] if key in group else None
        if is_container(layer):
            if not is_group(sub) or "layers" not in sub or not is_group(sub["layers"]):
                raise IRCError(f"no weight group {where}/{key}/layers for the nested model", node=layer_name(layer))
            read_archive_container(layer, sub["layers"], f"{where}/{key}/layers", out)
        else:
            reader = ARCHIVE_READERS.get(layer.get("class_name"), read_archive_vars)
            out[id(layer)] = reader(layer, sub, f"{where}/{key}")


ARCHIVE_READERS: dict[str, "Callable[[LayerEntry, object, str], list[np.ndarray]]"] = {}
"""Layer classes whose archive arrays live elsewhere than their own ``vars`` (filled by keras_structured)."""


def read_archive_vars(layer: LayerEntry, group, where: str) -> list[np.ndarray]:
    """A layer's ``vars/0``, ``vars/1``, ... checked against what its class and options need."""
    wanted = layer_vars(layer)
    stored = group["vars"] if is_group(group) and "vars" in group else {}
    if not is_group(stored) and not isinstance(stored, dict):
        raise IRCError(f"{where}/vars is not a group of arrays", node=layer_name(layer),
                       hint=DAMAGED)
    indices = sorted(int(k) for k in stored.keys() if k.isdigit())
    if indices != list(range(len(wanted))):
        have = ", ".join(f"vars/{i}" for i in indices) or "none"
        raise IRCError(f"{layer['class_name']} needs {len(wanted)} weight array(s) "
                       f"({', '.join(v.role for v in wanted) or 'none'}) in {where}/vars, the file has {have}",
                       node=layer_name(layer),
                       hint="the file is missing weights or was saved with other layer options")
    return [read_array(stored[str(i)], f"{where}/vars/{i}", layer_name(layer)) for i in indices]


# ======================================================== reading legacy .h5 files
def read_legacy_h5(path: str) -> "KerasModel":
    """A legacy HDF5 model: ``model_config`` attribute plus ``model_weights/<layer>`` groups."""
    with open_h5(path, "the file") as f:
        try:
            if "model_config" not in f.attrs:
                raise IRCError("the .h5 file has no model_config: it holds weights only (or is not a Keras file)",
                               hint="save the whole model with model.save('m.keras') or model.save('m.h5')")
            config = parse_config(as_text(f.attrs["model_config"]))
            version = as_text(f.attrs["keras_version"]) if "keras_version" in f.attrs else "2"
            check_supported(config)
            root = f["model_weights"] if "model_weights" in f else f
            weights: dict[int, list[np.ndarray]] = {}
            for layer in container_layers(config):
                weights.update(assign_legacy(layer, stored_arrays(root, layer)))
        except OSError as e:
            raise IRCError(f"the file's weights are unreadable ({e})", hint="the file may be truncated") from None
    return KerasModel(config, weights, version)


class open_h5:
    """``h5py.File`` as a context manager whose errors are IRCErrors: opening, HDF5 errors while reading (a
    damaged file raises KeyError/RuntimeError/OSError from h5py after it opened), and links or storage that
    reach outside the file (external links, external or virtual datasets), which are refused before any read."""

    def __init__(self, source, what: str):
        import h5py

        self.what = what
        try:
            self.file = h5py.File(source, "r")
        except (OSError, ValueError) as e:
            raise IRCError(f"{what} is not a readable HDF5 file ({e})",
                           hint="the file may be truncated or damaged; save it again") from None
        try:
            refuse_outside_links(self.file, what)
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)
            raise

    def __enter__(self):
        return self.file

    def __exit__(self, kind, exc, tb) -> None:
        try:
            self.file.close()
        except Exception:  # noqa: BLE001  (closing a damaged file may fail too; the first error matters)
            pass
        if exc is not None and not isinstance(exc, IRCError) and isinstance(exc, H5_ERRORS) and raised_in_h5py(tb):
            raise IRCError(f"{self.what} is damaged: HDF5 could not read it ({type(exc).__name__}: {exc})",
                           hint="the file may be truncated or damaged; save it again") from None


H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError)
"""What h5py raises on a damaged file after it opened (``Unable to synchronously open object ...``)."""


def raised_in_h5py(tb) -> bool:
    """Whether the innermost frame of a traceback is h5py's (an error about the file, not a bug of irc's)."""
    import traceback

    frames = traceback.extract_tb(tb)
    return bool(frames) and (f"{os.sep}h5py{os.sep}" in frames[-1].filename or frames[-1].filename.startswith("h5py"))


def refuse_outside_links(f, what: str) -> None:
    """Refuse external links and datasets stored outside the file (HDF5 external storage, virtual datasets):
    reading them would make irc read other files' bytes as weights."""
    import h5py

    external: list[str] = []
    hard: list[str] = []
    # the callback only records (opening objects or raising inside h5py's link walk is not allowed)
    f.visititems_links(lambda name, link: (external if isinstance(link, h5py.ExternalLink) else
                                           hard if isinstance(link, h5py.HardLink) else []).append(name))
    problem = None
    if external:
        link = f.get(external[0], getlink=True)
        problem = f"{external[0]!r} is an external link to {link.filename!r}"
    for name in hard:
        obj = f[name]
        if problem is None and isinstance(obj, h5py.Dataset) and (obj.external or obj.is_virtual):
            kind = "a virtual dataset" if obj.is_virtual else "HDF5 external storage"
            problem = f"dataset {name!r} keeps its data outside the file ({kind})"
    if problem:
        raise IRCError(f"{what}: {problem}; irc reads weights only from the file itself",
                       hint="save the model again without external links or external storage")


def as_text(raw: Any) -> str:
    try:
        return raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    except UnicodeDecodeError as e:
        raise IRCError(f"a name or config in the file is not UTF-8 text ({e})",
                       hint="the file may be damaged; save it again") from None


def read_array(node: Any, where: str, layer: str) -> np.ndarray:
    """An HDF5 dataset of numbers as an array; anything else stored there is an IRCError."""
    import h5py

    if not isinstance(node, h5py.Dataset) or not (np.issubdtype(node.dtype, np.number) or node.dtype == bool):
        raise IRCError(f"{where} is not an array of numbers", node=layer,
                       hint=DAMAGED)
    check_shape(node.shape or (), f"dataset {where}", itemsize=node.dtype.itemsize, node=layer)
    try:
        return np.array(node)
    except H5_ERRORS as e:
        raise IRCError(f"dataset {where} is unreadable ({type(e).__name__}: {e})", node=layer,
                       hint="the file may be truncated or damaged; save it again") from None


def h5_name_list(group, attr: str) -> list[str]:
    """A list attribute, also when Keras split it into ``attr0``, ``attr1``, ... (HDF5's 64 kB limit)."""
    if attr in group.attrs:
        value = group.attrs[attr]
        return [as_text(n) for n in (value if isinstance(value, (list, tuple, np.ndarray)) else [value])]
    names: list[str] = []
    k = 0
    while f"{attr}{k}" in group.attrs:
        names += [as_text(n) for n in group.attrs[f"{attr}{k}"]]
        k += 1
    return names


def stored_arrays(root, layer: LayerEntry) -> list[tuple[str, np.ndarray]]:
    """The (name, array) pairs a top-level layer's ``weight_names`` lists, in order."""
    name = layer_name(layer)
    if name not in root:
        return []
    group = root[name]
    if not is_group(group) or not is_group(root):
        raise IRCError(f"model_weights/{name} is not a group of arrays", node=name,
                       hint=DAMAGED)
    out = []
    for wname in h5_name_list(group, "weight_names"):
        if wname not in group:
            raise IRCError(f"weight {wname!r} is listed in weight_names but missing from the file", node=name,
                           hint="the file is damaged; save the model again")
        out.append((wname, read_array(group[wname], f"model_weights/{name}/{wname}", name)))
    return out


@dataclass(frozen=True)
class Slot:
    """Where one stored array goes: a layer and the index of its variable."""

    layer: LayerEntry
    index: int
    var: Var
    trains: bool


def legacy_slots(top: LayerEntry) -> list[Slot]:
    """The variables of a top-level layer in legacy order: trainable ones first, as Keras saves them."""
    slots = list(variable_slots(top, True))
    if not trainable(top):
        return slots
    return [s for s in slots if s.trains] + [s for s in slots if not s.trains]


def variable_slots(layer: LayerEntry, parent_trains: bool) -> Iterator[Slot]:
    """``layer.weights`` order: depth first through nested models (a frozen model freezes its layers)."""
    trains = parent_trains and trainable(layer)
    if is_container(layer):
        for sub in container_layers(layer):
            yield from variable_slots(sub, trains)
        return
    for i, var in enumerate(layer_vars(layer)):
        yield Slot(layer, i, var, trains and var.trains)


def assign_legacy(top: LayerEntry, stored: list[tuple[str, np.ndarray]]) -> dict[int, list[np.ndarray]]:
    """Arrays of one top-level layer (or nested model), put back per layer in Keras's own order."""
    slots = legacy_slots(top)
    if len(slots) != len(stored):
        wanted = ", ".join(f"{layer_name(s.layer)}/{s.var.role}" for s in slots) or "none"
        raise IRCError(f"the file stores {len(stored)} weight array(s) for this layer, {len(slots)} expected "
                       f"({wanted})", node=layer_name(top),
                       hint="the file is missing weights or was saved with other layer options")
    per_layer: dict[int, list[Any]] = {}
    for slot, (saved_name, array) in zip(slots, stored):
        if not slot.var.matches(saved_name):
            raise IRCError(f"weight {saved_name!r} is where {layer_name(slot.layer)}/{slot.var.role} was expected",
                           node=layer_name(top), hint="the weights are not in the order Keras saves them")
        arrays = per_layer.setdefault(id(slot.layer), [None] * len(layer_vars(slot.layer)))
        arrays[slot.index] = array
    return per_layer


# ==================================================================== support
def check_supported(config: LayerEntry) -> None:
    """One error listing every layer irc cannot lower exactly (before any weight is read)."""
    problems = [f"{layer['class_name']} {layer_name(layer)!r}" + (f" ({why})" if why else "")
                for layer in all_layers(config) if not is_container(layer)
                for why in layer_problems(layer)]
    if problems:
        raise UnsupportedError(f"{len(problems)} unsupported layer(s): " + "; ".join(problems),
                               hint="irc reads these Keras layers: " + ", ".join(sorted(RULES)))


def layer_problems(layer: LayerEntry) -> list[str]:
    """Why a layer cannot be lowered ('' for an unknown class); empty when it can."""
    cls, cfg = layer["class_name"], layer.get("config", {})
    if cls == "InputLayer":
        return []
    if cls not in RULES:
        return [""]
    try:
        return config_problems(cls, cfg)
    except MALFORMED as e:
        raise malformed(e, f"the config of {cls} {layer_name(layer)!r}", layer_name(layer)) from e


def config_problems(cls: str, cfg: dict) -> list[str]:
    """The options of a known layer class that irc cannot lower (plain Python errors on a malformed config)."""
    problems = []
    policy = dtype_policy(cfg)
    if policy != "float32":
        problems.append(f"dtype policy {policy!r}; irc computes in float32, save the model with 'float32'")
    if cfg.get("data_format") not in (None, "channels_last", "channels_first"):
        problems.append(f"data_format {cfg['data_format']!r}")
    if cfg.get("quantization_config"):
        problems.append("quantized")
    if "activation" in cfg and activation_name(cfg["activation"]) not in ACTIVATIONS:
        problems.append(f"activation {activation_name(cfg['activation'])!r}; supported: {', '.join(ACTIVATIONS)}")
    problems += RULES[cls].check(cfg)
    return problems


def dtype_policy(cfg: dict) -> str:
    d = cfg.get("dtype")
    if d is None:
        return "float32"
    if isinstance(d, dict):
        return str(d.get("config", {}).get("name", "float32"))
    return str(d)


def activation_name(spec: Any) -> str:
    """The name of a serialized activation (a string, or a dict naming a built-in function)."""
    if spec is None:
        return "linear"
    if isinstance(spec, dict):
        inner = spec.get("config")
        if not isinstance(inner, str):
            return str(spec.get("class_name", "?"))
        module, registered = spec.get("module"), spec.get("registered_name")
        if module not in (None, "keras.activations", "keras.src.activations") or registered not in (
                None, "function", inner):
            return f"{inner} (a custom function {registered or module!s})"   # never a built-in by name alone
        return inner
    return str(spec)


# ===================================================================== model
@dataclass
class KerasModel:
    """What the file holds: the model config and each layer's arrays (by ``id`` of its config entry)."""

    config: LayerEntry
    weights: dict[int, list[np.ndarray]]
    keras_version: str = "3"
    """Which Keras wrote the file: ``hard_sigmoid`` changed in Keras 3 (relu6(x + 3) / 6, was 0.2 x + 0.5)."""

    @property
    def keras2(self) -> bool:
        return self.keras_version.split(".")[0] in ("1", "2")


@dataclass(frozen=True)
class Tensor:
    """A Keras tensor in the IR: ``value`` holds Keras axis ``axes[i]`` on its axis i."""

    value: Value
    axes: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.axes)

    @property
    def shape(self) -> tuple:
        return self.value.type.shape


def keras_order(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def channels_first(rank: int, data_format: str | None) -> tuple[int, ...]:
    """The arrangement the IR's Conv/Pool want: batch, channels, then the spatial axes in order."""
    if rank < 3 or data_format == "channels_first":
        return keras_order(rank)
    return (0, rank - 1) + tuple(range(1, rank - 1))


def spatial_axes(rank: int, data_format: str | None) -> list[int]:
    """The Keras axes that are spatial for a layer's data_format."""
    return list(range(2, rank)) if data_format == "channels_first" else list(range(1, rank - 1))


class Lowering:
    """Builds the graph: inputs, one call per Keras layer call, outputs in Keras's layout."""

    def __init__(self, model: KerasModel, name: str, input_shapes: dict | None = None):
        self.model = model
        self.graph = Graph(name)
        self.input_shapes = input_shapes
        self._arranged: dict[tuple[int, tuple[int, ...]], Tensor] = {}
        self._params: dict[tuple, tuple[np.ndarray, Value]] = {}

    def run(self) -> Graph:
        config = self.model.config
        declared = [(name, self.declared_dims(name, shape)) for name, shape in input_specs(config)]
        bound = bind_shapes(declared, self.input_shapes)
        if any(is_free(dims) for dims in bound.values()):  # None sizes not known yet: lowered once they are
            stub = stub_graph(self.graph.name, list(bound.items()), {n: "f32" for n, _ in declared}, "keras")
            stub.origin["declared_inputs"] = declared
            return stub
        self.graph.origin["declared_inputs"] = declared
        outputs = self.call_model(config, [self.graph_input(name, list(dims)) for name, dims in bound.items()])
        for t in outputs:
            self.graph.outputs.append(self.arrange(t, keras_order(t.rank)).value)
        if not self.graph.outputs:
            raise IRCError("the model has no outputs, so there is nothing to compute", hint=DAMAGED)
        self.graph.prune()
        self.graph.meta["source_format"] = "keras"
        return self.graph

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def declared_dims(name: str, batch_shape: list) -> tuple:
        """The input's dims: the batch, then its sizes, a ``None`` size as a symbol (bound by input_shapes)."""
        dims = list(batch_shape)[1:] if isinstance(batch_shape, (list, tuple)) else [None]
        if any(type(d) is int and d <= 0 for d in dims):
            raise IRCError(f"input {name!r} has a size {list(batch_shape)} that is not positive")
        if any(type(d) is not int and d is not None for d in dims):
            raise IRCError(f"input {name!r} has a size {list(batch_shape)} that is not a number")
        return (BATCH, *(symbol_name("", i + 1) if d is None else d for i, d in enumerate(dims)))

    def graph_input(self, name: str, batch_shape: list) -> Tensor:
        dims = list(batch_shape)[1:]
        v = self.graph.add_input(name, TensorType((BATCH, *dims)))
        return Tensor(v, keras_order(len(dims) + 1))

    # -------------------------------------------------------------- containers
    def call_model(self, model: LayerEntry, args: list[Tensor]) -> list[Tensor]:
        if model["class_name"] == "Sequential":
            return self.call_sequential(model, args)
        return self.call_functional(model, args)

    def call_sequential(self, model: LayerEntry, args: list[Tensor]) -> list[Tensor]:
        if len(args) != 1:
            raise IRCError(f"the Sequential model {layer_name(model)!r} is called with {len(args)} inputs")
        t = args[0]
        for layer in container_layers(model):
            outs = self.call_layer(layer, [t])
            if len(outs) != 1:
                raise UnsupportedError(f"layer {layer_name(layer)!r} has {len(outs)} outputs inside a Sequential")
            t = outs[0]
        return [t]

    def call_functional(self, model: LayerEntry, args: list[Tensor]) -> list[Tensor]:
        cfg = model["config"]
        inputs = refs_of(cfg["input_layers"])
        if len(inputs) != len(args):
            raise IRCError(f"the model {layer_name(model)!r} takes {len(inputs)} inputs, it is called with {len(args)}")
        produced: dict[tuple[str, int], list[Tensor]] = {(name, 0): [t] for (name, _, _), t in zip(inputs, args)}
        calls = [(layer, k, operands) for layer in cfg["layers"] if layer["class_name"] != "InputLayer"
                 for k, operands in enumerate(inbound_calls(layer))]
        while calls:
            ready = [c for c in calls if all((o[0], o[1]) in produced for o in c[2] if isinstance(o, tuple))]
            if not ready:
                names = ", ".join(sorted({layer_name(layer) for layer, _, _ in calls}))
                raise IRCError(f"the model {layer_name(model)!r} has layers whose inputs are never computed: {names}")
            for layer, k, operands in ready:
                produced[(layer_name(layer), k)] = self.call_layer(
                    layer, [pick(produced, o) if isinstance(o, tuple) else o for o in operands])
            calls = [c for c in calls if not any(c is r for r in ready)]
        return [pick(produced, r) for r in refs_of(cfg["output_layers"])]

    def call_layer(self, layer: LayerEntry, args: list[Tensor | np.ndarray]) -> list[Tensor]:
        cls = layer["class_name"]
        constants = [a for a in args if isinstance(a, np.ndarray)]
        if constants and not (cls in RULES and RULES[cls].constants):
            raise UnsupportedError(f"{cls} is called with the constant operand {constants[0].tolist()!r}; irc reads "
                                   "constant operands of " + ", ".join(sorted(c for c, r in RULES.items()
                                                                              if r.constants)),
                                   node=layer_name(layer))
        if is_container(layer):
            return self.call_model(layer, args)
        if cls == "InputLayer":
            return args
        try:
            out = RULES[cls].lower(self, layer["config"], args, self.layer_weights(layer))
        except IRCError as e:
            if e.node is None or e.node != layer_name(layer):
                e.node = layer_name(layer)
                e.args = (e.format(),)
            raise
        except MALFORMED as e:
            raise malformed(e, f"the config of this {cls}", layer_name(layer)) from e
        return out if isinstance(out, list) else [out]

    def layer_weights(self, layer: LayerEntry) -> Weights:
        arrays = self.model.weights.get(id(layer), [])
        return {var.role: np.asarray(a, np.float32) for var, a in zip(layer_vars(layer), arrays)}

    # ----------------------------------------------------------------- layout
    def arrange(self, t: Tensor, axes: tuple[int, ...]) -> Tensor:
        """``t`` with its IR axes holding Keras axes ``axes`` (one Transpose, made once per value)."""
        if t.axes == axes:
            return t
        key = (id(t.value), axes)
        if key not in self._arranged:
            perm = [t.axes.index(a) for a in axes]
            label = "nchw" if axes == channels_first(t.rank, "channels_last") else (
                "keras" if axes == keras_order(t.rank) else "t")
            v = self.node("Transpose", [t.value], {"perm": perm}, f"{t.value.name}.{label}")
            self._arranged[key] = Tensor(v, axes)
        return self._arranged[key]

    def channels_first(self, t: Tensor, cfg: dict) -> Tensor:
        """``t`` arranged for the IR's Conv/Pool ops, given the layer's data_format."""
        if t.rank < 3:
            raise IRCError(f"{cfg.get('name')!r} needs an input with spatial axes, got rank {t.rank}")
        return self.arrange(t, channels_first(t.rank, cfg.get("data_format")))

    def same_arrangement(self, args: list[Tensor]) -> list[Tensor]:
        """Inputs of a merge, all arranged alike: as most of them already are (the IR's channels-first
        arrangement on a tie), so that the fewest Transposes are made."""
        if any(t.rank != args[0].rank for t in args):
            raise UnsupportedError(f"merging tensors of ranks {[t.rank for t in args]} (broadcasting) is not supported")
        arrangements = [t.axes for t in args]
        nchw = channels_first(args[0].rank, "channels_last")
        target = max(arrangements, key=lambda axes: (arrangements.count(axes), axes == nchw))
        return [self.arrange(t, target) for t in args]

    @staticmethod
    def ir_axis(t: Tensor, keras_axis: int) -> int:
        if not -t.rank <= keras_axis < t.rank:
            raise IRCError(f"axis {keras_axis} is out of range for a rank-{t.rank} tensor")
        return t.axes.index(keras_axis % t.rank)

    # ----------------------------------------------------------------- emitting
    def node(self, op: str, inputs: list[Value | None], attrs: dict | None = None, name: str | None = None) -> Value:
        return self.graph.add_node(op, inputs, attrs or {}, name=name).output

    def param(self, name: str, array: np.ndarray, source: np.ndarray | None = None) -> Value:
        """A float32 parameter; the same source array (a shared layer's weight) gives the same parameter."""
        array = np.ascontiguousarray(array, np.float32)
        key = (id(source), name, array.shape) if source is not None else None
        if key is not None and key in self._params:
            return self._params[key][1]
        v = self.graph.add_param(name, array)
        if key is not None:
            self._params[key] = (source, v)  # holding the source keeps its id unique
        return v

    def apply(self, op: str, t: Tensor, attrs: dict | None, name: str) -> Tensor:
        """An op that keeps the shape and arrangement (activations, Dropout)."""
        return Tensor(self.node(op, [t.value], attrs, name), t.axes)

    def activation(self, spec: Any, t: Tensor, name: str) -> Tensor:
        """Keras's ``activation=`` argument (or an Activation layer) applied to ``t``."""
        return ACTIVATIONS[activation_name(spec)](self, t, name)

    def conv(self, name: str, t: Tensor, weight: np.ndarray, bias: np.ndarray | None, *, group: int,
             strides: list[int], pads: list[int], dilations: list[int], source: np.ndarray) -> Tensor:
        """A Conv on a channels-first arranged tensor; weight (out, in/group, *kernel)."""
        ins = [t.value, self.param(f"{name}.kernel", weight, source),
               self.param(f"{name}.bias", bias, bias) if bias is not None else None]
        v = self.node("Conv", ins, {"strides": strides, "pads": pads, "dilations": dilations, "group": group}, name)
        return Tensor(v, t.axes)


@checked_config
def input_specs(model: LayerEntry) -> list[tuple[str, list]]:
    """(name, batch shape) of each model input."""
    cfg = model["config"]
    if model["class_name"] == "Sequential":
        layers = cfg.get("layers") or [{}]
        first = layers[0]
        first_cfg = first.get("config", {})
        is_input = first.get("class_name") == "InputLayer"
        shape = first_cfg.get("batch_shape") or first_cfg.get("batch_input_shape") or cfg.get("build_input_shape")
        if shape is None:
            raise IRCError("the Sequential model has no input shape", hint="build it (or give keras.Input) before saving")
        return [(first_cfg.get("name", "input") if is_input else "input", shape)]
    by_name = {layer_name(layer): layer for layer in cfg["layers"]}
    specs = []
    for name, _, _ in refs_of(cfg["input_layers"]):
        layer_cfg = by_name.get(name, {}).get("config", {})
        shape = layer_cfg.get("batch_shape") or layer_cfg.get("batch_input_shape")
        if shape is None:
            raise IRCError(f"input {name!r} has no shape in the config")
        specs.append((name, shape))
    return specs


@checked_config
def refs_of(spec: Any) -> list[Ref]:
    """``input_layers``/``output_layers``: one [name, node, index] triple or a (nested) list of them."""
    if isinstance(spec, dict):
        return [r for v in spec.values() for r in refs_of(v)]
    if isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str) and isinstance(spec[1], int):
        return [(spec[0], int(spec[1]), int(spec[2]))]
    if isinstance(spec, list):
        return [r for item in spec for r in refs_of(item)]
    raise IRCError(f"cannot read the model's input/output list {spec!r}")


@checked_config
def inbound_calls(layer: LayerEntry) -> list[list[Operand]]:
    """The operands each call of a layer takes (Keras 3 dict nodes, or Keras 2 lists), in order: tensors, and the
    numbers of an op on a tensor and a constant (``keras.ops.subtract(1.0, x)`` saves ``args: [1.0, x]``)."""
    calls = []
    for node in layer.get("inbound_nodes") or []:
        if isinstance(node, dict):
            if keras_tensors(node.get("kwargs", {})):
                raise UnsupportedError("the layer takes tensors as keyword arguments", node=layer_name(layer))
            calls.append(call_operands(node.get("args", [])))
        else:  # Keras 2: [[name, node_index, tensor_index, kwargs], ...]
            calls.append([(str(n[0]), int(n[1]), int(n[2])) for n in node])
    return calls


@checked_config
def keras_tensors(obj: Any) -> list[Ref]:
    """Every ``__keras_tensor__`` reference in a call's arguments, in order."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            name, node, index = obj["config"]["keras_history"]
            return [(str(name), int(node), int(index))]
        return [r for v in obj.values() for r in keras_tensors(v)]
    if isinstance(obj, (list, tuple)):
        return [r for v in obj for r in keras_tensors(v)]
    return []


@checked_config
def call_operands(obj: Any) -> list[Operand]:
    """The tensor references and constants of a call's positional arguments, flattened in order (a merge layer's
    list of tensors included); other values (None, strings, flags) are not operands."""
    if isinstance(obj, dict):
        if obj.get("class_name") == "__keras_tensor__":
            return keras_tensors(obj)
        if obj.get("class_name") in ("__numpy__", "__tensor__"):
            return [numeric(obj)]
        return []
    if isinstance(obj, (list, tuple)):
        return [o for v in obj for o in call_operands(v)]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [np.asarray(obj, np.float32)]
    return []


def pick(produced: dict[tuple[str, int], list[Tensor]], ref: Ref) -> Tensor:
    name, node, index = ref
    outs = produced.get((name, node))
    if outs is None or not isinstance(index, int) or not 0 <= index < len(outs):
        raise IRCError(f"the model refers to output {index} of call {node} of layer {name!r}, which does not exist")
    return outs[index]


# =================================================================== helpers
def one(args: list[Tensor]) -> Tensor:
    if len(args) != 1:
        raise IRCError(f"the layer takes one input, it is called with {len(args)}")
    return args[0]


def ints(value: Any, n: int) -> list[int]:
    """A Keras int-or-tuple option as n ints."""
    if isinstance(value, (int, float)):
        return [int(value)] * n
    values = [int(v) for v in value]
    if len(values) != n:
        raise IRCError(f"option {value!r} does not match {n} spatial axes")
    return values


def expect_rank(array: np.ndarray, ndim: int, role: str) -> np.ndarray:
    if array.ndim != ndim:
        raise IRCError(f"the {role} has shape {list(array.shape)}, a rank-{ndim} array was expected")
    return array


def window_pads(padding: str, sizes: tuple, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    """Begin pads then end pads for Keras's padding modes ('same' puts the odd pixel at the end)."""
    nd = len(kernel)
    if padding == "valid":
        return [0] * (2 * nd)
    if padding == "causal":
        return [dilations[0] * (kernel[0] - 1), 0]
    return same_pads(sizes, kernel, strides, dilations)


def depthwise_weight(kernel: np.ndarray) -> np.ndarray:
    """Keras (*kernel, in, multiplier) as IR (in * multiplier, 1, *kernel); output channel c*multiplier + m."""
    nd = kernel.ndim - 2
    cin, mult = kernel.shape[nd], kernel.shape[nd + 1]
    return np.transpose(kernel, (nd, nd + 1) + tuple(range(nd))).reshape(cin * mult, 1, *kernel.shape[:nd])


def conv_weight(kernel: np.ndarray) -> np.ndarray:
    """Keras (*kernel, in/groups, out) as IR (out, in/groups, *kernel)."""
    nd = kernel.ndim - 2
    return np.transpose(kernel, (nd + 1, nd) + tuple(range(nd)))


def numeric(value: Any) -> np.ndarray:
    """A serialized number, list or numpy array (Rescaling's scale/offset) as float32."""
    if isinstance(value, dict) and value.get("class_name") in ("__numpy__", "__tensor__"):
        value = value.get("config", {}).get("value")
    try:
        return np.asarray(value, np.float32)
    except (TypeError, ValueError):
        raise UnsupportedError(f"cannot read the value {value!r}") from None


def warn_average_pool_padding(name: str, kernel: list[int], pads: list[int]) -> None:
    """Keras's backends disagree on 'same' average pooling with an odd total padding: say which one irc follows."""
    nd = len(kernel)
    for k, b, e in zip(kernel, pads[:nd], pads[nd:]):
        if e > b and (k - e >= 2 or e >= 2):
            warnings.warn(f"Keras layer {name!r}: 'same' average pooling pads asymmetrically here; irc averages "
                          "over the real inputs only, as Keras's TensorFlow and JAX backends do (its torch backend "
                          "repeats the edge values instead)", stacklevel=3)
            return


# ================================================================ layer rules
LowerFn = Callable[[Lowering, dict, list[Tensor], Weights], Union[Tensor, list[Tensor]]]
VarsFn = Callable[[dict], list[Var]]
CheckFn = Callable[[dict], list[str]]


@dataclass(frozen=True)
class Rule:
    """How irc reads one Keras layer class: its variables, config-only refusals, and the lowering."""

    lower: LowerFn
    variables: VarsFn
    check: CheckFn
    constants: bool = False
    """Whether the lowering takes constant operands (numpy arrays among its args)."""


RULES: dict[str, Rule] = {}


def no_variables(cfg: dict) -> list[Var]:
    return []


def no_problems(cfg: dict) -> list[str]:
    return []


def rule(*classes: str, variables: VarsFn = no_variables, check: CheckFn = no_problems, constants: bool = False):
    """Register a lowering for Keras layer classes."""
    def deco(fn: LowerFn) -> LowerFn:
        for cls in classes:
            RULES[cls] = Rule(fn, variables, check, constants)
        return fn
    return deco


def bias_var(cfg: dict) -> list[Var]:
    return [Var("bias")] if cfg.get("use_bias", True) else []


def kernel_vars(cfg: dict) -> list[Var]:
    return [Var("kernel")] + bias_var(cfg)


def depthwise_vars(cfg: dict) -> list[Var]:
    return [Var("kernel", aliases=("depthwise_kernel",))] + bias_var(cfg)


def separable_vars(cfg: dict) -> list[Var]:
    return [Var("depthwise_kernel"), Var("pointwise_kernel")] + bias_var(cfg)


def batch_norm_vars(cfg: dict) -> list[Var]:
    return (([Var("gamma")] if cfg.get("scale", True) else []) + ([Var("beta")] if cfg.get("center", True) else [])
            + [Var("moving_mean", trains=False), Var("moving_variance", trains=False)])


def padding_check(*modes: str) -> CheckFn:
    def check(cfg: dict) -> list[str]:
        padding = cfg.get("padding", "valid")
        return [] if padding in modes else [f"padding {padding!r}; supported: {', '.join(modes)}"]
    return check


# ------------------------------------------------------------ convolutions
@rule("Conv1D", "Conv2D", variables=kernel_vars, check=padding_check("valid", "same", "causal"))
def conv(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    t = L.channels_first(one(args), cfg)
    nd = t.rank - 2
    kernel = expect_rank(w["kernel"], nd + 2, "kernel")
    if cfg["padding"] == "causal" and nd != 1:
        raise UnsupportedError("'causal' padding is defined for 1-d convolutions only")
    strides, dilations = ints(cfg.get("strides", 1), nd), ints(cfg.get("dilation_rate", 1), nd)
    pads = window_pads(cfg["padding"], t.shape[2:], list(kernel.shape[:nd]), strides, dilations)
    y = L.conv(cfg["name"], t, conv_weight(kernel), w.get("bias"), group=int(cfg.get("groups", 1)), strides=strides,
               pads=pads, dilations=dilations, source=w["kernel"])
    return L.activation(cfg.get("activation"), y, cfg["name"] + ".act")


@rule("DepthwiseConv1D", "DepthwiseConv2D", variables=depthwise_vars, check=padding_check("valid", "same"))
def depthwise_conv(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    t = L.channels_first(one(args), cfg)
    nd = t.rank - 2
    kernel = expect_rank(w["kernel"], nd + 2, "depthwise kernel")
    strides, dilations = ints(cfg.get("strides", 1), nd), ints(cfg.get("dilation_rate", 1), nd)
    pads = window_pads(cfg["padding"], t.shape[2:], list(kernel.shape[:nd]), strides, dilations)
    y = L.conv(cfg["name"], t, depthwise_weight(kernel), w.get("bias"), group=kernel.shape[nd], strides=strides,
               pads=pads, dilations=dilations, source=w["kernel"])
    return L.activation(cfg.get("activation"), y, cfg["name"] + ".act")


@rule("SeparableConv1D", "SeparableConv2D", variables=separable_vars, check=padding_check("valid", "same"))
def separable_conv(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """A depthwise convolution (no bias) then a pointwise one (with the bias)."""
    t = L.channels_first(one(args), cfg)
    nd = t.rank - 2
    dw = expect_rank(w["depthwise_kernel"], nd + 2, "depthwise kernel")
    pw = expect_rank(w["pointwise_kernel"], nd + 2, "pointwise kernel")
    strides, dilations = ints(cfg.get("strides", 1), nd), ints(cfg.get("dilation_rate", 1), nd)
    pads = window_pads(cfg["padding"], t.shape[2:], list(dw.shape[:nd]), strides, dilations)
    depth = L.conv(cfg["name"] + ".depthwise", t, depthwise_weight(dw), None, group=dw.shape[nd], strides=strides,
                   pads=pads, dilations=dilations, source=w["depthwise_kernel"])
    y = L.conv(cfg["name"], depth, conv_weight(pw), w.get("bias"), group=1, strides=[1] * nd, pads=[0] * (2 * nd),
               dilations=[1] * nd, source=w["pointwise_kernel"])
    return L.activation(cfg.get("activation"), y, cfg["name"] + ".act")


@rule("Dense", variables=kernel_vars)
def dense(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """Dense on features; on a sequence or an image it acts on the last axis: a 1x1 convolution."""
    t = one(args)
    kernel = expect_rank(w["kernel"], 2, "kernel")
    bias = w.get("bias")
    if t.rank == 2:
        ins = [t.value, L.param(cfg["name"] + ".kernel", kernel.T, w["kernel"]),
               L.param(cfg["name"] + ".bias", bias, bias) if bias is not None else None]
        y = Tensor(L.node("Dense", ins, name=cfg["name"]), t.axes)
    else:
        t = L.arrange(t, channels_first(t.rank, "channels_last"))
        nd = t.rank - 2
        weight = kernel.T.reshape(kernel.shape[1], kernel.shape[0], *([1] * nd))
        y = L.conv(cfg["name"], t, weight, bias, group=1, strides=[1] * nd, pads=[0] * (2 * nd), dilations=[1] * nd,
                   source=w["kernel"])
    return L.activation(cfg.get("activation"), y, cfg["name"] + ".act")


# ----------------------------------------------------------------- pooling
def pool(L: Lowering, cfg: dict, args: list[Tensor], op: str) -> Tensor:
    t = L.channels_first(one(args), cfg)
    nd = t.rank - 2
    kernel = ints(cfg["pool_size"], nd)
    strides = ints(cfg.get("strides") or kernel, nd)
    pads = window_pads(cfg.get("padding", "valid"), t.shape[2:], kernel, strides, [1] * nd)
    attrs: dict[str, Any] = {"kernel": kernel, "strides": strides, "pads": pads, "dilations": [1] * nd}
    if op == "AvgPool":
        attrs["count_include_pad"] = False
        warn_average_pool_padding(cfg["name"], kernel, pads)
    return Tensor(L.node(op, [t.value], attrs, cfg["name"]), t.axes)


@rule("MaxPooling1D", "MaxPooling2D", check=padding_check("valid", "same"))
def max_pooling(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    return pool(L, cfg, args, "MaxPool")


@rule("AveragePooling1D", "AveragePooling2D", check=padding_check("valid", "same"))
def average_pooling(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    return pool(L, cfg, args, "AvgPool")


def global_pool(L: Lowering, cfg: dict, args: list[Tensor], op: str) -> Tensor:
    t = L.channels_first(one(args), cfg)
    y = L.node(op, [t.value], name=cfg["name"])
    if cfg.get("keepdims", False):
        return Tensor(y, t.axes)
    return Tensor(L.node("Reshape", [y], {"shape": [0, t.shape[1]]}, cfg["name"] + ".squeeze"), (0, 1))


@rule("GlobalAveragePooling1D", "GlobalAveragePooling2D")
def global_average_pooling(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    return global_pool(L, cfg, args, "GlobalAvgPool")


@rule("GlobalMaxPooling1D", "GlobalMaxPooling2D")
def global_max_pooling(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    return global_pool(L, cfg, args, "GlobalMaxPool")


# ----------------------------------------------------------- normalization
def single_axis(cfg: dict, default: int) -> int | None:
    axis = cfg.get("axis", default)
    if isinstance(axis, (list, tuple)):
        return int(axis[0]) if len(axis) == 1 else None
    return int(axis)


def batch_norm_check(cfg: dict) -> list[str]:
    problems = []
    if single_axis(cfg, -1) is None:
        problems.append(f"normalizes over several axes {cfg.get('axis')}")
    if cfg.get("renorm"):
        problems.append("batch renormalization")
    return problems


def channel_at_1(L: Lowering, t: Tensor, keras_axis: int) -> Tensor:
    """``t`` arranged so that Keras axis ``keras_axis`` is IR axis 1, where the per-channel ops (BatchNorm,
    ScaleShift) act; unchanged when it already is."""
    k = L.ir_axis(t, keras_axis)
    if k != 1:
        axis = t.axes[k]
        t = L.arrange(t, (0, axis) + tuple(a for a in t.axes[1:] if a != axis))
    return t


@rule("BatchNormalization", variables=batch_norm_vars, check=batch_norm_check)
def batch_normalization(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    t = channel_at_1(L, one(args), single_axis(cfg, -1))
    mean = w["moving_mean"]
    gamma = w.get("gamma", np.ones_like(mean))
    beta = w.get("beta", np.zeros_like(mean))
    params = [L.param(f"{cfg['name']}.{role}", a, a) for role, a in
              (("gamma", gamma), ("beta", beta), ("moving_mean", mean), ("moving_variance", w["moving_variance"]))]
    return Tensor(L.node("BatchNorm", [t.value, *params], {"epsilon": cfg.get("epsilon", 1e-3)}, cfg["name"]), t.axes)


def normalization_vars(cfg: dict) -> list[Var]:
    """An adapted Normalization stores its statistics; one given ``mean=``/``variance=`` keeps them in the config."""
    if cfg.get("mean") is not None and cfg.get("variance") is not None:
        return []
    return [Var("mean", trains=False), Var("variance", trains=False), Var("count", trains=False)]


def keras_axes(cfg: dict, default: int) -> list[int]:
    axis = cfg.get("axis", default)
    if axis is None:
        return []
    return [int(a) for a in axis] if isinstance(axis, (list, tuple)) else [int(axis)]


KERAS_EPSILON = 1e-7
"""``keras.backend.epsilon()``: Normalization divides by max(sqrt(variance), this)."""


@rule("Normalization", variables=normalization_vars)
def normalization(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """(x - mean) / max(sqrt(variance), 1e-7) per feature of the kept ``axis`` (x * that + mean with invert=True),
    folded into one ScaleShift (one kept axis) or a Mul and an Add of broadcast constants."""
    t = one(args)
    mean = numeric(cfg["mean"]) if not w else w["mean"]
    var = numeric(cfg["variance"]) if not w else w["variance"]
    axes = sorted(a % t.rank for a in keras_axes(cfg, -1))
    if any(not 0 < a < t.rank for a in axes):
        raise IRCError(f"axis {cfg.get('axis')} is out of range for a rank-{t.rank} input")
    kept = [t.shape[t.axes.index(a)] for a in axes]
    if mean.size not in (1, int(np.prod(kept))) or var.size != mean.size:
        raise IRCError(f"mean/variance of {mean.size}/{var.size} values do not match the kept axes' sizes {kept}")
    std = np.maximum(np.sqrt(var.astype(np.float64)), KERAS_EPSILON)
    mean = mean.astype(np.float64)
    scale, shift = (std, mean) if cfg.get("invert") else (1.0 / std, -mean / std)
    if len(axes) == 1 and mean.size == kept[0]:
        t = channel_at_1(L, t, axes[0])
        ins = [t.value, L.param(cfg["name"] + ".scale", scale.reshape(-1)),
               L.param(cfg["name"] + ".shift", shift.reshape(-1))]
        return Tensor(L.node("ScaleShift", ins, name=cfg["name"]), t.axes)
    full = [t.shape[t.axes.index(a)] if a in axes else 1 for a in range(1, t.rank)]
    shaped = [np.transpose(np.broadcast_to(c, kept).reshape([1] + full) if c.size > 1 else c.reshape([1] * t.rank),
                           t.axes) for c in (scale, shift)]
    y = L.node("Mul", [t.value, L.param(cfg["name"] + ".scale", shaped[0])], name=cfg["name"] + ".scale")
    return Tensor(L.node("Add", [y, L.param(cfg["name"] + ".shift", shaped[1])], name=cfg["name"]), t.axes)


def layer_norm_vars(cfg: dict) -> list[Var]:
    return ([Var("gamma")] if cfg.get("scale", True) else []) + ([Var("beta")] if cfg.get("center", True) else [])


def layer_norm_check(cfg: dict) -> list[str]:
    return ["rms_scaling=True"] if cfg.get("rms_scaling") else []


@rule("LayerNormalization", variables=layer_norm_vars, check=layer_norm_check)
def layer_normalization(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over the Keras axes ``axis``: those are arranged last (in
    Keras's order), where the IR's LayerNormalization normalises; gamma/beta have the shape of those axes."""
    t = one(args)
    axes = sorted({a % t.rank for a in keras_axes(cfg, -1)})
    if not axes or axes[0] == 0 or axes[-1] >= t.rank:
        raise IRCError(f"axis {cfg.get('axis')} is not a set of feature axes of a rank-{t.rank} input")
    t = L.arrange(t, tuple(a for a in t.axes if a not in axes) + tuple(axes))
    normalised = tuple(t.shape[t.rank - len(axes):])
    name = cfg["name"]
    gamma = w.get("gamma", np.ones(normalised, np.float32))
    beta = w.get("beta")
    ins = [t.value, L.param(name + ".gamma", gamma.reshape(normalised), w.get("gamma")),
           L.param(name + ".beta", beta.reshape(normalised), beta) if beta is not None else None]
    attrs = {"axis": t.rank - len(axes), "epsilon": float(cfg.get("epsilon", 1e-3))}
    return Tensor(L.node("LayerNormalization", ins, attrs, name), t.axes)


def layer_scale_vars(cfg: dict) -> list[Var]:
    return [Var("gamma", aliases=("variable",))]


def layer_scale_check(cfg: dict) -> list[str]:
    """Only keras.applications.convnext's LayerScale (init_values, projection_dim) is known; another class of that
    name is someone's own code."""
    return [] if {"init_values", "projection_dim"} <= set(cfg) else [
        "not keras.applications.convnext's LayerScale (no init_values/projection_dim in its config)"]


@rule("LayerScale", variables=layer_scale_vars, check=layer_scale_check)
def layer_scale(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """keras.applications.convnext's LayerScale: x * gamma along the last axis (``projection_dim`` values)."""
    t = channel_at_1(L, one(args), -1)
    gamma = w["gamma"].reshape(-1)
    if gamma.size != t.shape[1]:
        raise IRCError(f"gamma has {gamma.size} values for {t.shape[1]} channels")
    return Tensor(L.node("ScaleShift", [t.value, L.param(cfg["name"] + ".gamma", gamma, w["gamma"])],
                         name=cfg["name"]), t.axes)


# ------------------------------------------------------------- activations
def silu(L: Lowering, t: Tensor, name: str) -> Tensor:
    """x * sigmoid(x)."""
    gate = L.node("Sigmoid", [t.value], name=name + ".sigmoid")
    return Tensor(L.node("Mul", [t.value, gate], name=name), t.axes)


def hard_sigmoid(L: Lowering, t: Tensor, name: str) -> Tensor:
    """Keras 3: relu6(x + 3) / 6, i.e. clip(x / 6 + 0.5, 0, 1); Keras 2 (a file it wrote): clip(0.2 x + 0.5, 0, 1)."""
    alpha = 0.2 if L.model.keras2 else 1.0 / 6.0
    return L.apply("HardSigmoid", t, {"alpha": alpha, "beta": 0.5}, name)


def gelu(approximate: bool) -> Callable[[Lowering, Tensor, str], Tensor]:
    """keras.activations.gelu (approximate=False: the erf form) or keras.ops.gelu's default tanh form."""
    return lambda L, t, name: L.apply("Gelu", t, {"approximate": "tanh" if approximate else "none"}, name)


def softmax_on(L: Lowering, t: Tensor, axis: int, name: str) -> Tensor:
    return L.apply("Softmax", t, {"axis": L.ir_axis(t, axis)}, name)


ACTIVATIONS: dict[str, Callable[[Lowering, Tensor, str], Tensor]] = {
    "linear": lambda L, t, name: t,
    "relu": lambda L, t, name: L.apply("Relu", t, None, name),
    "relu6": lambda L, t, name: L.apply("Clip", t, {"min": 0.0, "max": 6.0}, name),
    "leaky_relu": lambda L, t, name: L.apply("LeakyRelu", t, {"alpha": 0.2}, name),
    "sigmoid": lambda L, t, name: L.apply("Sigmoid", t, None, name),
    "tanh": lambda L, t, name: L.apply("Tanh", t, None, name),
    "softmax": lambda L, t, name: softmax_on(L, t, -1, name),
    "silu": silu,
    "swish": silu,
    "hard_sigmoid": hard_sigmoid,
    "hard_silu": lambda L, t, name: L.apply("HardSwish", t, None, name),
    "hard_swish": lambda L, t, name: L.apply("HardSwish", t, None, name),
    "gelu": gelu(False),
}
"""Keras's built-in activations that have an exact IR equivalent (leaky_relu's default slope is 0.2)."""


@rule("Activation")
def activation(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    return L.activation(cfg.get("activation"), one(args), cfg["name"])


OPS_ACTIVATIONS = {"Relu": "relu", "Relu6": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh", "Silu": "silu",
                   "HardSigmoid": "hard_sigmoid", "HardSilu": "hard_silu"}
"""``keras.ops`` activation calls saved in a functional model (class name: the activation it applies)."""


def ops_activation(activation_name: str) -> LowerFn:
    def lower(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
        return ACTIVATIONS[activation_name](L, one(args), cfg["name"])
    return lower


for _cls, _activation in OPS_ACTIVATIONS.items():
    rule(_cls)(ops_activation(_activation))


@rule("Gelu")
def ops_gelu(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """``keras.ops.gelu(x, approximate=True)``: its default is the tanh form (the activation's is the erf one)."""
    return gelu(bool(cfg.get("approximate", True)))(L, one(args), cfg["name"])


def relu_check(cfg: dict) -> list[str]:
    threshold = float(cfg.get("threshold") or 0.0)
    if threshold < 0.0:
        return [f"threshold={threshold}: Keras's ReLU takes a threshold >= 0"]
    return []


@rule("ReLU", check=relu_check)
def relu(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """min(max(x, 0), max_value) for x >= 0 and negative_slope * x below: LeakyRelu then Clip exactly."""
    t = one(args)
    slope = float(cfg.get("negative_slope") or 0.0)
    max_value = cfg.get("max_value")
    threshold = float(cfg.get("threshold") or 0.0)
    if threshold:
        return thresholded_relu(L, t, threshold, slope, None if max_value is None else float(max_value), cfg["name"])
    if slope:
        y = L.apply("LeakyRelu", t, {"alpha": slope}, cfg["name"])
        return y if max_value is None else L.apply("Clip", y, {"max": float(max_value)}, cfg["name"] + ".max")
    if max_value is not None:
        return L.apply("Clip", t, {"min": 0.0, "max": float(max_value)}, cfg["name"])
    return L.apply("Relu", t, None, cfg["name"])


def thresholded_relu(L: Lowering, t: Tensor, threshold: float, slope: float, max_value: float | None,
                     name: str) -> Tensor:
    """Keras's ``relu`` with a threshold, step by step as Keras computes it: x where x > threshold, else 0;
    clipped to [0, max_value]; minus negative_slope * relu(threshold - x)."""
    def const(value: float, label: str) -> Value:
        return L.param(f"{name}.{label}", np.float32(value))

    above = L.node("Greater", [t.value, const(threshold, "threshold")], None, f"{name}.above")
    y = L.node("Where", [above, t.value, const(0.0, "zero")], None, name if max_value is None and not slope
               else f"{name}.step")
    if max_value is not None:
        y = L.node("Clip", [y], {"min": 0.0, "max": max_value}, name if not slope else f"{name}.max")
    if slope:
        below = L.node("Relu", [L.node("Sub", [const(threshold, "threshold"), t.value], None, f"{name}.below")],
                       None, f"{name}.below_relu")
        negative = L.node("Mul", [below, const(slope, "slope")], None, f"{name}.negative")
        y = L.node("Sub", [y, negative], None, name)
    return Tensor(y, t.axes)


@rule("LeakyReLU")
def leaky_relu(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    slope = cfg.get("negative_slope", cfg.get("alpha", 0.3))
    return L.apply("LeakyRelu", one(args), {"alpha": float(slope)}, cfg["name"])


def softmax_check(cfg: dict) -> list[str]:
    return [] if single_axis(cfg, -1) is not None else [f"softmax over several axes {cfg.get('axis')}"]


@rule("Softmax", check=softmax_check)
def softmax(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    return softmax_on(L, one(args), single_axis(cfg, -1), cfg["name"])


# -------------------------------------------------- identity at inference
@rule("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianDropout", "GaussianNoise", "AlphaDropout")
def dropout(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """Noise and dropout layers do nothing at inference."""
    return L.apply("Dropout", one(args), {"ratio": float(cfg.get("rate", 0.0))}, cfg["name"])


@rule("Identity")
def identity(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    return L.apply("Identity", one(args), None, cfg["name"])


# ------------------------------------------------------------------ shapes
@rule("Flatten")
def flatten(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """Keras flattens in channels-last order (a channels_first Flatten moves the channels last first)."""
    t = one(args)
    order = keras_order(t.rank)
    if cfg.get("data_format") == "channels_first" and t.rank > 2:
        order = (0,) + tuple(range(2, t.rank)) + (1,)
    t = L.arrange(t, order)
    return Tensor(L.node("Flatten", [t.value], {"axis": 1}, cfg["name"]), (0, 1))


@rule("Reshape")
def reshape(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    t = L.arrange(one(args), keras_order(one(args).rank))
    target = [int(d) for d in cfg["target_shape"]]
    y = L.node("Reshape", [t.value], {"shape": [0, *target]}, cfg["name"])
    return Tensor(y, keras_order(len(target) + 1))


def zero_padding_pairs(padding: Any, nd: int) -> list[tuple[int, int]]:
    """ZeroPadding's int / (a, b) / ((top, bottom), (left, right)) as (begin, end) per spatial axis."""
    if isinstance(padding, int):
        return [(padding, padding)] * nd
    padding = list(padding)
    if nd == 1 and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        return [(int(padding[0]), int(padding[1]))]
    if len(padding) != nd:
        raise IRCError(f"padding {padding!r} does not match {nd} spatial axes")
    return [(int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in padding]


@rule("ZeroPadding1D", "ZeroPadding2D")
def zero_padding(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """Pads the spatial axes wherever they are: no transpose needed."""
    t = one(args)
    axes = spatial_axes(t.rank, cfg.get("data_format"))
    pads = [0] * (2 * t.rank)
    for axis, (begin, end) in zip(axes, zero_padding_pairs(cfg["padding"], len(axes))):
        i = t.axes.index(axis)
        pads[i], pads[t.rank + i] = begin, end
    return Tensor(L.node("Pad", [t.value], {"pads": pads}, cfg["name"]), t.axes)


# ------------------------------------------------------------------ merges
def chain(L: Lowering, op: str, args: list[Tensor | np.ndarray], name: str) -> Tensor:
    """op over all operands, left to right; the last node gets the layer's name.  Constants (the numbers of
    ``keras.ops.add(x, 3.0)``) become float32 parameters broadcast as numpy does, in their place in the order."""
    tensors = L.same_arrangement([a for a in args if isinstance(a, Tensor)])
    if not tensors:
        raise IRCError("the layer has no tensor operand")
    ref = tensors[0]
    it = iter(tensors)
    values = [next(it).value if isinstance(a, Tensor) else
              L.param(f"{name}.const{i}", broadcast_constant(np.asarray(a, np.float32), ref))
              for i, a in enumerate(args)]
    v = values[0]
    for i, operand in enumerate(values[1:], start=1):
        v = L.node(op, [v, operand], name=name if i == len(values) - 1 else f"{name}.{i}")
    return Tensor(v, ref.axes)


def two_operands(args: list, cls: str) -> list:
    if len(args) != 2:
        raise IRCError(f"{cls} takes two operands, got {len(args)}")
    return args


@rule("Add", constants=True)
def add(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    return chain(L, "Add", args, cfg["name"])


@rule("Subtract", constants=True)
def subtract(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    return chain(L, "Sub", two_operands(args, "Subtract"), cfg["name"])


@rule("Multiply", constants=True)
def multiply(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    return chain(L, "Mul", args, cfg["name"])


@rule("TrueDivide", "Divide", constants=True)
def divide(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """``keras.ops.divide`` / ``true_divide`` (an op, not a layer): a tensor by a tensor or a number, or a number by
    a tensor."""
    return chain(L, "Div", two_operands(args, "TrueDivide"), cfg["name"])


@rule("Average")
def average(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    total = chain(L, "Add", args, cfg["name"] + ".sum")
    scale = L.param(cfg["name"] + ".scale", np.asarray(1.0 / len(args), np.float32))
    return Tensor(L.node("Mul", [total.value, scale], name=cfg["name"]), total.axes)


@rule("Concatenate")
def concatenate(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    args = L.same_arrangement(args)
    axis = L.ir_axis(args[0], int(cfg.get("axis", -1)))
    return Tensor(L.node("Concat", [t.value for t in args], {"axis": axis}, cfg["name"]), args[0].axes)


def custom_scale_check(cfg: dict) -> list[str]:
    """Only keras.applications.inception_resnet_v2's CustomScaleLayer (a numeric ``scale``) is known."""
    ok = isinstance(cfg.get("scale"), (int, float)) and not isinstance(cfg.get("scale"), bool)
    return [] if ok else ["not keras.applications.inception_resnet_v2's CustomScaleLayer (no numeric scale)"]


@rule("CustomScaleLayer", check=custom_scale_check)
def custom_scale(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """InceptionResNetV2's residual scaling: ``inputs[0] + inputs[1] * scale``."""
    a, b = L.same_arrangement(two_operands(args, "CustomScaleLayer"))
    scale = L.param(cfg["name"] + ".scale", np.asarray(cfg["scale"], np.float32))
    scaled = L.node("Mul", [b.value, scale], name=cfg["name"] + ".scaled")
    return Tensor(L.node("Add", [a.value, scaled], name=cfg["name"]), a.axes)


# ----------------------------------------------------------- preprocessing
def rescaling_check(cfg: dict) -> list[str]:
    try:
        values = [numeric(cfg.get("scale", 1.0)), numeric(cfg.get("offset", 0.0))]
    except IRCError as e:
        return [e.message]
    return [] if all(v.ndim <= 1 for v in values) else ["a scale or offset of more than one axis"]


@rule("Rescaling", check=rescaling_check)
def rescaling(L: Lowering, cfg: dict, args: list[Tensor], w: Weights) -> Tensor:
    """x * scale + offset, a vector scale or offset broadcast along Keras's last axis as numpy does."""
    t = one(args)
    for key, op, neutral in (("scale", "Mul", 1.0), ("offset", "Add", 0.0)):
        c = numeric(cfg.get(key, neutral))
        if np.all(c == neutral):
            continue
        t = Tensor(L.node(op, [t.value, L.param(f"{cfg['name']}.{key}", broadcast_constant(c, t))],
                          name=f"{cfg['name']}.{key}"), t.axes)
    return t


def broadcast_constant(c: np.ndarray, t: Tensor) -> np.ndarray:
    """A constant shaped for numpy broadcasting against the Keras tensor, rearranged like ``t``'s IR value."""
    if c.ndim == 0:
        return c
    if c.ndim >= t.rank:
        raise UnsupportedError(f"a constant of shape {list(c.shape)} does not broadcast over a rank-{t.rank} tensor")
    full = c.reshape((1,) * (t.rank - c.ndim) + c.shape)
    return np.transpose(full, t.axes)

from . import keras_structured  # noqa: E402,F401  (Conv*Transpose, UpSampling*, Permute, LSTM, GRU, Bidirectional)
