#include <blockopt/optim/asgo.h>
#include <blockopt/optim/detail/matrix_optimizer.h>

#include <array>
#include <cmath>

namespace blockopt::optim {

ASGOOptions::ASGOOptions(double lr) : lr_(lr), fallback_lr_(lr) {}

void ASGOParamState::serialize(torch::serialize::OutputArchive& archive) const {
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(step);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(preconditioner);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(preconditioner_side);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(exp_avg_sq);
  _TORCH_OPTIM_SERIALIZE_TORCH_ARG(master_param);
}

void ASGOParamState::serialize(torch::serialize::InputArchive& archive) {
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(int64_t, step);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, preconditioner);
  BLOCKOPT_DESERIALIZE_OPTIONAL_ARG(std::string, preconditioner_side);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, exp_avg_sq);
  _TORCH_OPTIM_DESERIALIZE_TORCH_ARG(torch::Tensor, master_param);
}

namespace {
// Polar Express (a, b, c) rows; rows 1..7 are divided by (1.01, 1.01^3, 1.01^5).
constexpr std::array<std::array<double, 3>, 8> kPolarExpress = {{
    {8.28721201814563, -23.595886519098837, 17.300387312530933},
    {4.107059111542203, -2.9478499167379106, 0.5448431082926601},
    {3.9486908534822946, -2.908902115962949, 0.5518191394370137},
    {3.3184196573706015, -2.488488024314874, 0.51004894012372},
    {2.300652019954817, -1.6689039845747493, 0.4188073119525673},
    {1.891301407787398, -1.2679958271945868, 0.37680408948524835},
    {1.8750014808534479, -1.2500016453999487, 0.3750001645474248},
    {1.875, -1.25, 0.375},
}};
}  // namespace

torch::Tensor inverse_root_polar_express(const torch::Tensor& p, double eps, int64_t steps) {
  const auto n = p.size(0);
  auto eye = torch::eye(n, p.options());
  auto s = (p + eps * eye).norm() * 1.01;  // s = 1.01 ||P + eps I||_F
  auto y = p / s;
  auto z = eye.clone();
  for (int64_t k = 0; k < steps; ++k) {
    const auto row = static_cast<size_t>(std::min<int64_t>(k, 7));
    double a = kPolarExpress[row][0], b = kPolarExpress[row][1], c = kPolarExpress[row][2];
    if (row < 7) {
      a /= 1.01;
      b /= std::pow(1.01, 3);
      c /= std::pow(1.01, 5);
    }
    auto t = z.mm(y);                                                   // T = Z Y
    auto q = torch::addmm(eye * a + t * b, t, t, 1.0, c);              // a I + b T + c T^2
    y = y.mm(q);
    z = q.mm(z);
  }
  return z / s.sqrt();
}

torch::Tensor inverse_root_eigh(const torch::Tensor& p, double damping) {
  auto [eigenvalues, eigenvectors] = torch::linalg_eigh(p, "L");
  auto scale = (eigenvalues.clamp_min(0.0) + damping).rsqrt();  // (n,)
  return (eigenvectors * scale.unsqueeze(0)).mm(eigenvectors.t());
}

ASGO::ASGO(const NamedParameters& named_params, ASGOOptions defaults, RoutingRule rule)
    : ASGO(detail::routed_param_groups(named_params, defaults, rule), defaults) {}

ASGO::ASGO(std::vector<torch::optim::OptimizerParamGroup> param_groups, ASGOOptions defaults)
    : torch::optim::Optimizer(std::move(param_groups), std::make_unique<ASGOOptions>(defaults)) {
  defaults.validate();
  detail::validate_matrix_groups<ASGOOptions>(*this, "ASGO");
}

