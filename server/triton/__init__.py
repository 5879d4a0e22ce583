"""Remote inference on NVIDIA Triton Inference Server."""
