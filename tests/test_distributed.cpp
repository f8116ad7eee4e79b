// Data parallel training over c10d/Gloo: the launcher's environment, bucketed gradient
// averaging, a dead rank named in the error, and 2 ranks against 1 process end to end.
#include <blockopt/distributed/data_parallel.h>
#include <blockopt/distributed/optimizer_sharding.h>
#include <blockopt/optim/detail/compat.h>
#include <blockopt/optim/muon.h>
#include <blockopt/optim/state.h>
#include <blockopt/experiments/process.h>
#include <blockopt/experiments/run.h>

#include "common.h"

#include <ATen/CPUGeneratorImpl.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <thread>

namespace dist = blockopt::distributed;
namespace ex = blockopt::experiments;
namespace fs = std::filesystem;
using blockopt::test::error_of;
using blockopt::test::fresh_dir;
using ::testing::HasSubstr;

namespace {

// Sets environment variables for one test and restores them after.
class ScopedEnvironment {
 public:
  void set(const std::string& name, const std::string& value) {
    remember(name);
    setenv(name.c_str(), value.c_str(), 1);
  }
  void unset(const std::string& name) {
    remember(name);
    unsetenv(name.c_str());
  }
  ~ScopedEnvironment() {
    for (const auto& [name, value] : saved_) {
      if (value) setenv(name.c_str(), value->c_str(), 1);
      else unsetenv(name.c_str());
    }
  }

 private:
  void remember(const std::string& name) {
    if (saved_.count(name)) return;
    const char* value = std::getenv(name.c_str());
    saved_[name] = value ? std::optional<std::string>(value) : std::nullopt;
  }
  std::map<std::string, std::optional<std::string>> saved_;
};

const std::vector<std::string> kJobVariables = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                                "MASTER_ADDR", "MASTER_PORT",
                                                "TORCHELASTIC_USE_AGENT_STORE"};

// Runs `body(rank)` on `world` threads, each one rank of a job whose store this thread hosts.
void run_ranks(int world, const std::function<void(std::shared_ptr<dist::ProcessGroup>)>& body,
               std::chrono::milliseconds timeout = std::chrono::milliseconds(20'000)) {
  dist::StoreServer store("127.0.0.1");
  std::vector<std::thread> threads;
  std::vector<std::string> errors(world);
  for (int rank = 0; rank < world; ++rank) {
    threads.emplace_back([&, rank] {
      dist::GroupOptions options;
      options.timeout = timeout;
      errors[rank] = error_of([&] {
        body(dist::ProcessGroup::join(dist::local_launch(rank, world, store.port()), options));
      });
    });
  }
  for (auto& t : threads) t.join();
  for (int rank = 0; rank < world; ++rank) EXPECT_EQ(errors[rank], "") << "rank " << rank;
}

}  // namespace

TEST(DistributedTest, LaunchEnvironmentReadsTorchrunsVariables) {
  ScopedEnvironment env;
  for (const auto& name : kJobVariables) env.unset(name);
  EXPECT_FALSE(dist::launch_environment_from_env().has_value());

  env.set("WORLD_SIZE", "4");
  env.set("RANK", "2");
  env.set("MASTER_ADDR", "10.0.0.7");
  env.set("MASTER_PORT", "29511");
  env.set("LOCAL_WORLD_SIZE", "2");
  env.set("LOCAL_RANK", "0");
  const auto job = dist::launch_environment_from_env();
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->rank, 2);
  EXPECT_EQ(job->world_size, 4);
  EXPECT_EQ(job->local_rank, 0);
  EXPECT_EQ(job->local_world_size, 2);
  EXPECT_EQ(job->master_addr, "10.0.0.7");
  EXPECT_EQ(job->master_port, 29511);
  EXPECT_FALSE(job->launcher_hosts_store);
  EXPECT_FALSE(job->store_server());  // rank 2: a client of rank 0's store

  // The variables round-trip through environment_variables (what the launcher sets).
  for (const auto& [name, value] : dist::environment_variables(*job)) env.set(name, value);
  const auto again = dist::launch_environment_from_env();
  EXPECT_EQ(again->rank, 2);
  EXPECT_EQ(again->master_port, 29511);
  EXPECT_EQ(again->local_world_size, 2);
}

