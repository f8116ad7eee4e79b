#include <blockopt/experiments/probes.h>
#include <blockopt/hessian/estimators.h>
#include <blockopt/hessian/operator.h>
#include <blockopt/hessian/partition.h>
#include <blockopt/models/mlp.h>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_image_write.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>

namespace blockopt::experiments {

namespace bh = blockopt::hessian;

// ---------------------------------------------------------------- config

bool ProbeSpec::due(int64_t step) const {
  if (every > 0) return step % every == 0;
  return std::find(steps.begin(), steps.end(), step) != steps.end();
}

std::vector<ProbeSpec> read_probe_specs(std::vector<ConfigNode> nodes) {
  std::vector<ProbeSpec> specs;
  for (auto& node : nodes) {
    ProbeSpec s;
    s.type = node.get<std::string>("type");
    const std::vector<std::string> types = {"block_norms", "full_hessian", "lanczos",
                                            "hutchinson", "slq"};
    node.check(std::find(types.begin(), types.end(), s.type) != types.end(), "type",
               "expected block_norms, full_hessian, lanczos, hutchinson or slq");
    s.every = node.get<int64_t>("every", s.every);
    node.check(s.every >= 0, "every", "must be >= 0");
    try {
      s.steps = node.get<std::vector<int64_t>>("steps", s.steps);
    } catch (const ConfigError& e) {
      // spec/architecture.md's example wrote `steps: 50` for the Lanczos iterations.
      throw ConfigError(std::string(e.what()) +
                        " (steps lists the training steps to probe at, e.g. [0, 100]; the Lanczos "
                        "iteration count is lanczos_steps)");
    }
    node.check(s.every > 0 || !s.steps.empty(), "every", "give `every: k` or `steps: [..]`");
    s.partition = node.get<std::string>("partition", s.partition);
    s.head_dim = node.get<int64_t>("head_dim", s.head_dim);
    node.check(s.partition != "per_head" || s.head_dim > 0, "head_dim",
               "per_head partitions need head_dim > 0");
    node.check(s.partition == "per_tensor" || s.partition == "per_row" || s.partition == "per_head",
               "partition", "expected per_tensor, per_row or per_head");
    s.samples = node.get<int64_t>("samples", s.samples);
    node.check(s.samples >= 2, "samples", "must be >= 2");
    s.top_k = node.get<int64_t>("top_k", s.top_k);
    node.check(s.top_k >= 1, "top_k", "must be >= 1");
    s.lanczos_steps = node.get<int64_t>("lanczos_steps", s.lanczos_steps);
    node.check(s.lanczos_steps >= 2, "lanczos_steps", "must be >= 2");
    s.dtype = node.get<std::string>("dtype", s.dtype);
    node.check(s.dtype == "float64" || s.dtype == "float32", "dtype", "expected float64 or float32");
    s.full_limit = node.get<int64_t>("full_limit", s.full_limit);
    s.save_limit = node.get<int64_t>("save_limit", s.save_limit);
    specs.push_back(std::move(s));
  }
  return specs;
}

// ---------------------------------------------------------------- arrays and images

void write_npy(const std::filesystem::path& path, const torch::Tensor& tensor) {
  auto t = tensor.detach().contiguous();
  std::string descr;
  switch (t.scalar_type()) {
    case torch::kFloat64: descr = "<f8"; break;
    case torch::kFloat32: descr = "<f4"; break;
    case torch::kInt64: descr = "<i8"; break;
    default: t = t.to(torch::kFloat64); descr = "<f8";
  }
  std::string shape;  // "a, b"; a 1-d shape is "a,"
  for (int64_t d = 0; d < t.dim(); ++d) shape += (d > 0 ? ", " : "") + std::to_string(t.size(d));
  if (t.dim() == 1) shape += ",";
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
  // Magic (6) + version (2) + length (2) + header + '\n' padded to a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size());
  write_file_atomic(path, out);
}

namespace {

// Viridis, 5 stops, linearly interpolated; u in [0, 1].
std::array<uint8_t, 3> colour(double u) {
  static const double stops[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140},
                                     {94, 201, 98}, {253, 231, 37}};
  u = std::clamp(u, 0.0, 1.0) * 4.0;
  const int i = std::min(3, static_cast<int>(u));
  const double f = u - i;
  std::array<uint8_t, 3> rgb{};
  for (int c = 0; c < 3; ++c) {
    rgb[c] = static_cast<uint8_t>(stops[i][c] + f * (stops[i + 1][c] - stops[i][c]));
  }
  return rgb;
}

struct Image {
  int width, height;
  std::vector<uint8_t> rgb;
  Image(int w, int h) : width(w), height(h), rgb(static_cast<size_t>(w) * h * 3, 255) {}
  void set(int x, int y, std::array<uint8_t, 3> c) {
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    std::copy(c.begin(), c.end(), rgb.begin() + (static_cast<size_t>(y) * width + x) * 3);
  }
  void save(const std::filesystem::path& path) const {
    std::string bytes;
    stbi_write_png_to_func(
        [](void* context, void* data, int size) {
          static_cast<std::string*>(context)->append(static_cast<const char*>(data), size);
        },
        &bytes, width, height, 3, rgb.data(), width * 3);
    write_file_atomic(path, bytes);
  }
};

}  // namespace

