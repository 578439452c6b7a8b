"""The sampler paths by name, as `generate(impl=...)` and `wavenet-generate impl=...` take
them; no torch, so configs check an `impl` without loading the sampler."""

# Sampler paths (`generate(impl=...)`, `wavenet-generate impl=...`):
#   compiled        numba loop, the model's own float32/float64 weights (the exact fast path)
#   compiled-bf16   numba loop, matrices stored as bfloat16, float32 arithmetic
#   compiled-int8   numba loop, matrices stored as int8 (a scale per row), int16-rounded inputs,
#                   exact int32 sums (x86 with AVX2)
#   reference       CachedSampler.step in PyTorch ops, any device and dtype
#   cuda-graph      CachedSampler.step captured as one CUDA graph (wavenet.sampling.cuda_graph)
#   auto            the fastest of these that runs here and is accurate enough (`resolve_impl`)
IMPLS = ("auto", "compiled", "compiled-bf16", "compiled-int8", "reference", "cuda-graph")
STORAGE = {"compiled": "float32", "compiled-bf16": "bfloat16", "compiled-int8": "int8"}