TEST(DistributedTest, MalformedLaunchVariablesAreNamed) {
  ScopedEnvironment env;
  for (const auto& name : kJobVariables) env.unset(name);
  env.set("WORLD_SIZE", "2");
  env.set("MASTER_ADDR", "127.0.0.1");
  env.set("MASTER_PORT", "29500");
  EXPECT_THAT(error_of([] { dist::launch_environment_from_env(); }), HasSubstr("RANK is not set"));
  env.set("RANK", "2");
  EXPECT_THAT(error_of([] { dist::launch_environment_from_env(); }),
              HasSubstr("RANK='2' is not an integer in [0, 1]"));
  env.set("RANK", "1");
  env.set("MASTER_PORT", "http");
  EXPECT_THAT(error_of([] { dist::launch_environment_from_env(); }), HasSubstr("MASTER_PORT='http'"));
  env.set("MASTER_PORT", "29500");
  env.unset("MASTER_ADDR");
  EXPECT_THAT(error_of([] { dist::launch_environment_from_env(); }), HasSubstr("MASTER_ADDR is not set"));
}

TEST(DistributedTest, GradientsAreAveragedOverBucketsOfOneDtype) {
  // Parameters of 10, 20 and 30 float32 values (40, 80, 120 bytes) and one float64 of 5:
  // with 100-byte buckets, taken in reverse order, the buckets are {3} (a dtype of its own),
  // {2} (120 >= 100) and {1, 0} (80 + 40).
  const std::vector<int64_t> sizes = {10, 20, 30, 5};
  const int world = 3;
  auto gradient = [](int rank, size_t i, const torch::Tensor& like) {
    return torch::arange(like.numel(), like.options()).mul(rank + 1.0).add(static_cast<double>(i));
  };
  run_ranks(world, [&](std::shared_ptr<dist::ProcessGroup> group) {
    const int rank = group->rank();
    std::vector<torch::Tensor> params;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const auto dtype = i == 3 ? torch::kFloat64 : torch::kFloat32;
      params.push_back(torch::zeros({sizes[i]}, dtype));
      params.back().mutable_grad() = gradient(rank, i, params.back());
    }
    dist::DataParallel parallel(group, params, 100);
    EXPECT_EQ(parallel.bucket_count(), 3);
    parallel.average_gradients();
    for (size_t i = 0; i < params.size(); ++i) {
      auto mean = torch::zeros_like(params[i]);
      for (int r = 0; r < world; ++r) mean += gradient(r, i, params[i]);
      mean /= world;
      EXPECT_TRUE(torch::allclose(params[i].grad(), mean, 1e-6, 0.0)) << "parameter " << i;
    }
  });
}

// Overlap: buckets start during the last backward pass (two micro-batches here), and the
// averaged gradients equal those of averaging after backward bit for bit.
TEST(DistributedTest, OverlappedAveragingStartsBucketsDuringBackwardAndAgrees) {
  run_ranks(2, [](std::shared_ptr<dist::ProcessGroup> group) {
    auto gradients = [&](bool overlap) {
      // Each rank its own data, from a generator of its own (the ranks are threads).
      auto generator = at::make_generator<at::CPUGeneratorImpl>(3 + group->rank());
      auto net = torch::nn::Sequential(torch::nn::Linear(6, 8), torch::nn::Tanh(),
                                       torch::nn::Linear(8, 3));
      for (auto& p : net->parameters()) {
        torch::NoGradGuard no_grad;
        p.copy_(torch::linspace(-1, 1, p.numel()).view(p.sizes()));
      }
      // 32-byte buckets, parameters in reverse order: {bias 2 (12 B) + weight 2 (96 B)},
      // {bias 1 (32 B)}, {weight 1 (192 B)}: 3 buckets.
      dist::DataParallel parallel(group, net->parameters(), 32, overlap);
      for (int micro = 0; micro < 2; ++micro) {
        auto x = torch::randn({5, 6}, generator);
        if (micro == 1) parallel.prepare_last_backward();
        net->forward(x).square().mean().backward();
      }
      EXPECT_EQ(parallel.bucket_count(), 3);
      EXPECT_EQ(parallel.buckets_started_in_backward(), overlap ? 3 : 0);
      parallel.average_gradients();
      std::vector<torch::Tensor> grads;
      for (auto& p : net->parameters()) grads.push_back(p.grad().clone());
      return grads;
    };
    const auto after = gradients(false);
    const auto during = gradients(true);
    for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(torch::equal(after[i], during[i])) << i;
  });
}