std::pair<double, double> write_heatmap_png(const std::filesystem::path& path,
                                            const torch::Tensor& matrix, bool log_scale,
                                            int64_t max_side) {
  auto m = matrix.detach().to(torch::kDouble).abs();
  const int64_t rows = m.size(0), cols = m.size(1);
  if (rows > max_side || cols > max_side) {  // keep peaks visible: max-pool
    m = std::get<0>(torch::adaptive_max_pool2d(
                        m.unsqueeze(0).unsqueeze(0),
                        {std::min(rows, max_side), std::min(cols, max_side)}))
            .squeeze(0)
            .squeeze(0);
  }
  const double hi_raw = m.max().item<double>();
  double lo, hi;
  torch::Tensor u;  // (R, C) in [0, 1]
  if (log_scale) {
    hi = std::log10(std::max(hi_raw, 1e-300));
    lo = hi - 6.0;  // six decades
    u = (torch::log10(m.clamp_min(1e-300)) - lo) / (hi - lo);
  } else {
    lo = 0.0;
    hi = hi_raw;
    u = m / std::max(hi, 1e-300);
  }
  const int64_t r = u.size(0), c = u.size(1);
  const int cell = static_cast<int>(std::max<int64_t>(1, 400 / std::max(r, c)));
  const int bar_gap = 10, bar_width = 20;
  Image img(static_cast<int>(c) * cell + bar_gap + bar_width, static_cast<int>(r) * cell);
  auto acc = u.accessor<double, 2>();
  for (int64_t i = 0; i < r; ++i) {
    for (int64_t j = 0; j < c; ++j) {
      const auto rgb = colour(acc[i][j]);
      for (int dy = 0; dy < cell; ++dy) {
        for (int dx = 0; dx < cell; ++dx) img.set(j * cell + dx, i * cell + dy, rgb);
      }
    }
  }
  // Colour bar: top = hi, bottom = lo (range logged next to the image in probes.jsonl).
  for (int y = 0; y < img.height; ++y) {
    const auto rgb = colour(1.0 - static_cast<double>(y) / std::max(1, img.height - 1));
    for (int x = 0; x < bar_width; ++x) img.set(static_cast<int>(c) * cell + bar_gap + x, y, rgb);
  }
  img.save(path);
  return {lo, hi};
}

MarchenkoPasturFit fit_marchenko_pastur(const torch::Tensor& eigenvalues, int64_t bins) {
  auto e = eigenvalues.detach().to(torch::kDouble).flatten();
  MarchenkoPasturFit fit;
  const double mean = e.mean().item<double>();
  const double var = e.numel() > 1 ? e.var().item<double>() : 0.0;
  fit.sigma2 = mean;
  fit.ratio = mean > 0 ? var / (mean * mean) : 0.0;
  const double lo = e.min().item<double>(), hi = e.max().item<double>();
  const double width = std::max(hi - lo, 1e-300) / static_cast<double>(bins);
  fit.edges = torch::linspace(lo, lo + width * bins, bins + 1, torch::kDouble);
  fit.counts = torch::histc(e, bins, lo, lo + width * bins);
  auto centres = (fit.edges.slice(0, 0, bins) + fit.edges.slice(0, 1)) / 2;
  fit.density = torch::zeros({bins}, torch::kDouble);
  if (fit.sigma2 > 0 && fit.ratio > 0) {
    // MP pdf sqrt((b - x)(x - a)) / (2 pi sigma^2 q x) on [a, b], scaled to counts.
    const double sq = std::sqrt(fit.ratio);
    const double a = fit.sigma2 * (1 - sq) * (1 - sq), b = fit.sigma2 * (1 + sq) * (1 + sq);
    auto inside = (b - centres).clamp_min(0) * (centres - a).clamp_min(0);
    fit.density = inside.sqrt() / (2 * M_PI * fit.sigma2 * fit.ratio * centres.clamp_min(1e-300)) *
                  (static_cast<double>(e.numel()) * width);
    fit.density.masked_fill_(centres.le(0), 0.0);
  }
  return fit;
}

