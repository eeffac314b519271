#include "distill/distiller.h"

#include <sstream>
#include <string>
#include <tuple>

#include "amp/autocast.h"
#include "amp/master_weights.h"
#include "amp/ops.h"
#include "core/error.h"
#include "core/text.h"
#include "distill/losses.h"

namespace retort::distill {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::ostringstream o;
  o << torch::IntArrayRef(s);
  return o.str();
}

std::vector<int64_t> shape_of(const torch::Tensor& t) { return t.sizes().vec(); }

/// A layer pair with the names and dry-run shapes of its two tensors.
MappedPair mapped_pair(const LayerPair& lp, const std::vector<std::string>& student_names,
                       const std::vector<std::string>& teacher_names, const torch::Tensor& student,
                       const torch::Tensor& teacher) {
  MappedPair p;
  p.layers = lp;
  p.student_name = student_names[lp.student];
  p.teacher_name = teacher_names[lp.teacher];
  p.student_shape = shape_of(student);
  p.teacher_shape = shape_of(teacher);
  return p;
}

std::string kind_of(const torch::Tensor& h) {
  return h.dim() == 4 ? "feature map" : h.dim() == 3 ? "token sequence" : "vector";
}

std::string model_desc(const models::Model& m) { return m.options().name; }

/// The names of a model's attention maps: its hidden names when there is one map per
/// hidden state (Transformers: layer<i>), else attn<i>.
std::vector<std::string> attention_names(const models::Model& m, size_t count) {
  auto names = m.hidden_names();
  if (names.size() == count) return names;
  names.clear();
  for (size_t i = 0; i < count; ++i) names.push_back("attn" + std::to_string(i));
  return names;
}

std::string pair_text(const MappedPair& p) {
  return "student " + p.student_name + " " + shape_str(p.student_shape) + " -> teacher " + p.teacher_name + " " +
         shape_str(p.teacher_shape);
}

}  // namespace

DistillerImpl::DistillerImpl(std::shared_ptr<models::Model> teacher, std::shared_ptr<models::Model> student,
                             DistillOptions options)
    : teacher_(std::move(teacher)), student_(std::move(student)), options_(std::move(options)) {
  if (!teacher_ || !student_) throw Error("Distiller: teacher and student must both be given");
  options_.validate();
  weights_ = options_.loss_weights();
  const auto& t = teacher_->options();
  const auto& s = student_->options();
  if (t.in_channels != s.in_channels || t.image_size != s.image_size)
    throw ConfigError("distill.teacher: the teacher reads " + std::to_string(t.in_channels) + "x" +
                      std::to_string(t.image_size) + "x" + std::to_string(t.image_size) + " images, the student " +
                      std::to_string(s.in_channels) + "x" + std::to_string(s.image_size) + "x" +
                      std::to_string(s.image_size) + "; both must see the same input (model.in_channels, model.image_size)");
  for (const auto& [weight, term, name] : {std::tuple<double, std::string, std::string>{weights_.kl, "kl", "KL"},
                                           {weights_.dkd, "dkd", "DKD"}})
    if (weight > 0 && t.num_classes != s.num_classes)
      throw ConfigError("distill.weights." + term + ": the teacher has " + std::to_string(t.num_classes) +
                        " classes and the student " + std::to_string(s.num_classes) + "; " + name +
                        " on logits needs the same classes (or set distill.weights." + term + "=0)");
  proj_ = register_module("proj", std::make_shared<torch::nn::Module>());
  // Frozen whatever the caller did: the teacher is never trained here.
  for (auto& p : teacher_->parameters()) p.set_requires_grad(false);
  teacher_->eval();
}

void DistillerImpl::prepare(const torch::Tensor& sample) {
  if (!sample.defined() || sample.dim() < 1 || sample.size(0) < 1)
    throw Error("Distiller::prepare: needs a sample batch [B, C, H, W] with B >= 1");
  torch::NoGradGuard no_grad;
  torch::Device device = torch::kCPU;
  for (const auto& p : student_->parameters()) {
    device = p.device();
    break;
  }
  // Shapes do not depend on the batch size: two rows are enough and cheap.
  const auto [t_out, s_out] = dry_run(sample.slice(0, 0, std::min<int64_t>(2, sample.size(0))).to(device));
  std::vector<std::string> problems;
  auto hidden = map_hidden_pairs(s_out, t_out, problems);
  auto attention = map_attention_pairs(s_out, t_out, problems);
  if (!problems.empty()) {
    std::string msg = "distill: the dry run on one batch found " + std::to_string(problems.size()) +
                      " mismatched layer pair(s) (teacher " + model_desc(*teacher_) + ", student " +
                      model_desc(*student_) + "):";
    for (const auto& p : problems) msg += "\n  " + p;
    throw ConfigError(msg);
  }
  projections_ = make_projections(hidden, device);
  hidden_pairs_ = std::move(hidden);
  attention_pairs_ = std::move(attention);
  prepared_ = true;
}