TEST(DistributedTest, BroadcastGivesEveryRankRankZerosParameters) {
  run_ranks(2, [](std::shared_ptr<dist::ProcessGroup> group) {
    std::vector<torch::Tensor> params = {torch::full({2, 3}, group->rank() + 1.0),
                                         torch::full({4}, 10.0 * (group->rank() + 1))};
    dist::DataParallel parallel(group, params, 16);
    parallel.broadcast_parameters();
    EXPECT_TRUE(torch::equal(params[0], torch::ones({2, 3})));
    EXPECT_TRUE(torch::equal(params[1], torch::full({4}, 10.0)));
  });
}

TEST(DistributedTest, LocalRowsSplitTheGlobalBatchEvenly) {
  run_ranks(2, [](std::shared_ptr<dist::ProcessGroup> group) {
    dist::DataParallel parallel(group, {torch::zeros({1})}, 1024);
    const auto batch = torch::arange(12).view({6, 2});
    EXPECT_TRUE(torch::equal(parallel.local_rows(batch), batch.narrow(0, 3 * group->rank(), 3)));
    EXPECT_THAT(error_of([&] { parallel.local_rows(torch::zeros({5})); }),
                HasSubstr("a global batch of 5 rows does not split evenly over 2 ranks"));
  });
}

TEST(DistributedTest, UnknownBackendIsAnErrorNamingIt) {
  dist::LaunchEnvironment env;
  dist::GroupOptions options;
  options.backend = "nccl";
  EXPECT_THAT(error_of([&] { dist::ProcessGroup::join(env, options); }),
              HasSubstr("backend 'nccl' is not available"));
}

