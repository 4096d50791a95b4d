"""Reading input and label arrays from .npy / .npz files for the CLI."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from .errors import IRCError

INPUT_KEYS = ("x", "inputs", "input", "data", "images", "x_test")
LABEL_KEYS = ("y", "labels", "label", "targets", "y_test")


def load_arrays(path: str) -> dict[str, np.ndarray]:
    """All arrays in a .npy (under the key '') or .npz file."""
    if not os.path.exists(path):
        raise IRCError("file not found", file=path)
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:
        raise IRCError(f"cannot read it as .npy/.npz ({e})", file=path) from None
    if isinstance(data, np.ndarray):
        return {"": data}
    with data:
        return {k: data[k] for k in data.files}


def pick_inputs(arrays: dict[str, np.ndarray], input_names: Sequence[str], path: str) -> list[np.ndarray]:
    """The arrays for the model's inputs: by input name, else the usual keys."""
    if "" in arrays:
        if len(input_names) != 1:
            raise IRCError(f"the model has {len(input_names)} inputs; give an .npz with arrays named "
                           f"{list(input_names)}", file=path)
        return [arrays[""]]
    if all(n in arrays for n in input_names):
        return [arrays[n] for n in input_names]
    if len(input_names) == 1:
        for k in INPUT_KEYS:
            if k in arrays:
                return [arrays[k]]
        if len(arrays) == 1:
            return list(arrays.values())
    raise IRCError(f"cannot tell which arrays are the inputs (file has {sorted(arrays)}, model wants "
                   f"{list(input_names)})", file=path, hint="name the arrays after the model's inputs")


def pick_labels(arrays: dict[str, np.ndarray]) -> np.ndarray | None:
    for k in LABEL_KEYS:
        if k in arrays:
            return arrays[k]
    return None


def as_class_labels(labels: np.ndarray, n: int, path: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] > 1:
        labels = labels.argmax(axis=1)  # one-hot
    labels = labels.reshape(-1)
    if labels.shape[0] != n:
        raise IRCError(f"{labels.shape[0]} labels for {n} samples", file=path)
    return labels.astype(np.int64)
