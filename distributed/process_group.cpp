#include <blockopt/distributed/process_group.h>

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace blockopt::distributed {

namespace {

constexpr auto kHeartbeatPeriod = std::chrono::milliseconds(250);

c10::intrusive_ptr<c10d::TCPStore> connect_store(const std::string& host, int port, bool server,
                                                 std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(port);
  options.isServer = server;
  options.waitWorkers = false;
  options.timeout = timeout;
#if TORCH_VERSION_MAJOR >= 2
  options.useLibUV = false;  // NOTE: Debian's LibTorch 2.x may be built without libuv
#endif
  return c10::make_intrusive<c10d::TCPStore>(host, options);
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master_addr) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname) {
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  }
  if (is_loopback(master_addr)) return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

std::string heartbeat_key(int rank) { return "blockopt/heartbeat/" + std::to_string(rank); }

}  // namespace

std::vector<std::string> available_backends() { return {"gloo"}; }

struct ProcessGroup::Impl {
  LaunchEnvironment env;
  GroupOptions options;
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;

  // NOTE: every rank bumps a counter in the store while it lives, on a connection of its
  // own; when a collective fails, the counters that stopped name the ranks that died.
  c10::intrusive_ptr<c10d::TCPStore> heartbeat_store;
  std::thread heartbeat;
  std::mutex mutex;
  std::condition_variable stop_signal;
  bool stopping = false;

  void beat() {
    std::unique_lock<std::mutex> lock(mutex);
    while (!stopping) {
      try {
        heartbeat_store->add(heartbeat_key(env.rank), 1);
      } catch (const std::exception&) {
        return;  // the store is gone: the next collective reports it
      }
      stop_signal.wait_for(lock, kHeartbeatPeriod, [this] { return stopping; });
    }
  }

  // "rank 1 stopped responding (...)" / "every rank is alive: one is hung, or slower than the
  // timeout".
  std::string diagnose() const {
    try {
      auto counts = [&] {
        std::vector<int64_t> c;
        for (int r = 0; r < env.world_size; ++r) c.push_back(store->add(heartbeat_key(r), 0));
        return c;
      };
      const auto before = counts();
      std::this_thread::sleep_for(kHeartbeatPeriod * 6);
      const auto after = counts();
      std::string dead;
      for (int r = 0; r < env.world_size; ++r) {
        if (r != env.rank && after[r] == before[r]) dead += (dead.empty() ? "" : ", ") + std::to_string(r);
      }
      if (dead.empty()) return "every rank is alive: one is hung, or slower than the timeout";
      return "rank " + dead + " stopped responding (died, was killed or is frozen)";
    } catch (const std::exception&) {
      return env.launcher_hosts_store ? "the launcher's store is unreachable (the launcher died)"
                                      : "rank 0, which hosts the store, is unreachable (it died)";
    }
  }

  [[noreturn]] void fail(const std::string& what, const std::exception& e) const {
    throw std::runtime_error("rank " + std::to_string(env.rank) + ": " + what + " failed: " +
                             diagnose() + " [" + e.what() + "]");
  }

  ~Impl() {
    {
      std::lock_guard<std::mutex> lock(mutex);
      stopping = true;
    }
    stop_signal.notify_all();
    if (heartbeat.joinable()) heartbeat.join();
  }
};

struct ProcessGroup::Pending::Work {
  const ProcessGroup::Impl* group;
  std::string what;
  c10::intrusive_ptr<c10d::Work> work;
};

ProcessGroup::Pending::Pending(std::unique_ptr<Work> work) : work_(std::move(work)) {}
ProcessGroup::Pending::~Pending() = default;
ProcessGroup::Pending::Pending(Pending&&) noexcept = default;
ProcessGroup::Pending& ProcessGroup::Pending::operator=(Pending&&) noexcept = default;

void ProcessGroup::Pending::wait() {
  if (!work_) return;
  try {
    work_->work->wait(work_->group->options.timeout);
  } catch (const std::exception& e) {
    work_->group->fail(work_->what, e);
  }
  work_.reset();
}

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;

std::shared_ptr<ProcessGroup> ProcessGroup::join(const LaunchEnvironment& env,
                                                 const GroupOptions& options) {
  const auto where = "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size);
  if (options.backend != "gloo") {
    throw std::invalid_argument(where + ": backend '" + options.backend +
                                "' is not available in this LibTorch (CPU build: gloo)");
  }
  auto impl = std::make_unique<Impl>();
  impl->env = env;
  impl->options = options;
  try {
    impl->store = connect_store(env.master_addr, env.master_port, env.store_server(), options.timeout);
    impl->heartbeat_store = connect_store(env.master_addr, env.master_port, false, options.timeout);
    auto gloo = c10d::ProcessGroupGloo::Options::create(options.timeout);
    gloo->devices.push_back(gloo_device(env.master_addr));
    impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, env.rank,
                                                              env.world_size, gloo);
  } catch (const std::exception& e) {
    throw std::runtime_error(where + ": cannot join the job at " + env.master_addr + ":" +
                             std::to_string(env.master_port) + " within " +
                             std::to_string(options.timeout.count() / 1000) + " s: " + e.what());
  }
  impl->heartbeat = std::thread([raw = impl.get()] { raw->beat(); });
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

int ProcessGroup::rank() const { return impl_->env.rank; }
int ProcessGroup::size() const { return impl_->env.world_size; }
const GroupOptions& ProcessGroup::options() const { return impl_->options; }

ProcessGroup::Pending ProcessGroup::start_allreduce_sum(const torch::Tensor& tensor) {
  // c10d takes a list with one tensor per device.
  std::vector<torch::Tensor> tensors{tensor};
  try {
    return Pending(std::make_unique<Pending::Work>(
        Pending::Work{impl_.get(), "allreduce", impl_->group->allreduce(tensors)}));
  } catch (const std::exception& e) {
    impl_->fail("allreduce", e);
  }
}

void ProcessGroup::allreduce_sum(const torch::Tensor& tensor) { start_allreduce_sum(tensor).wait(); }

void ProcessGroup::broadcast(const torch::Tensor& tensor, int root) {
  std::vector<torch::Tensor> tensors{tensor};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  try {
    impl_->group->broadcast(tensors, options)->wait(impl_->options.timeout);
  } catch (const std::exception& e) {
    impl_->fail("broadcast from rank " + std::to_string(root), e);
  }
}

void ProcessGroup::barrier() {
  try {
    impl_->group->barrier()->wait(impl_->options.timeout);
  } catch (const std::exception& e) {
    impl_->fail("barrier", e);
  }
}

void ProcessGroup::store_set(const std::string& key, const std::string& value) {
  try {
    impl_->store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
  } catch (const std::exception& e) {
    impl_->fail("store set of " + key, e);
  }
}

std::string ProcessGroup::store_get(const std::string& key) {
  try {
    const auto bytes = impl_->store->get(key);
    return std::string(bytes.begin(), bytes.end());
  } catch (const std::exception& e) {
    impl_->fail("store get of " + key, e);
  }
}

struct StoreServer::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
};

StoreServer::StoreServer(const std::string& host) : impl_(std::make_unique<Impl>()) {
  // Port 0: the system picks a free port, which port() then reports.
  impl_->store = connect_store(host, 0, true, std::chrono::milliseconds(60'000));
}
StoreServer::~StoreServer() = default;
int StoreServer::port() const { return impl_->store->getPort(); }

}  // namespace blockopt::distributed
