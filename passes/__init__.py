"""Passes: graph -> graph rewrites, each registered under a name, and the
pipelines that targets run.  See :mod:`irc.passes.manager`."""
from . import affine, fold_pad, fuse, layout, mapping, simplify, spiking, thresholds  # noqa: F401  (registration)
from .manager import PASSES, Conversion, Pass, PassContext, get_pass, register_pass, run_pass, run_pipeline

FOUNDATION = ["simplify", "fold_constants", "fold_transposes", "apply_channel_mapping", "fold_batchnorm"]
"""Inference simplification every target starts with."""

PIPELINES: dict[str, list[str]] = {
    "analog": FOUNDATION + ["fold_pad_into_conv", "fuse_activations"],
}

__all__ = ["PASSES", "PIPELINES", "FOUNDATION", "Conversion", "Pass", "PassContext", "get_pass", "register_pass",
           "run_pass", "run_pipeline"]