void write_histogram_png(const std::filesystem::path& path, const MarchenkoPasturFit& fit) {
  const int width = 600, height = 300;
  Image img(width, height);
  const int64_t bins = fit.counts.size(0);
  const double top = std::max(fit.counts.max().item<double>(), fit.density.max().item<double>());
  const int bar = width / static_cast<int>(bins);
  auto counts = fit.counts.accessor<double, 1>();
  auto density = fit.density.accessor<double, 1>();
  for (int64_t i = 0; i < bins; ++i) {
    const int h = static_cast<int>(counts[i] / std::max(top, 1e-300) * (height - 10));
    for (int y = height - h; y < height; ++y) {
      for (int x = 0; x + 1 < bar; ++x) img.set(static_cast<int>(i) * bar + x, y, {120, 120, 120});
    }
  }
  for (int64_t i = 0; i + 1 < bins; ++i) {  // fitted MP curve in red
    const double y0 = density[i] / std::max(top, 1e-300) * (height - 10);
    const double y1 = density[i + 1] / std::max(top, 1e-300) * (height - 10);
    for (int x = 0; x < bar; ++x) {
      const double y = y0 + (y1 - y0) * x / bar;
      for (int t = -1; t <= 1; ++t) {
        img.set(static_cast<int>(i) * bar + bar / 2 + x, height - 1 - static_cast<int>(y) + t,
                {220, 30, 30});
      }
    }
  }
  img.save(path);
}

// ---------------------------------------------------------------- the probe

namespace {

nlohmann::json to_json(const torch::Tensor& t) {
  auto d = t.detach().to(torch::kDouble).contiguous();
  if (d.dim() == 0) return d.item<double>();
  nlohmann::json out = nlohmann::json::array();
  for (int64_t i = 0; i < d.size(0); ++i) out.push_back(to_json(d[i]));
  return out;
}

// What one probe differentiates: the parameters (float64 copies for bias-free MLPs, so the
// model itself is never touched), the loss on the evaluation set, and the closed form if any.
struct Target {
  std::vector<torch::Tensor> params;
  std::vector<bh::ParamInfo> infos;
  bh::LossClosure loss;
  bool closed_form = false;
  models::Activation activation = models::Activation::ReLU;
  torch::Tensor x, y;
  models::Loss loss_kind = models::Loss::CrossEntropy;
  torch::TensorOptions options;
};

Target make_target(Trainer& trainer, const ProbeSpec& spec) {
  Target t;
  std::vector<torch::Tensor> xs, ys;
  for (const auto& batch : trainer.data().eval_batches()) {
    xs.push_back(batch.inputs);
    ys.push_back(batch.targets);
  }
  t.x = torch::cat(xs);
  t.y = torch::cat(ys);
  t.loss_kind = trainer.loss_kind();
  auto& model = trainer.model();
  auto* mlp = dynamic_cast<models::MLP*>(&model);
  if (mlp != nullptr && !mlp->options().bias()) {
    const auto dtype = spec.dtype == "float64" ? torch::kFloat64 : torch::kFloat32;
    for (const auto& item : model.named_parameters()) {
      t.params.push_back(item.value().detach().to(dtype).clone().requires_grad_(true));
      t.infos.push_back({item.key(), item.value().sizes().vec()});
    }
    t.activation = mlp->options().activation();
    t.x = t.x.reshape({t.x.size(0), -1}).to(dtype);
    t.closed_form = bh::closed_form_supported(t.params.size());
    t.loss = [params = t.params, act = t.activation, x = t.x, y = t.y, kind = t.loss_kind] {
      return models::compute_loss(bh::mlp_forward(params, act, x), y, kind);
    };
  } else {
    for (const auto& item : model.named_parameters()) {
      if (!item.value().requires_grad()) continue;
      t.params.push_back(item.value());
      t.infos.push_back({item.key(), item.value().sizes().vec()});
    }
    t.loss = [&model, x = t.x, y = t.y, kind = t.loss_kind] {
      return models::compute_loss(model.forward(x), y, kind);
    };
  }
  t.options = t.params.front().options().requires_grad(false);
  return t;
}

torch::Tensor full_matrix(const Target& t, bh::HessianOperator& op) {
  if (t.closed_form) return bh::mlp_hessian_closed_form(t.params, t.activation, t.x, t.y, t.loss_kind);
  return bh::full_hessian(op);
}

void add_ratios(nlohmann::json& record, const torch::Tensor& norms, const bh::Partition& part) {
  auto s = bh::off_diagonal_ratios(norms, part);
  record["blocks"] = part.size();
  record["ratio_mean"] = s.mean;
  record["ratio_max"] = s.max;
  record["ratio_by_tensor_pair"] = to_json(s.by_tensor_pair);
  record["ratio_sq_mean"] = s.squared_mean;
  record["ratio_sq_by_tensor_pair"] = to_json(s.squared_by_tensor_pair);
  record["blocks_without_ratio"] = s.rows_without_ratio;
}

// Restores the global RNG and the model's train/eval mode on scope exit.
class StateGuard {
 public:
  explicit StateGuard(models::Model& model)
      : model_(model), training_(model.is_training()),
        rng_(at::detail::getDefaultCPUGenerator().get_state()) {
    model_.eval();
  }
  ~StateGuard() {
    model_.train(training_);
    auto generator = at::detail::getDefaultCPUGenerator();  // shares the global state
    generator.set_state(rng_);
  }