namespace {

// The side of the preconditioner of a (m, n) matrix under `options`.
bool left_side(const ASGOOptions& options, int64_t m, int64_t n) {
  return options.side() == ASGOSide::left || (options.side() == ASGOSide::automatic && m < n);
}

// The Gram matrix, P and its root are computed in at least float32 (eigh has no bf16 kernel,
// and bf16 squares lose most of their digits).
torch::ScalarType preconditioner_dtype(const torch::Tensor& param, const ASGOOptions& options) {
  return c10::promoteTypes(detail::state_dtype(param, options.float32_state()), torch::kFloat);
}

void check_asgo_state(const ASGOParamState& state, const torch::Tensor& param,
                      const ASGOOptions& options, const detail::ParamSlot& slot) {
  detail::check_fallback_state(state, param, options, "ASGO", slot);
  if (!state.preconditioner().defined()) return;
  const auto matrix = as_matrix(param);
  const bool left = left_side(options, matrix.size(0), matrix.size(1));
  const auto side = left ? "left" : "right";
  if (!state.preconditioner_side().empty() && state.preconditioner_side() != side) {
    throw std::invalid_argument("ASGO: the preconditioner of " + slot.name() + " was built on the " +
                                state.preconditioner_side() + " side, the options now say " + side +
                                "; keep the side of the run it was built in");
  }
  const auto k = left ? matrix.size(0) : matrix.size(1);
  detail::check_state_tensor(state.preconditioner(), "preconditioner", k * k,
                     preconditioner_dtype(param, options), param, "ASGO", slot);
}

}  // namespace

torch::Tensor ASGO::step(LossClosure closure) {
  const torch::Tensor loss = detail::evaluate_closure(closure);
  torch::NoGradGuard no_grad;
  bool replaced_root = false;
  detail::step_matrix_optimizer<ASGOParamState, ASGOOptions>(
      *this, "ASGO", check_asgo_state,
      [&](torch::Tensor& param, const torch::Tensor& grad, ASGOParamState& state,
          const ASGOOptions& options) {
        const auto compute = preconditioner_dtype(param, options);
        auto g = as_matrix(grad);  // (m, n)
        const auto m = g.size(0), n = g.size(1);
        const bool left = left_side(options, m, n);
        if (!state.exp_avg().defined()) {
          state.exp_avg(torch::zeros_like(param, torch::MemoryFormat::Contiguous));
          const auto k = left ? m : n;
          state.preconditioner(torch::zeros({k, k}, param.options().dtype(compute)));
          state.preconditioner_side(left ? "left" : "right");
        }
        auto momentum = as_matrix(state.exp_avg());
        momentum.lerp_(g, 1.0 - options.momentum());  // M <- b1 M + (1-b1) G
        const auto g_compute = g.to(compute);
        auto gram = left ? g_compute.mm(g_compute.t()) : g_compute.t().mm(g_compute);  // S
        state.preconditioner().lerp_(gram, 1.0 - options.beta2());  // P <- b2 P + (1-b2) S
        auto root = options.root() == ASGORoot::eigh
                        ? inverse_root_eigh(state.preconditioner(), options.damping())
                        : inverse_root_polar_express(state.preconditioner(), options.eps(),
                                                     options.root_steps());
        if (!torch::isfinite(root).all().item<bool>()) {
          root = torch::eye(root.size(0), root.options());
          replaced_root = true;
        }
        const auto momentum_compute = momentum.to(compute);
        auto update = left ? root.mm(momentum_compute) : momentum_compute.mm(root);  // U, (m, n)
        if (options.rms_target() > 0.0) {
          // U <- U rms_target sqrt(m n) / ||U||_F
          update.mul_(options.rms_target() * std::sqrt(static_cast<double>(m * n)) /
                      update.norm().clamp_min(1e-30));
        }
        param.mul_(1.0 - options.lr() * options.weight_decay());
        param.add_(update.reshape(param.sizes()).to(param.scalar_type()), -options.lr());
      });
  if (replaced_root) ++nan_roots_;
  return loss;
}

void ASGO::save(torch::serialize::OutputArchive& archive) const {
  save_state_and_options<ASGOParamState, ASGOOptions>(archive, *this);
  archive.write("nan_roots", torch::tensor(nan_roots_));
}

void ASGO::load(torch::serialize::InputArchive& archive) {
  detail::load_matrix_optimizer<ASGOParamState, ASGOOptions>(archive, *this, "ASGO", check_asgo_state);
  torch::Tensor nan_roots;
  nan_roots_ = archive.try_read("nan_roots", nan_roots) ? nan_roots.item<int64_t>() : 0;
}

}  // namespace blockopt::optim
