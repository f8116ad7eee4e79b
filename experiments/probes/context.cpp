#include <blockopt/experiments/detail/heatmap.h>
#include <blockopt/experiments/detail/marchenko_pastur.h>
#include <blockopt/experiments/detail/npy.h>
#include <blockopt/experiments/detail/png.h>
#include <blockopt/experiments/detail/probe.h>
#include <blockopt/experiments/run_dir.h>
#include <blockopt/hessian/estimators.h>
#include <blockopt/hessian/mlp_block_norms.h>
#include <blockopt/models/mlp.h>

#include <fmt/format.h>

namespace blockopt::experiments::detail {

namespace bh = blockopt::hessian;

ProbeTarget make_probe_target(Trainer& trainer, const ProbeSpec& spec) {
  ProbeTarget t;
  std::vector<torch::Tensor> xs, ys;
  for (const auto& batch : trainer.data().eval_batches()) {
    xs.push_back(batch.inputs);
    ys.push_back(batch.targets);
  }
  t.x = t.all_x = torch::cat(xs);
  t.y = t.all_y = torch::cat(ys);
  if (auto* parallel = trainer.data_parallel()) {
    // Rows [r N / W, (r + 1) N / W): every rank gets some, no two the same.
    const int64_t n = t.x.size(0), w = parallel->world_size(), r = parallel->rank();
    if (n < w) {
      throw std::invalid_argument(fmt::format("Hessian probe: the evaluation set has {} rows, "
                                              "fewer than the {} ranks", n, w));
    }
    const int64_t begin = r * n / w, end = (r + 1) * n / w;
    t.x = t.x.narrow(0, begin, end - begin);
    t.y = t.y.narrow(0, begin, end - begin);
    t.share = static_cast<double>(end - begin) / static_cast<double>(n);
    t.sum_over_ranks = [parallel](const torch::Tensor& values) {
      if (values.is_contiguous()) return parallel->group().allreduce_sum(values);
      auto dense = values.contiguous();
      parallel->group().allreduce_sum(dense);
      values.copy_(dense);
    };
  }
  t.loss_kind = trainer.loss_kind();
  auto& model = trainer.model();
  t.model = &model;
  auto* mlp = dynamic_cast<models::MLP*>(&model);
  if (mlp != nullptr) {
    const auto dtype = spec.dtype == "float64" ? torch::kFloat64 : torch::kFloat32;
    for (const auto& item : model.named_parameters()) {
      t.params.push_back(item.value().detach().to(dtype).clone().requires_grad_(true));
      t.infos.push_back({item.key(), item.value().sizes().vec()});
    }
    t.activation = mlp->options().activation();
    t.bias = mlp->options().bias();
    t.x = t.x.reshape({t.x.size(0), -1}).to(dtype);
    t.closed_form = true;
    t.loss = [params = t.params, act = t.activation, x = t.x, y = t.y, kind = t.loss_kind,
              bias = t.bias, share = t.share] {
      return models::compute_loss(bh::mlp_forward(params, act, x, bias), y, kind) * share;
    };
  } else {
    for (const auto& item : model.named_parameters()) {
      if (!item.value().requires_grad()) continue;
      t.params.push_back(item.value());
      t.infos.push_back({item.key(), item.value().sizes().vec()});
    }
    t.loss = [&model, x = t.x, y = t.y, kind = t.loss_kind, share = t.share] {
      return models::compute_loss(model.forward(x), y, kind) * share;
    };
  }
  t.options = t.params.front().options().requires_grad(false);
  return t;
}

torch::Tensor rows_reached(const torch::Tensor& gradient, int64_t begin, int64_t rows, int64_t width) {
  return gradient.slice(0, begin, begin + rows * width).view({rows, width}).abs().amax(1).gt(0)
      .nonzero().squeeze(1);
}

nlohmann::json to_json(const torch::Tensor& t) {
  auto d = t.detach().to(torch::kDouble).contiguous();
  if (d.dim() == 0) return d.item<double>();
  nlohmann::json out = nlohmann::json::array();
  for (int64_t i = 0; i < d.size(0); ++i) out.push_back(to_json(d[i]));
  return out;
}

ProbeContext::ProbeContext(const ProbeSpec& spec, ProbeTarget target, at::Generator generator,
                           const std::filesystem::path& dir, int64_t step, size_t index)
    : spec(spec),
      target(std::move(target)),
      op(this->target.loss, this->target.params, this->target.sum_over_ranks),
      generator(std::move(generator)),
      partition(bh::make_partition(spec.partition, this->target.infos, spec.head_dim)),
      parameter_count(op.size()),
      record{{"step", step}, {"type", spec.type}, {"probe", index}, {"params", parameter_count},
             {"partition", spec.partition}, {"loss", op.loss().item<double>()}},
      dir_(dir),
      prefix_(fmt::format("{}_{:06d}_{}", spec.type, step, index)) {}

torch::Tensor ProbeContext::full_hessian() {
  record["method"] = target.closed_form ? "closed_form" : "autograd";
  if (target.closed_form) {
    auto h = bh::mlp_hessian_closed_form(target.params, target.activation, target.x, target.y,
                                         target.loss_kind, target.bias);
    if (target.sum_over_ranks) {
      h.mul_(target.share);
      target.sum_over_ranks(h);
    }
    return h;
  }
  return bh::full_hessian(op);
}

std::string ProbeContext::matrix_free_unavailable() const {
  if (!target.closed_form) return "the model is not an MLP";
  if (target.bias) return "the MLP has biases";
  if (target.params.size() > 2) {
    return fmt::format("the MLP has {} hidden layers (at most 1)", target.params.size() - 1);
  }
  if (spec.partition != "per_row") return "partition " + spec.partition + " (needs per_row)";
  return "";
}

torch::Tensor ProbeContext::matrix_free_block_norms() {
  const auto why_not = matrix_free_unavailable();
  if (!why_not.empty()) {
    throw std::invalid_argument("block_norms probe, method matrix_free: " + why_not);
  }
  record["method"] = "matrix_free";
  return bh::mlp_block_norms(target.params, target.activation, target.all_x, target.all_y,
                             target.loss_kind);
}

void ProbeContext::estimated_block_norms() {
  auto estimate = bh::hutchinson_block_norms(bh::as_matvec(op), partition, spec.samples,
                                             generator, target.options);
  record["method"] = "hutchinson";
  block_outputs(estimate.norms);
  save("_blocks_stderr.npy", estimate.stderr_norms);
}

void ProbeContext::save(const std::string& suffix, const torch::Tensor& t) {
  if (dir_.empty()) return;
  write_npy(dir_ / (prefix_ + suffix), t);
  files.push_back(prefix_ + suffix);
}

void ProbeContext::heatmap(const std::string& suffix, const torch::Tensor& t,
                           const std::string& key, Index index, const std::string& label) {
  if (dir_.empty()) return;
  auto [lo, hi] = write_heatmap_png(dir_ / (prefix_ + suffix), t, /*log_scale=*/true);
  files.push_back(prefix_ + suffix);
  record[key] = {{"log10_min", lo}, {"log10_max", hi}};
  // Each tensor's range: its blocks' [begin, end) in parameters, or their indices.
  std::vector<TensorRange> tensors;
  for (int64_t b = 0; b < partition.size(); ++b) {
    const auto& block = partition.blocks[b];
    const int64_t begin = index == Index::Blocks ? b : block.begin;
    const int64_t end = index == Index::Blocks ? b + 1 : block.end;
    const auto& name = target.infos[block.tensor].name;
    if (tensors.empty() || tensors.back().name != name) tensors.push_back({name, begin, end});
    tensors.back().end = end;
  }
  const auto stem = prefix_ + suffix.substr(0, suffix.rfind(".png"));
  write_file_atomic(dir_ / (stem + ".heatmap.json"), heatmap_spec(t, tensors, stem, label).dump());
  files.push_back(stem + ".heatmap.json");
}

void ProbeContext::block_outputs(const torch::Tensor& norms) {
  save("_blocks.npy", norms);
  heatmap("_blocks.png", norms, "blocks_colour_scale", Index::Blocks, "log10 ||H_ij||_F");
  // r_ij = ||H_ij||_F / ||H_ii||_F, summarised (hessian/partition.h).
  auto s = bh::off_diagonal_ratios(norms, partition);
  record["blocks"] = partition.size();
  record["ratio_mean"] = s.mean;
  record["ratio_max"] = s.max;
  record["ratio_by_tensor_pair"] = to_json(s.by_tensor_pair);
  record["ratio_sq_mean"] = s.squared_mean;
  record["ratio_sq_by_tensor_pair"] = to_json(s.squared_by_tensor_pair);
  record["norm_sq_ratio"] = s.squared_norm_ratio;
  record["norm_sq_ratio_by_tensor_pair"] = to_json(s.squared_norm_ratio_by_tensor_pair);
  record["blocks_without_ratio"] = s.rows_without_ratio;
}

nlohmann::json ProbeContext::spectrum_fit(const std::string& suffix,
                                          const torch::Tensor& eigenvalues) {
  auto fit = fit_marchenko_pastur(eigenvalues);
  const auto name = prefix_ + suffix + "_hist.png";
  if (!dir_.empty()) {
    write_histogram_png(dir_ / name, fit.counts, fit.density);
    files.push_back(name);
  }
  return {{"mp_sigma2", fit.sigma2}, {"mp_ratio", fit.ratio}, {"edges", to_json(fit.edges)},
          {"counts", to_json(fit.counts)}, {"mp_density", to_json(fit.density)}};
}

}  // namespace blockopt::experiments::detail
