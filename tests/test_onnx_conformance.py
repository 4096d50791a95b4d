"""ONNX's own node conformance cases for the ops irc claims, run through irc.

`onnx.backend.test` generates each case in memory (a one-node model plus
inputs and expected outputs computed by onnx's reference implementation) and
compares irc's outputs with them.  Exclusions carry their reason.
"""
import numpy as np
import onnx
import onnx.backend.test
from onnx.backend.base import Backend, BackendRep

import irc
from irc.frontends.onnx import from_model


def bake_constants(model: onnx.ModelProto, values: dict) -> onnx.ModelProto:
    """Turn the given graph inputs into initializers.

    irc compiles a network for its data input; weights, shapes, pads and clip
    bounds are constants of the network.  The conformance cases feed them as
    graph inputs, so every input but the first is baked in before compiling.
    """
    baked = onnx.ModelProto()
    baked.CopyFrom(model)
    keep = [vi for vi in baked.graph.input if vi.name not in values]
    del baked.graph.input[:]
    baked.graph.input.extend(keep)
    for name, arr in values.items():
        baked.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(arr), name))
    return baked


class IrcRep(BackendRep):
    def __init__(self, model):
        self.model = model
        init = {t.name for t in model.graph.initializer}
        self.input_names = [vi.name for vi in model.graph.input if vi.name not in init]

    def run(self, inputs, **kwargs):
        if not isinstance(inputs, dict):
            inputs = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            inputs = dict(zip(self.input_names, inputs))
        data = self.input_names[0]
        consts = {k: v for k, v in inputs.items() if k != data}
        program = irc.compile(from_model(bake_constants(self.model, consts)), target="numpy", verify=True)
        outs = program.run(inputs[data])
        return tuple(outs) if isinstance(outs, list) else (outs,)


class IrcBackend(Backend):
    @classmethod
    def is_compatible(cls, model, device="CPU", **kwargs):
        return True

    @classmethod
    def prepare(cls, model, device="CPU", **kwargs):
        super().prepare(model, device, **kwargs)
        return IrcRep(model)

    @classmethod
    def supports_device(cls, device):
        return device == "CPU"


CLAIMED = [
    r"^test_(basic_)?conv_", r"^test_maxpool_", r"^test_averagepool_", r"^test_globalaveragepool",
    r"^test_globalmaxpool", r"^test_gemm_", r"^test_matmul_", r"^test_add", r"^test_sub", r"^test_mul",
    r"^test_div", r"^test_relu", r"^test_leakyrelu", r"^test_clip", r"^test_sigmoid", r"^test_tanh",
    r"^test_softmax_", r"^test_logsoftmax_", r"^test_batchnorm_", r"^test_dropout_", r"^test_identity",
    r"^test_flatten_", r"^test_reshape_", r"^test_transpose_", r"^test_concat_", r"^test_constant_pad",
    r"^test_squeeze", r"^test_unsqueeze",
]

backend_test = onnx.backend.test.BackendTest(IrcBackend, __name__)
for pattern in CLAIMED:
    backend_test.include(pattern + r".*_cpu$")
# Not claimed: these cases exercise features outside the ops' inference semantics.
backend_test.exclude(r"_training_")            # BatchNorm/Dropout in training mode
backend_test.exclude(r"maxpool_with_argmax")   # the Indices output
backend_test.exclude(r"_expanded")             # function-expanded variants use other ops (ReduceMax, Exp, ...)
backend_test.exclude(r"test_identity_(opt|sequence)")  # optional / sequence types

globals().update(backend_test.test_cases)