std::pair<models::Output, models::Output> DistillerImpl::dry_run(const torch::Tensor& x) {
  const bool student_training = student_->is_training();
  student_->eval();
  teacher_->eval();
  std::pair<models::Output, models::Output> out;
  try {
    out.first = teacher_forward(x);
    out.second = student_->forward(x);
  } catch (...) {
    student_->train(student_training);
    throw;
  }
  student_->train(student_training);
  return out;
}

// What a hidden pair needs (a projection, pooling) or why it cannot be matched.
void DistillerImpl::check_hidden_pair(MappedPair& p, const torch::Tensor& hs, const torch::Tensor& ht, bool same_kind,
                                      std::vector<std::string>& problems) const {
  const std::string what = pair_text(p);
  if (!same_kind || hs.dim() != ht.dim()) {
    const auto tn = teacher_->hidden_names(), tk = teacher_->hidden_kinds();
    problems.push_back(what + ": a " + kind_of(hs) + " cannot be matched to a " + kind_of(ht) +
                       "; map layers of the same kind in distill.layers (teacher layers: " + join(tn) + ", kinds: " +
                       join(tk) + ")");
  } else if (hs.dim() == 4) {  // [B, C, H, W]
    if (hs.size(1) != ht.size(1)) {
      if (options_.project)
        p.projection = "conv1x1";
      else
        problems.push_back(what + ": channels differ (" + std::to_string(hs.size(1)) + " vs " +
                           std::to_string(ht.size(1)) + "); enable distill.project=true to add a 1x1-convolution projection");
    }
    if (hs.size(2) != ht.size(2) || hs.size(3) != ht.size(3)) {
      if (options_.spatial == DistillOptions::Spatial::kPool)
        p.pooled = true;
      else
        problems.push_back(what + ": spatial sizes differ; set distill.spatial=pool to average-pool the larger map to "
                                  "the smaller, or pair layers of equal size");
    }
  } else if (hs.dim() == 3 && hs.size(1) != ht.size(1)) {  // [B, T, D]
    problems.push_back(what + ": token counts differ (" + std::to_string(hs.size(1)) + " vs " +
                       std::to_string(ht.size(1)) +
                       "); give teacher and student the same model.patch, model.image_size and model.pool");
  } else if (hs.size(-1) != ht.size(-1)) {  // [B, D] or [B, T, D]
    if (options_.project)
      p.projection = "linear";
    else
      problems.push_back(what + ": widths differ (" + std::to_string(hs.size(-1)) + " vs " + std::to_string(ht.size(-1)) +
                         "); enable distill.project=true to add a linear projection");
  }
}

std::vector<MappedPair> DistillerImpl::map_hidden_pairs(const models::Output& s_out, const models::Output& t_out,
                                                        std::vector<std::string>& problems) const {
  std::vector<MappedPair> hidden;
  if (weights_.mse == 0 && weights_.cosine == 0) return hidden;
  const auto sn = student_->hidden_names(), tn = teacher_->hidden_names();
  const auto sk = student_->hidden_kinds(), tk = teacher_->hidden_kinds();
  if (s_out.hidden.size() != sn.size() || t_out.hidden.size() != tn.size())
    throw Error("Distiller: a model returned a different number of hidden states than hidden_names() lists");
  for (const auto& lp : resolve_layer_map(options_.layers, sn, tn, "distill.layers")) {
    const auto& hs = s_out.hidden[lp.student];
    const auto& ht = t_out.hidden[lp.teacher];
    MappedPair p = mapped_pair(lp, sn, tn, hs, ht);
    check_hidden_pair(p, hs, ht, sk[lp.student] == tk[lp.teacher], problems);
    hidden.push_back(std::move(p));
  }
  return hidden;
}

