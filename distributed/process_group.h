#pragma once
// A process group over c10d: the rendezvous store and the backend's collectives, behind an
// interface that names the rank in every error. c10d and Gloo stay out of this header, so a
// program using blockopt::distributed needs neither libgloo-dev nor c10d's headers.
#include <blockopt/distributed/launch_environment.h>

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace blockopt::distributed {

struct GroupOptions {
  // c10d backend: gloo (CPU). nccl would be the one-word change on a CUDA build of LibTorch.
  std::string backend = "gloo";
  // How long a collective or the rendezvous waits for the other ranks before it fails.
  std::chrono::milliseconds timeout{60'000};
};

// The backends this build of LibTorch can run.
std::vector<std::string> available_backends();

class ProcessGroup {
 public:
  // Joins the job `env` describes: connects to the TCPStore at master_addr:master_port (rank
  // 0 hosts it unless the launcher does), then creates the backend's process group. Gloo's
  // device is GLOO_SOCKET_IFNAME's interface when set, loopback for a loopback master, and
  // the host's default otherwise (as torch.distributed does). Throws naming the rank when the
  // backend is unknown or the rendezvous times out.
  static std::shared_ptr<ProcessGroup> join(const LaunchEnvironment& env, const GroupOptions& options);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const;
  int size() const;
  const GroupOptions& options() const;

  // A started collective; wait() rethrows its failure as a std::runtime_error naming the
  // rank, the collective and the peer that failed, when it can be identified.
  class Pending {
   public:
    void wait();
    ~Pending();
    Pending(Pending&&) noexcept;
    Pending& operator=(Pending&&) noexcept;

   private:
    friend class ProcessGroup;
    struct Work;
    Pending(std::unique_ptr<Work> work);
    std::unique_ptr<Work> work_;
  };

  // Sum over the ranks, in place; every rank passes a contiguous tensor of the same shape and
  // dtype.
  Pending start_allreduce_sum(const torch::Tensor& tensor);
  void allreduce_sum(const torch::Tensor& tensor);
  // `root`'s values to every rank, in place.
  void broadcast(const torch::Tensor& tensor, int root);
  void barrier();

  // Small values through the rendezvous store: set() by one rank, get() waits for the key.
  void store_set(const std::string& key, const std::string& value);
  std::string store_get(const std::string& key);

 private:
  struct Impl;
  explicit ProcessGroup(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The rendezvous store hosted by a launcher (`blockopt run --nproc`), as torchrun's agent
// does: a TCPStore server on a free port of `host`; the ranks join it as clients.
class StoreServer {
 public:
  explicit StoreServer(const std::string& host);
  ~StoreServer();
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace blockopt::distributed
