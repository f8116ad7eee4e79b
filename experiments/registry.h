#pragma once
// Builds models and data sources from config sections; defaults come from the option
// structs in models/.
#include <blockopt/experiments/config.h>
#include <blockopt/data/data.h>
#include <blockopt/models/model.h>

#include <memory>

namespace blockopt::experiments {

// `dtype`: the floating type of generated features (runtime.dtype); token ids stay int64.
std::shared_ptr<data::DataSource> build_data(ConfigNode node, uint64_t seed,
                                             torch::Dtype dtype = torch::kFloat32);
std::shared_ptr<models::Model> build_model(ConfigNode node, const data::DataSource& data);

}  // namespace blockopt::experiments
