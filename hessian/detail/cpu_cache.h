#pragma once
// A scoped cache for CPU tensor memory, so that loops of autograd calls reuse their buffers.
#include <cstdint>

namespace blockopt::hessian::detail {

// For its lifetime, LibTorch's CPU allocations come from a cache: a freed tensor's memory is
// kept and handed to the next allocation of the same size, from any thread. The previous CPU
// allocator is restored and the cache released when the outermost scope closes; memory still
// held by tensors then goes back to the system when they are freed.
// NOTE: glibc's default malloc gives freed blocks above its mmap threshold, and free memory at
// the top of a heap, back to the kernel, so a loop that frees and reallocates the same tensors
// takes page faults every time: the full-Hessian row loop ran 1.8x slower in a plain program
// than under configure_runtime()'s malloc settings (bench_hessian). The cache makes the loop
// independent of the process's malloc settings. LibTorch has no CPU caching allocator outside
// its mobile build, hence this one. The allocator is process-wide, so other threads'
// allocations during the scope are cached too; a block is reused only at its exact size, so
// memory held is at most the loop's peak per size.
class ScopedCpuCache {
 public:
  ScopedCpuCache();
  ~ScopedCpuCache();
  ScopedCpuCache(const ScopedCpuCache&) = delete;
  ScopedCpuCache& operator=(const ScopedCpuCache&) = delete;
};

// Counts since the process started: allocations the cache took from the system, and those it
// served from freed blocks.
struct CpuCacheCounts {
  int64_t fresh = 0;
  int64_t reused = 0;
};
CpuCacheCounts cpu_cache_counts();

}  // namespace blockopt::hessian::detail
