"""A thin layer over llvmlite.ir for writing loops and typed memory access.

Loop counters and accumulators are allocas in the entry block; LLVM's SROA
turns them into registers, so the generated IR stays simple to read and
to emit.
"""
from __future__ import annotations

from contextlib import contextmanager

import llvmlite.ir as ir

I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()
VOID = ir.VoidType()
TYPES = {"f32": F32, "f64": F64, "i32": I32, "i64": I64, "u8": I8, "u32": I32, "u64": I64}


def i64(v: int) -> ir.Constant:
    return ir.Constant(I64, int(v))


def i32(v: int) -> ir.Constant:
    return ir.Constant(I32, int(v))


def f32(v: float) -> ir.Constant:
    return ir.Constant(F32, float(v))


def f64(v: float) -> ir.Constant:
    return ir.Constant(F64, float(v))


class Function:
    """A function under construction: an entry block for allocas and pointers, a builder for the body."""

    def __init__(self, module: ir.Module, name: str, argtypes: list, argnames: list[str], noalias: bool = True):
        self.fn = ir.Function(module, ir.FunctionType(VOID, argtypes), name)
        for arg, n in zip(self.fn.args, argnames):
            arg.name = n
            if noalias and isinstance(arg.type, ir.PointerType):
                arg.add_attribute("noalias")
        self.args = {n: a for n, a in zip(argnames, self.fn.args)}
        self.entry = ir.IRBuilder(self.fn.append_basic_block("entry"))
        self.b = ir.IRBuilder(self.fn.append_basic_block("body"))

    def finish(self) -> None:
        self.entry.branch(self.fn.basic_blocks[1])
        if not self.b.block.is_terminated:
            self.b.ret_void()

    # ------------------------------------------------------------ memory
    def var(self, ty, name: str = "v", init=None):
        ptr = self.entry.alloca(ty, name=name)
        if init is not None:
            self.entry.store(init, ptr)
        return ptr

    def region(self, base_arg: str, byte_offset: int, dtype: str, name: str):
        """A typed pointer into one of the byte blobs, computed once in the entry block."""
        raw = self.entry.gep(self.args[base_arg], [i64(byte_offset)], inbounds=True)
        return self.entry.bitcast(raw, TYPES[dtype].as_pointer(), name=name)

    def at(self, ptr, index):
        return self.b.gep(ptr, [index], inbounds=True)

    def load(self, ptr, index):
        return self.b.load(self.at(ptr, index))

    def store(self, value, ptr, index) -> None:
        self.b.store(value, self.at(ptr, index))

    # ------------------------------------------------------------ control
    @contextmanager
    def loop(self, start, stop, name: str = "i"):
        """for (i = start; i < stop; i++) — yields i (i64)."""
        b = self.b
        start = i64(start) if isinstance(start, int) else start
        stop = i64(stop) if isinstance(stop, int) else stop
        counter = self.var(I64, name)
        b.store(start, counter)
        head = b.append_basic_block(name + ".head")
        body = b.append_basic_block(name + ".body")
        done = b.append_basic_block(name + ".done")
        b.branch(head)
        b.position_at_end(head)
        i = b.load(counter)
        b.cbranch(b.icmp_signed("<", i, stop), body, done)
        b.position_at_end(body)
        yield i
        b.store(b.add(i, i64(1)), counter)
        b.branch(head)
        b.position_at_end(done)

    @contextmanager
    def when(self, cond):
        with self.b.if_then(cond):
            yield

    def select(self, cond, a, b_):
        return self.b.select(cond, a, b_)
