// Compiled (not linked) by build.add_subdirectory: blockopt's headers resolve in a parent project.
#include <blockopt/optim/adamw.h>

int main() {
  auto weight = torch::zeros({2, 2}, torch::requires_grad());
  blockopt::optim::AdamW optimizer({weight});
  return 0;
}