// A rank that disappears (here: leaves without a word) makes the others' collective fail
// with an error that names it, long before the timeout.
TEST(DistributedTest, ACollectiveWithADeadRankNamesIt) {
  const auto timeout = std::chrono::milliseconds(30'000);
  dist::StoreServer store("127.0.0.1");
  std::string error;
  std::chrono::duration<double> waited{};
  auto join = [&](int rank) {
    dist::GroupOptions options;
    options.timeout = timeout;
    return dist::ProcessGroup::join(dist::local_launch(rank, 2, store.port()), options);
  };
  std::shared_ptr<dist::ProcessGroup> rank0;
  std::thread leaver([&] {
    auto rank1 = join(1);
    rank1->barrier();
  });  // rank 1's group is destroyed here: its connections close, its heartbeat stops
  rank0 = join(0);
  rank0->barrier();
  leaver.join();
  const auto start = std::chrono::steady_clock::now();
  error = error_of([&] { rank0->allreduce_sum(torch::ones({4})); });
  waited = std::chrono::steady_clock::now() - start;
  EXPECT_THAT(error, HasSubstr("rank 0: allreduce failed: rank 1 stopped responding"));
  EXPECT_LT(waited.count(), std::chrono::duration<double>(timeout).count());
}

namespace {

int wait_status(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// `blockopt run <config> --out <out> --no-progress [extra...]`, logged to `log`; returns the
// exit code (128 + signal when killed).
int run_cli(const fs::path& config, const fs::path& out, const fs::path& log,
            const std::vector<std::string>& extra = {}) {
  std::vector<std::string> args = {BLOCKOPT_CLI_PATH, "run", config.string(), "--out", out.string(),
                                   "--no-progress"};
  args.insert(args.end(), extra.begin(), extra.end());
  const int status = wait_status(ex::spawn_logged(args, log, false));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string log_of(const fs::path& log) {
  std::ifstream in(log);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

fs::path write_config(const fs::path& dir, const std::string& text) {
  std::ofstream(dir / "run.yaml") << text;
  return dir / "run.yaml";
}

// Writes `config` to <dir>/run.yaml and runs it as one process into <dir>/one and as
// `--nproc 2` plus `two_extra` into <dir>/two; both must succeed.
fs::path run_one_and_two_ranks(const fs::path& dir, const std::string& config,
                               const std::vector<std::string>& two_extra = {}) {
  const auto path = write_config(dir, config);
  EXPECT_EQ(run_cli(path, dir / "one", dir / "one.log"), 0) << log_of(dir / "one.log");
  std::vector<std::string> extra = {"--nproc", "2"};
  extra.insert(extra.end(), two_extra.begin(), two_extra.end());
  EXPECT_EQ(run_cli(path, dir / "two", dir / "two.log", extra), 0) << log_of(dir / "two.log");
  return path;
}

// The parameters in a run directory's checkpoint.
std::vector<torch::Tensor> checkpoint_parameters(const std::string& config, const fs::path& run) {
  auto e = ex::build_experiment(YAML::Load(config), "test");
  torch::serialize::InputArchive model;
  ex::read_checkpoint(run / "checkpoint.pt").read("model", model);
  e.model->load(model);
  return e.model->parameters();
}

// Every optimizer state tensor in a run directory's checkpoint, parameter after parameter.
std::vector<torch::Tensor> checkpoint_optimizer_state(const std::string& config, const fs::path& run) {
  auto e = ex::build_experiment(YAML::Load(config), "test");
  torch::serialize::InputArchive optimizer;
  ex::read_checkpoint(run / "checkpoint.pt").read("optimizer", optimizer);
  e.optimizer->load(optimizer);
  std::vector<torch::Tensor> tensors;
  for (const auto& group : e.optimizer->param_groups()) {
    for (const auto& p : group.params()) {
      const auto& state = e.optimizer->state();
      auto it = state.find(blockopt::optim::state_key(p));
      EXPECT_NE(it, state.end()) << "no state for a parameter of shape " << p.sizes();
      if (it == state.end()) continue;
      const auto* listed = dynamic_cast<const blockopt::optim::StateTensors*>(it->second.get());
      for (const auto& t : listed->state_tensors()) tensors.push_back(t.defined() ? t : torch::zeros({0}));
    }
  }
  return tensors;
}

// max over parameters of ||a - b|| / ||a||.
double max_relative_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    worst = std::max(worst, (a[i] - b[i]).norm().item<double>() / a[i].norm().item<double>());
  }
  return worst;
}

std::vector<double> logged_losses(const fs::path& run) {
  std::vector<double> losses;
  std::ifstream metrics(run / "metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    auto record = nlohmann::json::parse(line);
    if (record.contains("loss") && !record.contains("accuracy")) losses.push_back(record["loss"]);
  }
  return losses;
}

std::string mlp_config(const std::string& optimizer, int64_t steps) {
  return "name: dp\nseed: 3\nruntime: {dtype: float64, threads: 1}\n"
         "data: {type: gaussian, samples: 128, dim: 12, classes: 6, batch: 32}\n"
         "model: {type: mlp, hidden: [16, 8]}\n"
         "optimizer: " + optimizer + "\n"
         "schedule: {type: cosine, warmup: 3}\n"
         "distributed: {timeout_s: 20}\n"
         "train: {steps: " + std::to_string(steps) +
         ", eval_every: 10, checkpoint_every: 10, log_every: 1000}\n";
}


}  // namespace

namespace {

// Every number in `a` equals the one at the same place in `b` to rtol * magnitude + atol;
// strings and structure match exactly. Left out: timing, file lists and histogram counts
// (integers that jump when an eigenvalue sits on a bin edge).
void expect_same_record(const nlohmann::json& a, const nlohmann::json& b, double rtol, double atol,
                        const std::string& where) {
  ASSERT_EQ(a.type(), b.type()) << where;
  if (a.is_number()) {
    const double x = a.get<double>(), y = b.get<double>();
    EXPECT_LE(std::abs(x - y), rtol * std::max(std::abs(x), std::abs(y)) + atol) << where;
  } else if (a.is_object()) {
    for (const auto& [key, value] : a.items()) {
      if (key == "seconds" || key == "files" || key == "counts") continue;
      ASSERT_TRUE(b.contains(key)) << where << "." << key;
      expect_same_record(value, b.at(key), rtol, atol, where + "." + key);
    }
  } else if (a.is_array()) {
    ASSERT_EQ(a.size(), b.size()) << where;
    for (size_t i = 0; i < a.size(); ++i) {
      expect_same_record(a[i], b[i], rtol, atol, where + "[" + std::to_string(i) + "]");
    }
  } else {
    EXPECT_EQ(a, b) << where;
  }
}

std::vector<nlohmann::json> probe_records(const fs::path& run) {
  std::vector<nlohmann::json> records;
  std::ifstream in(run / "hessian" / "probes.jsonl");
  for (std::string line; std::getline(in, line);) records.push_back(nlohmann::json::parse(line));
  return records;
}

}  // namespace

// The same global batch on 2 ranks and on 1 process: float64 parameters agree to 1e-12 after
// 20 steps for every optimizer (the ranks' half-batch gradients are averaged, which only
// reorders the sum of the per-sample terms). The sharded optimizer equals the unsharded one.
class DataParallelOptimizerTest : public ::testing::TestWithParam<const char*> {};

TEST_P(DataParallelOptimizerTest, TwoRanksMatchOneProcess) {
  const std::string optimizer = GetParam();
  const auto dir = fresh_dir("dp_" + optimizer);
  const std::map<std::string, std::string> settings = {
      {"adamw", "{name: adamw, lr: 0.01}"},
      {"adam_mini", "{name: adam_mini, lr: 0.01}"},
      {"muon", "{name: muon, lr: 0.02, fallback: {lr: 0.01}}"},
      {"normuon", "{name: normuon, lr: 0.02, fallback: {lr: 0.01}}"},
      {"aurora", "{name: aurora, lr: 0.02, fallback: {lr: 0.01}}"},
      {"asgo", "{name: asgo, lr: 0.01}"}};
  const auto config = mlp_config(settings.at(optimizer), 20);
  const auto path = run_one_and_two_ranks(dir, config, {"--set", "distributed.shard_optimizer=false"});
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(run_cli(path, dir / "sharded", dir / "sharded.log",
                    {"--nproc", "2", "--set", "distributed.shard_optimizer=true"}),
            0) << log_of(dir / "sharded.log");
  EXPECT_LT(max_relative_difference(checkpoint_parameters(config, dir / "one"),
                                    checkpoint_parameters(config, dir / "two")),
            1e-12);
  // Sharded: each matrix stepped by its owner alone, the same numbers bit for bit; the
  // checkpoint holds every parameter's state, gathered on rank 0.
  const auto unsharded = checkpoint_parameters(config, dir / "two");
  const auto sharded = checkpoint_parameters(config, dir / "sharded");
  for (size_t i = 0; i < unsharded.size(); ++i) EXPECT_TRUE(torch::equal(unsharded[i], sharded[i])) << i;
  const auto state = checkpoint_optimizer_state(config, dir / "two");
  const auto sharded_state = checkpoint_optimizer_state(config, dir / "sharded");
  ASSERT_EQ(state.size(), sharded_state.size());
  for (size_t i = 0; i < state.size(); ++i) EXPECT_TRUE(torch::equal(state[i], sharded_state[i])) << i;
  const auto summary = nlohmann::json::parse(log_of(dir / "sharded" / "summary.json"));
  EXPECT_EQ(summary["world_size"], 2);
  EXPECT_EQ(summary["data_parallel"]["optimizer_sharded"], true);
  // Each rank holds part of the state: together as much as one process, each less.
  const auto per_rank = summary["data_parallel"]["optimizer_state_bytes_per_rank"].get<std::vector<double>>();
  const auto whole = nlohmann::json::parse(log_of(dir / "one" / "summary.json"))["optimizer_state_bytes"].get<double>();
  ASSERT_EQ(per_rank.size(), 2u);
  EXPECT_EQ(per_rank[0] + per_rank[1], whole);
  EXPECT_LT(per_rank[0], whole);
  EXPECT_LT(per_rank[1], whole);
  // Rank 1 wrote nothing of its own and logged only as "[rank 1]".
  EXPECT_THAT(log_of(dir / "two.log"), HasSubstr("[rank 0]"));
}

INSTANTIATE_TEST_SUITE_P(EveryOptimizer, DataParallelOptimizerTest,
                         ::testing::Values("adamw", "adam_mini", "muon", "normuon", "aurora", "asgo"));

// Overlapped averaging in a real run: 2 ranks with grad_accum 2, the same parameters bit for
// bit as averaging after backward.
TEST(DataParallelCliTest, OverlapGivesTheSameRunBitForBit) {
  const auto dir = fresh_dir("dp_overlap");
  const auto path = write_config(dir, mlp_config("{name: adamw, lr: 0.01}", 20));
  const std::vector<std::string> base = {"--nproc", "2", "--set", "train.grad_accum=2"};
  auto with = [&](const std::string& overlap) {
    auto args = base;
    args.insert(args.end(), {"--set", "distributed.overlap=" + overlap});
    return args;
  };
  ASSERT_EQ(run_cli(path, dir / "after", dir / "after.log", with("false")), 0) << log_of(dir / "after.log");
  ASSERT_EQ(run_cli(path, dir / "during", dir / "during.log", with("true")), 0) << log_of(dir / "during.log");
  const auto config = ex::read_file(path);
  const auto after = checkpoint_parameters(config, dir / "after");
  const auto during = checkpoint_parameters(config, dir / "during");
  for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(torch::equal(after[i], during[i])) << i;
  EXPECT_EQ(nlohmann::json::parse(log_of(dir / "during" / "summary.json"))["data_parallel"]["overlap"], true);
}

// The small GPT in float32: the loss curves of 2 ranks and 1 process agree to 1e-5.
TEST(DataParallelCliTest, GptLossCurvesOfTwoRanksMatchOneProcess) {
  BLOCKOPT_REQUIRE_INSTALLED("/usr/bin/bible", "bible-kjv");
  const auto dir = fresh_dir("dp_gpt");
  const std::string config =
      "name: dp-gpt\nseed: 1\n"
      "data: {type: text, corpus: kjv, tokenizer: {type: byte}, context: 32, batch: 8, eval_windows: 8}\n"
      "model: {type: gpt, d_model: 32, layers: 2, heads: 2}\n"
      "optimizer: {name: adamw, lr: 3.0e-3}\n"
      "train: {steps: 15, eval_every: 5, grad_clip: 1.0}\n"
      "probes: [{type: lanczos, steps: [0, 15], top_k: 2, lanczos_steps: 8, dtype: float32}]\n";
  run_one_and_two_ranks(dir, config);
  ASSERT_FALSE(HasFailure());
  const auto one = logged_losses(dir / "one");
  const auto two = logged_losses(dir / "two");
  ASSERT_EQ(one.size(), 15u);
  ASSERT_EQ(two.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) EXPECT_NEAR(two[i], one[i], 1e-5) << "step " << i + 1;
  // The autograd Hessian path (not the MLP closed form): Lanczos on 2 ranks, float32.
  const auto probes_one = probe_records(dir / "one");
  const auto probes_two = probe_records(dir / "two");
  ASSERT_EQ(probes_one.size(), 2u);
  ASSERT_EQ(probes_two.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    expect_same_record(probes_one[i].at("top_eigenvalues"), probes_two[i].at("top_eigenvalues"),
                       1e-4, 0.0, "lanczos " + std::to_string(i));
  }
}

namespace {

// Two ranks of `blockopt run <config> --out <out>` started as torchrun starts them (RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT; rank 0 hosts the store), logging to
// <logs>/rank<r>.log; returns their pids.
std::vector<pid_t> start_ranks_as_torchrun(const fs::path& config, const fs::path& out,
                                           const fs::path& logs,
                                           const std::vector<std::string>& extra) {
  int port = 0;
  {
    dist::StoreServer probe("127.0.0.1");  // a free port, released for rank 0 to take
    port = probe.port();
  }
  std::vector<pid_t> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    ex::SpawnOptions options;
    options.log = logs / ("rank" + std::to_string(rank) + ".log");
    options.environment = {{"RANK", std::to_string(rank)}, {"WORLD_SIZE", "2"},
                           {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", std::to_string(port)},
                           {"TORCHELASTIC_USE_AGENT_STORE", "False"}};
    std::vector<std::string> args = {BLOCKOPT_CLI_PATH, "run", config.string(), "--out",
                                     out.string(), "--no-progress"};
    args.insert(args.end(), extra.begin(), extra.end());
    ranks.push_back(ex::spawn(args, options));
  }
  return ranks;
}

}  // namespace

// A rank killed mid-run (SIGKILL) makes rank 0 exit with an error naming it, well within
// timeout_s and without a half-written checkpoint. The job, started again with 2 ranks, ends
// bit-identical to an uninterrupted one; started with 1 process (the sharded state was
// gathered into the checkpoint) it ends within float64 tolerance of it. The ranks are started as torchrun would (RANK, WORLD_SIZE, ... and rank
// 0 hosting the store).
TEST(DataParallelCliTest, KilledRankIsNamedAndTheRunResumes) {
  const auto dir = fresh_dir("dp_kill");
  // Muon: sharded over the ranks (shard_optimizer auto), so each checkpoint gathers its state.
  const auto config = mlp_config("{name: muon, lr: 0.02, fallback: {lr: 0.01}}", 400);
  const auto path = write_config(dir, config);
  ASSERT_EQ(run_cli(path, dir / "whole", dir / "whole.log", {"--nproc", "2"}), 0)
      << log_of(dir / "whole.log");

  const auto killed = dir / "killed";
  const auto ranks = start_ranks_as_torchrun(path, killed, dir, {});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(killed / "checkpoint.pt") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  kill(ranks[1], SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  const int status0 = wait_status(ranks[0]);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  wait_status(ranks[1]);
  const auto log0 = log_of(dir / "rank0.log");
  ASSERT_TRUE(WIFEXITED(status0) && WEXITSTATUS(status0) == 2) << log0;
  EXPECT_THAT(log0, HasSubstr("rank 1 stopped responding"));
  EXPECT_LT(waited, 20.0);  // timeout_s
  EXPECT_FALSE(fs::exists(killed / "checkpoint.pt.tmp"));
  EXPECT_FALSE(fs::exists(killed / "summary.json"));

  fs::copy(killed, dir / "killed_copy", fs::copy_options::recursive);
  ASSERT_EQ(run_cli(path, killed, dir / "resumed2.log", {"--nproc", "2"}), 0) << log_of(dir / "resumed2.log");
  EXPECT_THAT(log_of(dir / "resumed2.log"), HasSubstr("resuming"));
  const auto whole = checkpoint_parameters(config, dir / "whole");
  const auto same_n = checkpoint_parameters(config, killed);
  for (size_t i = 0; i < whole.size(); ++i) EXPECT_TRUE(torch::equal(whole[i], same_n[i])) << i;

  ASSERT_EQ(run_cli(path, dir / "killed_copy", dir / "resumed1.log"), 0) << log_of(dir / "resumed1.log");
  EXPECT_LT(max_relative_difference(whole, checkpoint_parameters(config, dir / "killed_copy")), 1e-12);
}


// The Hessian probes under data parallel: each rank differentiates its rows of the evaluation
// set and the products are summed over the ranks, so Lanczos, Hutchinson, the closed-form
// full Hessian and the block norms give one process's numbers (float64: to 1e-9 relative,
// 1e-12 absolute for eigenvalues at zero; Lanczos and Hutchinson draw the same vectors on
// every rank).
TEST(DataParallelCliTest, HessianProbesMatchOneProcess) {
  const auto dir = fresh_dir("dp_probes");
  // 90 evaluation rows: 45 per rank, a batch of 30 split 15 / 15.
  const std::string config =
      "name: dp-probes\nseed: 4\nruntime: {dtype: float64, threads: 1}\n"
      "data: {type: gaussian, samples: 90, dim: 6, classes: 4, batch: 30}\n"
      "model: {type: mlp, hidden: [8], activation: tanh}\n"
      "optimizer: {name: adamw, lr: 0.01}\n"
      "train: {steps: 6, eval_every: 3}\n"
      "probes:\n"
      "  - {type: lanczos, steps: [0, 6], top_k: 3, lanczos_steps: 15, dtype: float64}\n"
      "  - {type: hutchinson, steps: [6], partition: per_tensor, samples: 3, dtype: float64}\n"
      "  - {type: block_norms, steps: [6], partition: per_row, dtype: float64}\n"
      "  - {type: full_hessian, steps: [6], partition: per_tensor, dtype: float64}\n";
  run_one_and_two_ranks(dir, config);
  ASSERT_FALSE(HasFailure());
  const auto one = probe_records(dir / "one");
  const auto two = probe_records(dir / "two");
  ASSERT_EQ(one.size(), 5u);
  ASSERT_EQ(two.size(), one.size());
  for (size_t i = 0; i < one.size(); ++i) {
    expect_same_record(one[i], two[i], 1e-9, 1e-12, one[i]["type"].get<std::string>() + "@" +
                                                 std::to_string(one[i]["step"].get<int64_t>()));
  }
  EXPECT_EQ(one[4]["method"], "closed_form");
  // Only rank 0 wrote the probe files.
  EXPECT_TRUE(fs::exists(dir / "two" / "hessian" / (one[4]["files"][0].get<std::string>())));
}

// The sharded step: owners balance the work (largest first, to the least loaded rank), each
// rank keeps the state of what it owns, the parameters after 3 Muon steps equal an unsharded
// Muon's bit for bit, and gathering puts every state, bit for bit, on rank 0.
TEST(DistributedTest, ShardedMuonStepsLikeTheUnshardedOneAndGathersItsState) {
  namespace bo = blockopt::optim;
  // Work (numel x min side): 8x8 -> 512, 16x4 -> 256, 4x4 -> 64, the 10-vector -> 10:
  // rank 0 gets the 8x8, rank 1 the rest (256 + 64 + 10 = 330 < 512).
  const std::vector<std::vector<int64_t>> shapes = {{4, 4}, {16, 4}, {8, 8}, {10}};
  const std::vector<int> expected_owners = {1, 1, 0, 1};
  // Drawn once here: the rank threads only copy them (the global generator is not thread-safe).
  torch::manual_seed(7);
  std::vector<torch::Tensor> initial;
  for (const auto& shape : shapes) initial.push_back(torch::randn(shape, torch::kFloat64));
  auto make_params = [&] {
    torch::OrderedDict<std::string, torch::Tensor> named;
    for (size_t i = 0; i < shapes.size(); ++i) {
      named.insert("layer" + std::to_string(i) + (shapes[i].size() == 1 ? ".bias" : ".weight"),
                   initial[i].clone().requires_grad_(true));
    }
    return named;
  };
  auto gradient = [](size_t step, const torch::Tensor& p) {
    return torch::sin(torch::arange(p.numel(), p.options()).view(p.sizes()) * (step + 1.0));
  };
  // The unsharded reference.
  auto reference_params = make_params();
  bo::Muon reference(reference_params, bo::MuonOptions().lr(0.05));
  for (size_t step = 0; step < 3; ++step) {
    for (auto& p : reference_params.values()) p.mutable_grad() = gradient(step, p);
    reference.step();
  }
  run_ranks(2, [&](std::shared_ptr<dist::ProcessGroup> group) {
    auto params = make_params();
    bo::Muon muon(params, bo::MuonOptions().lr(0.05));
    dist::OptimizerSharding sharding(group, muon);
    std::vector<torch::Tensor> in_order;
    for (const auto& g : muon.param_groups()) {
      for (const auto& p : g.params()) in_order.push_back(p);
    }
    const auto values = params.values();
    for (size_t i = 0; i < in_order.size(); ++i) {
      const auto at = std::find_if(values.begin(), values.end(),
                                   [&](const torch::Tensor& p) { return p.is_same(in_order[i]); }) -
                      values.begin();
      EXPECT_EQ(sharding.owner(i), expected_owners[at]) << "parameter " << at;
    }
    for (size_t step = 0; step < 3; ++step) {
      for (auto& p : params.values()) p.mutable_grad() = gradient(step, p);
      sharding.step();
    }
    for (size_t i = 0; i < shapes.size(); ++i) {
      EXPECT_TRUE(torch::equal(params.values()[i], reference_params.values()[i])) << "parameter " << i;
    }
    EXPECT_EQ(muon.state().size(), group->rank() == 0 ? 1u : 3u);
    sharding.gather_state_on_rank0();
    if (group->rank() != 0) return;
    ASSERT_EQ(muon.state().size(), shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      const auto& mine = static_cast<const bo::MuonParamState&>(
          *muon.state().at(bo::state_key(params.values()[i])));
      const auto& theirs = static_cast<const bo::MuonParamState&>(
          *reference.state().at(bo::state_key(reference_params.values()[i])));
      EXPECT_EQ(mine.step(), theirs.step()) << i;
      const auto a = mine.state_tensors(), b = theirs.state_tensors();
      ASSERT_EQ(a.size(), b.size());
      for (size_t k = 0; k < a.size(); ++k) {
        EXPECT_EQ(a[k].defined(), b[k].defined());
        if (a[k].defined()) {
          EXPECT_TRUE(torch::equal(a[k], b[k])) << "parameter " << i << " tensor " << k;
        }
      }
    }
    sharding.release_unowned_state();
    EXPECT_EQ(muon.state().size(), 1u);
  });
}

// A frozen rank (SIGSTOP: its heartbeat stops too) makes rank 0 fail once timeout_s has
// passed, naming it, instead of waiting forever.
TEST(DataParallelCliTest, FrozenRankFailsTheJobAfterTheTimeout) {
  const auto dir = fresh_dir("dp_frozen");
  const double timeout_s = 5.0;
  const auto config = mlp_config("{name: adamw, lr: 0.01}", 100000);
  const auto path = write_config(dir, config);
  const auto out = dir / "frozen";
  const auto ranks = start_ranks_as_torchrun(
      path, out, dir, {"--set", "distributed.timeout_s=" + std::to_string(timeout_s)});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(out / "checkpoint.pt") && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  kill(ranks[1], SIGSTOP);
  const auto frozen_at = std::chrono::steady_clock::now();
  const int status0 = wait_status(ranks[0]);
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - frozen_at).count();
  kill(ranks[1], SIGKILL);
  wait_status(ranks[1]);
  const auto log0 = log_of(dir / "rank0.log");
  ASSERT_TRUE(WIFEXITED(status0) && WEXITSTATUS(status0) == 2) << log0;
  EXPECT_THAT(log0, HasSubstr("rank 1 stopped responding"));
  EXPECT_GE(waited, timeout_s * 0.9);  // Gloo waited for the timeout ...
  EXPECT_LT(waited, timeout_s + 10.0);  // ... and not much longer (diagnosis: 1.5 s)
  EXPECT_FALSE(fs::exists(out / "checkpoint.pt.tmp"));
}
