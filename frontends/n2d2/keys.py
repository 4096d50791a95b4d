"""Which keys N2D2 knows in each kind of section, and N2D2's rule for the ones it does not.

N2D2 marks every key it reads; when it leaves a *strict* section it throws
``Unknown property K in section [S]`` for any key left unread (n2d2-ini.md
§1.4).  Strict are the global section, ``[sp]``/``[env]``/``[cenv]``, and the
layer sections of types Conv, Deconv and BatchNorm -- unless the layer has
``ActivationFunction=``, whose generator marks the whole section read.  Other
layer sections ignore unknown keys silently; irc warns about them, since a
misspelt key there is just as lost.

irc reads fewer keys than N2D2 (solvers, fillers once weights are given,
training-only options), so a key counts as known when irc read it or when it
matches one of N2D2's own keys for that section, listed here with wildcards.
ConfigSection contents, Target, database and transformation sections are not
checked: their valid keys depend on classes irc does not model.
"""
from __future__ import annotations

import warnings

from irc.errors import IRCError

from .syntax import IniDocument, IniWarning, wildcard

COMMON = ("Input", "Type", "Model", "DataType", "ConfigSection", "ConfigSection(*)")
TRAINING = ("Solvers", "Solvers.*", "WeightsSolver", "WeightsSolver.*", "BiasSolver", "BiasSolver.*",
            "WeightsFiller", "WeightsFiller.*", "BiasFiller", "BiasFiller.*", "QWeight*", "QAct*",
            "BackPropagate")
ACTIVATION = ("ActivationFunction", "ActivationFunction.*")
def _dims(base: str) -> tuple[str, ...]:
    """N2D2's forms of a per-axis option: <base>Dims, <base>, <base>X/Y/Z."""
    return (f"{base}Dims", base, f"{base}X", f"{base}Y", f"{base}Z")


MAPPING = ("Mapping(*)", "Mapping.*", "Mapping(*).*")
WINDOW = _dims("Stride") + _dims("Padding") + MAPPING
KNOWN: dict[str, tuple[str, ...]] = {
    "": ("DefaultModel", "DefaultDataType", "InsertBatchNormAfterConv", "CheckWeightRange", "ProgramMethod(*)"),
    "env": ("SizeX", "SizeY", "SizeD", "Size", "NbChannels", "BatchSize", "CompositeStimuli", "CachePath",
            "TargetSize*", "ConfigSection", "ConfigSection(*)"),
    "Conv": COMMON + TRAINING + ACTIVATION + WINDOW + (
        "NbOutputs", "KernelDims", "KernelSize", "KernelWidth", "KernelHeight", "KernelDepth", "Kernel",
        "Kernel[*", "Kernel.*", "WeightsSharing", "BiasesSharing") + _dims("SubSample") + _dims("Dilation"),
    "Pool": COMMON + ACTIVATION + WINDOW + ("NbOutputs", "PoolDims", "PoolSize", "PoolWidth", "PoolHeight",
                                            "PoolDepth", "Pooling"),
    "Fc": COMMON + TRAINING + ACTIVATION + ("NbOutputs", "InputOffset*", "InputWidth", "InputHeight", "DropConnect"),
    "Softmax": COMMON + ("NbOutputs", "WithLoss", "GroupSize"),
    "Dropout": COMMON + ("NbOutputs", "Dropout"),
    "BatchNorm": COMMON + ACTIVATION + ("NbOutputs", "ScalesSharing", "BiasesSharing", "MeansSharing",
                                        "VariancesSharing", "Solvers", "Solvers.*", "ScaleSolver", "ScaleSolver.*",
                                        "BiasSolver", "BiasSolver.*", "MovingAverageMomentum", "Epsilon"),
    "ElemWise": COMMON + ACTIVATION + ("NbOutputs", "Operation", "Weights", "Shifts", "CoeffMode"),
    "Padding": COMMON + ("NbOutputs", "TopPadding", "BottomPadding", "LeftPadding", "RightPadding"),
}
KNOWN["Deconv"] = KNOWN["Conv"]
KNOWN["ONNX"] = COMMON + ("File", "Ignore", "IgnoreInputSize", "Transpose", "CNTK", "ONNX_init")
STRICT_LAYERS = ("Conv", "Deconv", "BatchNorm")


def check_keys(doc: IniDocument, env: str, layers: list[str]) -> None:
    """After a build: unknown keys in strict sections are an IRCError at their line; elsewhere a warning."""
    _check(doc, "", KNOWN[""], strict=True, what="the global section")
    _check(doc, env, KNOWN["env"], strict=True, what=f"[{env}]")
    for section in layers:
        kind = doc.get_str(section, "Type")
        strict = kind in STRICT_LAYERS and not doc.has_key(section, "ActivationFunction")
        _check(doc, section, KNOWN[kind], strict=strict, what=f"[{section}] (Type={kind})")


def _check(doc: IniDocument, section: str, known: tuple[str, ...], *, strict: bool, what: str) -> None:
    matchers = [wildcard(p) for p in known]
    unknown = [k for k in doc.unread(section) if not any(m(k) for m in matchers)]
    if not unknown:
        return
    if strict:
        file, line = doc.where(section, unknown[0])
        raise IRCError(f"unknown property {unknown[0]!r} in {what}", file=file, line=line,
                       hint="N2D2 refuses unknown keys here too: fix the spelling or remove it; known keys: "
                            + ", ".join(known))
    for key in unknown:
        file, line = doc.where(section, key)
        warnings.warn(f"{file}:{line}: {what} has a key N2D2 does not read here: {key!r} (ignored)", IniWarning,
                      stacklevel=4)
