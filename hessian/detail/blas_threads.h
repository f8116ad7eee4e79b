#pragma once
// OpenBLAS's own thread count, looked up at run time.
// NOTE: libblas.so.3 may be OpenBLAS or the reference BLAS (Debian alternatives), and only
// OpenBLAS has a thread pool, so its functions are found with dlsym rather than linked.

namespace blockopt::hessian::detail {

// OpenBLAS's thread count, or 0 when the BLAS in use is not OpenBLAS.
int openblas_threads();
// Sets OpenBLAS's thread count (process-wide); false when the BLAS is not OpenBLAS.
bool set_openblas_threads(int threads);

// Runs OpenBLAS on one thread for its lifetime and then restores the previous count, for code
// that runs GEMMs side by side on torch's intra-op threads.
// NOTE: OpenBLAS's pthread build does not notice that it is called from a parallel region;
// two callers that each start OpenBLAS's threads on two cores made the full-Hessian row loop
// 10x slower (bench_hessian, BLOCKOPT_BENCH_PLAIN=1). The setting is process-wide: other
// threads' GEMMs in that time also run on one thread.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
};

}  // namespace blockopt::hessian::detail
