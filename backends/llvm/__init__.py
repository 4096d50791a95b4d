"""LLVM code generation for the spike-llvm target (llvmlite, JIT-compiled)."""
