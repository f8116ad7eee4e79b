#include <blockopt/hessian/detail/blas_threads.h>

#include <dlfcn.h>

#include <mutex>

namespace blockopt::hessian::detail {

namespace {

using SetThreads = void (*)(int);
using GetThreads = int (*)();

SetThreads set_threads_function() {
  static const auto f =
      reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  return f;
}

GetThreads get_threads_function() {
  static const auto f =
      reinterpret_cast<GetThreads>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return f;
}

// The SingleThreadedBlas scopes open in any thread: the outermost sets the count to one and
// the last to close restores it.
struct SingleThreadedScopes {
  std::mutex mutex;
  int depth = 0;
  int saved = 0;  // the count before the outermost scope
};

SingleThreadedScopes& scopes() {
  static SingleThreadedScopes s;
  return s;
}

}  // namespace

int openblas_threads() {
  const auto get = get_threads_function();
  return get != nullptr ? get() : 0;
}

bool set_openblas_threads(int threads) {
  const auto set = set_threads_function();
  if (set == nullptr) return false;
  set(threads);
  return true;
}

SingleThreadedBlas::SingleThreadedBlas() {
  auto& s = scopes();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.depth++ == 0) {
    s.saved = openblas_threads();
    if (s.saved > 1) set_openblas_threads(1);
  }
}

SingleThreadedBlas::~SingleThreadedBlas() {
  auto& s = scopes();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (--s.depth == 0 && s.saved > 1) set_openblas_threads(s.saved);
}

}  // namespace blockopt::hessian::detail