std::vector<MappedPair> DistillerImpl::map_attention_pairs(const models::Output& s_out, const models::Output& t_out,
                                                           std::vector<std::string>& problems) const {
  std::vector<MappedPair> attention;
  if (weights_.attention == 0) return attention;
  if (s_out.attention.empty() || t_out.attention.empty()) {
    problems.push_back(std::string("distill.weights.attention: the ") +
                       (s_out.attention.empty() ? "student (" + model_desc(*student_) + ")"
                                                : "teacher (" + model_desc(*teacher_) + ")") +
                       " returns no attention maps; attention distillation needs Transformer (vit) teacher and "
                       "student, or set distill.weights.attention=0");
    return attention;
  }
  const auto sn = attention_names(*student_, s_out.attention.size());
  const auto tn = attention_names(*teacher_, t_out.attention.size());
  for (const auto& lp : resolve_layer_map(options_.attention_layers, sn, tn, "distill.attention_layers")) {
    const auto& as = s_out.attention[lp.student];
    const auto& at = t_out.attention[lp.teacher];
    MappedPair p = mapped_pair(lp, sn, tn, as, at);
    p.layers.name = std::to_string(lp.student);
    if (sn[lp.student] != lp.name)  // the student layer appears twice: keep the pair in the name
      p.layers.name += "-" + std::to_string(lp.teacher);
    if (as.dim() != 4 || at.dim() != 4 || as.size(2) != at.size(2) || as.size(3) != at.size(3))
      problems.push_back("attention " + pair_text(p) +
                         ": token counts differ; give teacher and student the same model.patch, "
                         "model.image_size and model.pool");
    attention.push_back(std::move(p));
  }
  return attention;
}

// One projection per hidden pair that needs it, created once: a second prepare() keeps
// the trained ones.
std::vector<std::shared_ptr<torch::nn::Module>> DistillerImpl::make_projections(const std::vector<MappedPair>& hidden,
                                                                               const torch::Device& device) {
  std::vector<std::shared_ptr<torch::nn::Module>> projections;
  for (const auto& p : hidden) {
    std::shared_ptr<torch::nn::Module> proj;
    if (!p.projection.empty()) {
      const auto& name = p.layers.name;
      if (auto existing = proj_->named_children().find(name)) {
        proj = *existing;
      } else {
        const bool linear = p.projection == "linear";
        const int64_t in = linear ? p.student_shape.back() : p.student_shape[1];
        const int64_t out = linear ? p.teacher_shape.back() : p.teacher_shape[1];
        if (linear)
          proj = proj_->register_module(name, torch::nn::Linear(in, out));
        else
          proj = proj_->register_module(name, torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1)));
        proj->to(device);
        proj->train(is_training());
      }
    }
    projections.push_back(proj);
  }
  return projections;
}

torch::Tensor DistillerImpl::project(const MappedPair& pair, const torch::Tensor& h) {
  const size_t i = static_cast<size_t>(&pair - hidden_pairs_.data());
  const auto& proj = projections_[i];
  if (!proj) return h;
  if (auto lin = std::dynamic_pointer_cast<torch::nn::LinearImpl>(proj)) return amp::linear(h, lin->weight, lin->bias);
  auto conv = std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(proj);
  return amp::conv2d(h, conv->weight, conv->bias);
}

models::Output DistillerImpl::teacher_forward(const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  const auto device_type = x.device().type();
  if (amp::is_enabled() && amp::current_device_type() == device_type && teacher_dtype_ != amp::current_dtype())
    cast_teacher(amp::current_dtype());
  if (teacher_dtype_ == torch::kFloat) return teacher_->forward(x);
  // Once low, the teacher always runs under autocast: its norms and softmax still compute
  // in fp32, and fp32 inputs meet low-precision weights only through the policy's casts.
  amp::Autocast guard(true, teacher_dtype_, device_type);
  return teacher_->forward(x);
}

void DistillerImpl::cast_teacher(torch::ScalarType dtype) {
  // Once, not per step: the teacher's weights do not require grad, so autocast's weight
  // cache (which holds trainable leaves only) would otherwise cast every weight on every
  // forward. Norm layers keep fp32 parameters; buffers (BN statistics) stay fp32.
  torch::NoGradGuard no_grad;
  for (const auto& module : teacher_->modules(/*include_self=*/true)) {
    if (amp::is_norm_module(*module)) continue;
    for (auto& p : module->parameters(/*recurse=*/false))
      if (p.is_floating_point() && p.scalar_type() != dtype) p.set_data(p.data().to(dtype));
  }
  teacher_dtype_ = dtype;
}

