#include <blockopt/hessian/detail/cpu_cache.h>
#include <blockopt/optim/detail/compat.h>

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>

#include <mutex>
#include <unordered_map>
#include <vector>

namespace blockopt::hessian::detail {

namespace {

// Each block starts with a header holding its size; the tensor's data follows, keeping
// c10::alloc_cpu's 64-byte alignment.
constexpr size_t kHeaderBytes = 64;

class CachingCpuAllocator final : public optim::detail::AllocatorBase {
 public:
  static CachingCpuAllocator& instance() {
    static auto* allocator = new CachingCpuAllocator();  // never destroyed: late frees use it
    return *allocator;
  }

  void open() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (depth_++ > 0) return;
    replaced_ = c10::GetCPUAllocator();
    c10::SetCPUAllocator(this);
    caching_ = c10::GetCPUAllocator() == this;  // refused if installed with a higher priority
  }

  void close() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (--depth_ > 0) return;
    if (caching_) c10::SetCPUAllocator(replaced_);
    caching_ = false;
    for (auto& [size, blocks] : free_) {
      for (void* block : blocks) c10::free_cpu(block);
    }
    free_.clear();
  }

  CpuCacheCounts counts() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return counts_;
  }

 protected:
  c10::DataPtr allocate_bytes(size_t nbytes) const override {
    const c10::Device cpu(c10::DeviceType::CPU);
    if (nbytes == 0) return {nullptr, cpu};
    void* block = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto found = free_.find(nbytes);
      if (found != free_.end() && !found->second.empty()) {
        block = found->second.back();
        found->second.pop_back();
        ++counts_.reused;
      } else {
        ++counts_.fresh;
      }
    }
    if (block == nullptr) {
      block = c10::alloc_cpu(kHeaderBytes + nbytes);
      *static_cast<size_t*>(block) = nbytes;
    }
    return {static_cast<char*>(block) + kHeaderBytes, block, &release, cpu};
  }

 private:
  static void release(void* block) { instance().keep_or_free(block); }

  void keep_or_free(void* block) const {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (caching_) {
        free_[*static_cast<size_t*>(block)].push_back(block);
        return;
      }
    }
    c10::free_cpu(block);
  }

  mutable std::mutex mutex_;
  mutable std::unordered_map<size_t, std::vector<void*>> free_;  // freed blocks by data size
  mutable CpuCacheCounts counts_;
  int depth_ = 0;                      // open scopes, over all threads
  bool caching_ = false;               // installed as LibTorch's CPU allocator
  c10::Allocator* replaced_ = nullptr;  // the CPU allocator before the outermost scope
};

}  // namespace

ScopedCpuCache::ScopedCpuCache() { CachingCpuAllocator::instance().open(); }

ScopedCpuCache::~ScopedCpuCache() { CachingCpuAllocator::instance().close(); }

CpuCacheCounts cpu_cache_counts() { return CachingCpuAllocator::instance().counts(); }

}  // namespace blockopt::hessian::detail
