"""CUDA code generation for the cuda and spike-cuda targets (kernels launched through cupy)."""
