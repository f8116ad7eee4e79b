#pragma once
// Hessian probes as trainer callbacks: at chosen steps compute block norms, the full Hessian,
// Lanczos top eigenvalues, Hutchinson estimates or SLQ spectra on the data's evaluation set
// and write them under RunDirectory::hessian_dir(): one JSON line per probe step in
// probes.jsonl, .npy arrays and PNG heatmaps / histograms named <type>_<step>_*.
// A probe never changes training: it draws from its own generator, restores the global RNG
// and the train/eval mode, and leaves parameters and .grad() untouched.
#include <blockopt/experiments/config.h>
#include <blockopt/experiments/run_dir.h>
#include <blockopt/experiments/trainer.h>

#include <filesystem>
#include <string>
#include <vector>

namespace blockopt::experiments {

struct ProbeSpec {
  std::string type;             // block_norms | full_hessian | lanczos | hutchinson | slq |
                                // row_heterogeneity | output_ratio | row_ratio
                                // (experiments/probes/<type>.cpp, listed in probes/registry.cpp)
  int64_t every = 0;            // probe at steps 0, every, 2 every, ... (0 = use `steps`)
  std::vector<int64_t> steps;   // explicit probe steps (0 = at initialisation)
  std::string partition = "per_tensor";  // per_tensor | per_row | per_head
  int64_t head_dim = 0;         // for per_head
  int64_t samples = 8;          // Hutchinson samples per block / SLQ start vectors
  int64_t rows = 8;             // row_heterogeneity, row_ratio: rows per weight matrix
  std::vector<std::string> tensors;  // row_ratio: matrices whose name contains one (empty: all)
  int64_t top_k = 5;
  int64_t lanczos_steps = 30;
  std::string dtype = "float64";  // float64 | float32 (MLPs; other models use their own)
  int64_t full_limit = 10000;   // block_norms: exact from the full H up to this many params
  std::string method = "auto";  // block_norms: auto | full | matrix_free (probes/block_norms.cpp)
  int64_t save_limit = 2048;    // full H written as .npy up to this many params

  bool due(int64_t step) const;
};

// Reads the `probes:` list; errors name the YAML path and line.
std::vector<ProbeSpec> read_probe_specs(std::vector<ConfigNode> nodes);

class HessianProbe : public Callback {
 public:
  // Throws std::invalid_argument for a spec of an unknown type. An empty `dir`: the probes
  // run (a rank of a data-parallel job other than 0 takes part in their sums) but write nothing.
  HessianProbe(std::vector<ProbeSpec> specs, std::filesystem::path dir, uint64_t seed);
  void on_train_begin(Trainer& trainer) override;  // probes due at the current step (e.g. 0)
  void on_step_end(Trainer& trainer, const StepMetrics& m) override;

  // Runs every probe due at `step` now.
  void probe(Trainer& trainer, int64_t step);

 private:
  std::vector<ProbeSpec> specs_;
  std::filesystem::path dir_;
  uint64_t seed_;
  std::unique_ptr<JsonlWriter> writer_;
};

}  // namespace blockopt::experiments