Losses DistillerImpl::forward(const torch::Tensor& x, const data::Labels& labels) {
  if (!prepared_)
    throw Error("Distiller: prepare(sample) must run before the first loss (the dry run checks the layer pairs and "
                "creates the projections)");
  if (labels.mixed() && weights_.dkd > 0)
    throw ConfigError("distill.weights.dkd needs one true class per sample; it cannot be used with data.mixup "
                      "(set data.mixup=0 or distill.weights.dkd=0)");
  // --- TEACHER (frozen, no graph) ----------------------------------------------------------
  const models::Output t = teacher_forward(x);
  // --- STUDENT -----------------------------------------------------------------------------
  const models::Output s = student_->forward(x);

  // --- TERMS (each unweighted; the total weighs them) ---------------------------------------
  Losses out;
  out.logits = s.logits;
  torch::Tensor total;
  auto add = [&](double w, const torch::Tensor& term) { total = total.defined() ? total + w * term : w * term; };
  if (weights_.ce > 0) {
    auto ce = labels.mix([&](const torch::Tensor& y) { return ce_loss(s.logits, y, labels.smoothing); });
    out.terms.emplace_back("ce", ce);
    add(weights_.ce, ce);
  }
  if (weights_.kl > 0) {
    auto kl = kl_loss(s.logits, t.logits, options_.temperature);
    out.terms.emplace_back("kl", kl);
    add(weights_.kl, kl);
  }
  if (weights_.dkd > 0) {
    auto dkd = dkd_loss(s.logits, t.logits, labels.y, options_.temperature, options_.dkd_alpha, options_.dkd_beta);
    out.terms.emplace_back("dkd", dkd);
    add(weights_.dkd, dkd);
  }
  if (!hidden_pairs_.empty()) {
    // Averaged over pairs so that alpha keeps its meaning however many layers are mapped.
    const double n = static_cast<double>(hidden_pairs_.size());
    for (const auto& p : hidden_pairs_) {
      auto hs = project(p, s.hidden[p.layers.student]);
      auto ht = t.hidden[p.layers.teacher];
      if (p.pooled) std::tie(hs, ht) = match_spatial(hs, ht);
      if (weights_.mse > 0) {
        auto mse = hidden_mse(hs, ht);
        out.terms.emplace_back("mse." + p.layers.name, mse);
        add(weights_.mse / n, mse);
      }
      if (weights_.cosine > 0) {
        auto cos = hidden_cosine(hs, ht);
        out.terms.emplace_back("cos." + p.layers.name, cos);
        add(weights_.cosine / n, cos);
      }
    }
  }
  if (!attention_pairs_.empty()) {
    const double n = static_cast<double>(attention_pairs_.size());
    for (const auto& p : attention_pairs_) {
      auto att = attention_mse(s.attention[p.layers.student], t.attention[p.layers.teacher]);
      out.terms.emplace_back("attn." + p.layers.name, att);
      add(weights_.attention / n, att);
    }
  }
  out.total = total;
  return out;
}

std::vector<std::string> DistillerImpl::term_names() const {
  if (!prepared_) throw Error("Distiller: term_names() needs prepare(sample) first (it resolves the layer pairs)");
  std::vector<std::string> names;
  if (weights_.ce > 0) names.push_back("ce");
  if (weights_.kl > 0) names.push_back("kl");
  if (weights_.dkd > 0) names.push_back("dkd");
  for (const auto& p : hidden_pairs_) {
    if (weights_.mse > 0) names.push_back("mse." + p.layers.name);
    if (weights_.cosine > 0) names.push_back("cos." + p.layers.name);
  }
  for (const auto& p : attention_pairs_) names.push_back("attn." + p.layers.name);
  return names;
}

void DistillerImpl::train(bool on) {
  torch::nn::Module::train(on);
  student_->train(on);
  teacher_->eval();
}

void DistillerImpl::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
  student_->to(device, non_blocking);
  teacher_->to(device, non_blocking);
}

}  // namespace retort::distill