 private:
  models::Model& model_;
  bool training_;
  torch::Tensor rng_;
};

}  // namespace

HessianProbe::HessianProbe(std::vector<ProbeSpec> specs, std::filesystem::path dir, uint64_t seed)
    : specs_(std::move(specs)), dir_(std::move(dir)), seed_(seed) {}

void HessianProbe::on_train_begin(Trainer& trainer) {
  std::filesystem::create_directories(dir_);
  writer_ = std::make_unique<JsonlWriter>(dir_ / "probes.jsonl");
  writer_->truncate_after_step(trainer.step() - 1);  // a resumed run redoes its current step
  probe(trainer, trainer.step());
}

void HessianProbe::on_step_end(Trainer& trainer, const StepMetrics& m) { probe(trainer, m.step); }

void HessianProbe::probe(Trainer& trainer, int64_t step) {
  for (size_t index = 0; index < specs_.size(); ++index) {
    const auto& spec = specs_[index];
    if (!spec.due(step)) continue;
    const auto start = std::chrono::steady_clock::now();
    StateGuard guard(trainer.model());
    auto target = make_target(trainer, spec);
    bh::HessianOperator op(target.loss, target.params);
    auto generator = at::make_generator<at::CPUGeneratorImpl>(
        seed_ * 1000003ULL + static_cast<uint64_t>(step) * 101ULL + index);
    const auto part = bh::make_partition(spec.partition, target.infos, spec.head_dim);
    const int64_t p = op.size();
    const auto prefix = fmt::format("{}_{:06d}_{}", spec.type, step, index);
    auto file = [&](const std::string& suffix) { return dir_ / (prefix + suffix); };
    nlohmann::json record = {{"step", step}, {"type", spec.type}, {"probe", index},
                             {"params", p}, {"partition", spec.partition},
                             {"loss", op.loss().item<double>()}};
    nlohmann::json files = nlohmann::json::array();
    auto save = [&](const std::string& suffix, const torch::Tensor& t) {
      write_npy(file(suffix), t);
      files.push_back(prefix + suffix);
    };
    auto heatmap = [&](const std::string& suffix, const torch::Tensor& t, const std::string& key) {
      auto [lo, hi] = write_heatmap_png(file(suffix), t, /*log_scale=*/true);
      files.push_back(prefix + suffix);
      record[key] = {{"log10_min", lo}, {"log10_max", hi}};
    };
    auto block_outputs = [&](const torch::Tensor& norms) {
      save("_blocks.npy", norms);
      heatmap("_blocks.png", norms, "blocks_colour_scale");
      add_ratios(record, norms, part);
    };
    auto spectrum_fit = [&](const std::string& suffix, const torch::Tensor& eig) {
      auto fit = fit_marchenko_pastur(eig);
      write_histogram_png(file(suffix + "_hist.png"), fit);
      files.push_back(prefix + suffix + "_hist.png");
      return nlohmann::json{{"mp_sigma2", fit.sigma2}, {"mp_ratio", fit.ratio},
                            {"edges", to_json(fit.edges)}, {"counts", to_json(fit.counts)},
                            {"mp_density", to_json(fit.density)}};
    };

    if (spec.type == "full_hessian" || (spec.type == "block_norms" && p <= spec.full_limit)) {
      if (p > spec.full_limit) {
        record["skipped"] = fmt::format("{} parameters > full_limit {}", p, spec.full_limit);
      } else {
        auto h = full_matrix(target, op);
        record["method"] = target.closed_form ? "closed_form" : "autograd";
        block_outputs(bh::block_norms(h, part));
        if (spec.type == "full_hessian") {
          if (p <= spec.save_limit) save("_H.npy", h);
          heatmap("_H.png", h, "H_colour_scale");
          auto eig = torch::linalg_eigvalsh(h.to(torch::kDouble));
          save("_eigenvalues.npy", eig);
          record["spectrum"] = spectrum_fit("_eigenvalues", eig);
          record["trace"] = eig.sum().item<double>();
          record["top_eigenvalues"] = to_json(eig.flip(0).slice(0, 0, spec.top_k));
          nlohmann::json blocks = nlohmann::json::array();
          for (int64_t b = 0; b < part.size() && b < 16; ++b) {
            auto block_eig = torch::linalg_eigvalsh(bh::principal_block(h, part.blocks[b]).to(torch::kDouble));
            auto fit = spectrum_fit(fmt::format("_block{}", b), block_eig);
            fit["block"] = part.blocks[b].name;
            blocks.push_back(fit);
          }
          record["block_spectra"] = blocks;
        }
      }
    } else if (spec.type == "block_norms" || spec.type == "hutchinson") {
      auto est = bh::hutchinson_block_norms(bh::as_matvec(op), part, spec.samples, generator,
                                            target.options);
      record["method"] = "hutchinson";
      block_outputs(est.norms);
      save("_blocks_stderr.npy", est.stderr_norms);
      if (spec.type == "hutchinson") {
        auto trace = bh::trace_hutchinson(bh::as_matvec(op), p, spec.samples, generator, target.options);
        record["trace"] = trace.value;
        record["trace_stderr"] = trace.stderr_value;
        record["trace_hutchpp"] = bh::trace_hutchpp(bh::as_matvec(op), p, 3 * spec.samples, generator,
                                                    target.options);
      }
    } else if (spec.type == "lanczos") {
      auto r = bh::lanczos(bh::as_matvec(op), bh::rademacher(p, generator, target.options),
                           spec.lanczos_steps);
      record["top_eigenvalues"] = to_json(r.ritz_values.flip(0).slice(0, 0, spec.top_k));
      save("_ritz_values.npy", r.ritz_values);
      save("_ritz_weights.npy", r.ritz_weights);
    } else if (spec.type == "slq") {
      auto full = bh::slq_density(bh::as_matvec(op), p, spec.lanczos_steps, spec.samples, generator,
                                  target.options);
      save("_nodes.npy", full.nodes);
      save("_weights.npy", full.weights);
      std::vector<bh::SpectralDensity> blocks;
      for (const auto& blk : part.blocks) {
        auto block_op = bh::restrict_to(bh::as_matvec(op), blk, p, target.options);
        blocks.push_back(bh::slq_density(block_op, blk.end - blk.begin, spec.lanczos_steps,
                                         spec.samples, generator, target.options));
      }
      // Smoothing width: 1% of the joint spectral range.
      double lo = full.nodes.min().item<double>(), hi = full.nodes.max().item<double>();
      for (const auto& d : blocks) {
        lo = std::min(lo, d.nodes.min().item<double>());
        hi = std::max(hi, d.nodes.max().item<double>());
      }
      const double sigma = std::max(0.01 * (hi - lo), 1e-12);
      const auto nb = static_cast<int64_t>(blocks.size());
      auto js = torch::zeros({nb, nb}, torch::kDouble);
      for (int64_t i = 0; i < nb; ++i) {
        for (int64_t j = i + 1; j < nb; ++j) {
          const double d = bh::js_distance(blocks[i], blocks[j], sigma);
          js[i][j] = d;
          js[j][i] = d;
        }
      }
      save("_js.npy", js);
      record["smoothing_sigma"] = sigma;
      // Smoothed densities on a common grid, for the report's spectrum plots.
      auto grid = torch::linspace(lo - 4 * sigma, hi + 4 * sigma, 200, torch::kDouble);
      nlohmann::json block_densities = nlohmann::json::object();
      for (int64_t b = 0; b < nb && b < 8; ++b) block_densities[part.blocks[b].name] = to_json(blocks[b].smooth(grid, sigma));
      record["density"] = {{"grid", to_json(grid)}, {"full", to_json(full.smooth(grid, sigma))},
                           {"blocks", block_densities}};
      if (nb > 1) {
        record["js_mean"] = (js.sum() / (nb * (nb - 1))).item<double>();
        record["js_max"] = js.max().item<double>();
      }
    }
    record["files"] = files;
    record["seconds"] =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    writer_->write(record);
    spdlog::debug("probe {} at step {}: {:.2f} s", spec.type, step, record["seconds"].get<double>());
  }
}

}  // namespace blockopt::experiments
