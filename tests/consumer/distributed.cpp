// Links blockopt::distributed alone: a one-rank job on loopback averages a gradient over
// itself and reads the launcher variables back from the environment.
#include <blockopt/distributed/data_parallel.h>

#include <cstdlib>
#include <iostream>

int main() {
  namespace dist = blockopt::distributed;
  dist::StoreServer server("127.0.0.1");
  dist::LaunchEnvironment env;
  env.master_port = server.port();
  env.launcher_hosts_store = true;
  for (const auto& [name, value] : dist::environment_variables(env)) setenv(name.c_str(), value.c_str(), 1);
  const auto joined = dist::launch_environment_from_env();
  if (!joined || joined->master_port != server.port()) return 1;
  auto weight = torch::ones({3}, torch::requires_grad());
  (weight * 2.0).sum().backward();
  dist::DataParallel parallel(dist::ProcessGroup::join(*joined, {}), {weight}, 1 << 20);
  parallel.average_gradients();
  std::cout << "distributed: gradient " << weight.grad() << std::endl;
  return torch::equal(weight.grad(), torch::full({3}, 2.0)) ? 0 : 1;
}
