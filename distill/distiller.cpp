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
#include "models/eval_scope.h"

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

/// ConfigError unless teacher and student read the same inputs (images of one shape, or
/// the same tokens: vocabulary, and the teacher's positions cover the student's), and,
/// where a term compares logits, predict the same classes.
void check_same_input(const models::ModelOptions& t, const models::ModelOptions& s, const LossWeights& w) {
  auto image = [](const models::ModelOptions& o) {
    return std::to_string(o.in_channels) + "x" + std::to_string(o.image_size) + "x" + std::to_string(o.image_size);
  };
  auto describe = [&](const models::ModelOptions& o) {
    return o.language_model() ? "a language model (" + o.name + ")"
                              : "an image model (" + o.name + ", " + image(o) + " images)";
  };
  if (t.language_model() != s.language_model())
    throw ConfigError("distill.teacher: the teacher is " + describe(t) + " and the student " + describe(s) +
                      "; both must read the same input");
  if (t.language_model()) {
    if (t.vocab_size != s.vocab_size)
      throw ConfigError("distill.teacher: the teacher's vocabulary has " + std::to_string(t.vocab_size) +
                        " tokens (model.vocab_size), the student's " + std::to_string(s.vocab_size) +
                        "; both must read the same token ids (the same tokenizer)");
    if (t.context < s.context)
      throw ConfigError("distill.teacher: the teacher reads at most " + std::to_string(t.context) +
                        " tokens (model.context), the student's windows have " + std::to_string(s.context) +
                        "; give the student model.context <= " + std::to_string(t.context));
    return;
  }
  if (t.in_channels != s.in_channels || t.image_size != s.image_size)
    throw ConfigError("distill.teacher: the teacher reads " + image(t) + " images, the student " + image(s) +
                      "; both must see the same input (model.in_channels, model.image_size)");
  if (w.on_logits() && t.num_classes != s.num_classes)
    throw ConfigError("distill.weights: the teacher has " + std::to_string(t.num_classes) + " classes and the student " +
                      std::to_string(s.num_classes) +
                      "; the terms on logits (kl, reverse_kl, skew_kl, gjs, dkd) need the same classes (or set "
                      "their weights to 0)");
}

/// Appends a term and adds it, weighted, to the total.
void add_term(Losses& out, std::string name, double weight, const torch::Tensor& term) {
  out.total = out.total.defined() ? out.total + weight * term : weight * term;
  out.terms.emplace_back(std::move(name), term);
}

std::string pair_text(const MappedPair& p) {
  return "student " + p.student_name + " " + shape_str(p.student_shape) + " -> teacher " + p.teacher_name + " " +
         shape_str(p.teacher_shape);
}

}  // namespace

DistillerImpl::DistillerImpl(std::shared_ptr<models::Model> teacher, std::shared_ptr<models::Model> student,
                             DistillOptions options)
    : teacher_(std::move(teacher)), student_(std::move(student)), options_(std::move(options)) {
  if (!student_) throw Error("Distiller: no student given");
  options_.validate();
  weights_ = options_.loss_weights();
  proj_ = register_module("proj", std::make_shared<torch::nn::Module>());
  if (!teacher_) {  // the teacher's outputs come from a cache
    if (weights_.dkd > 0 || weights_.mse > 0 || weights_.cosine > 0 || weights_.attention > 0)
      throw ConfigError("distill.cache.dir: a teacher cache holds the teacher's next-token distributions only; the "
                        "terms dkd, mse, cosine and attention need the live teacher (set distill.weights.<term>=0, or "
                        "unset distill.cache.dir)");
    return;
  }
  check_same_input(teacher_->options(), student_->options(), weights_);
  // Frozen whatever the caller did: the teacher is never trained here.
  for (auto& p : teacher_->parameters()) p.set_requires_grad(false);
  teacher_->eval();
  // gpt returns attention maps only when asked: they cost [B, heads, T, T] per layer.
  if (weights_.attention > 0) {
    teacher_->set_keep_attention(true);
    student_->set_keep_attention(true);
  }
}

void DistillerImpl::prepare(const torch::Tensor& sample) {
  if (!sample.defined() || sample.dim() < 1 || sample.size(0) < 1)
    throw Error("Distiller::prepare: needs a sample batch [B, C, H, W] with B >= 1");
  if (!teacher_) {  // a cached teacher: logit terms only, no pairs to check
    prepared_ = true;
    return;
  }
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
  models::EvalScope eval(*student_);
  teacher_->eval();
  return {teacher_forward(x), student_->forward(x)};
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
  if (!teacher_) throw Error("Distiller: no teacher to run; a cached teacher's distribution goes to forward(x, labels, cached)");
  // --- TEACHER (frozen, no graph) ----------------------------------------------------------
  const models::Output t = teacher_forward(x);
  // --- STUDENT -----------------------------------------------------------------------------
  const models::Output s = student_->forward(x);

  // --- TERMS (each unweighted; the total weighs them) ---------------------------------------
  Losses out;
  out.logits = s.logits;
  const auto teacher = logit_terms().empty() ? TeacherDistribution{} : teacher_distribution(t.logits, options_.temperature);
  add_logit_terms(s.logits, teacher, t.logits, labels, out);
  // The pair terms are averaged over pairs so that alpha keeps its meaning however many
  // layers are mapped.
  const double hidden_pairs = static_cast<double>(hidden_pairs_.size());
  for (const auto& p : hidden_pairs_) {
    auto hs = project(p, s.hidden[p.layers.student]);
    auto ht = t.hidden[p.layers.teacher];
    if (p.pooled) std::tie(hs, ht) = match_spatial(hs, ht);
    if (weights_.mse > 0) add_term(out, "mse." + p.layers.name, weights_.mse / hidden_pairs, hidden_mse(hs, ht));
    if (weights_.cosine > 0) add_term(out, "cos." + p.layers.name, weights_.cosine / hidden_pairs, hidden_cosine(hs, ht));
  }
  const bool attention_kl_loss = options_.attention_loss == DistillOptions::AttentionLoss::kKl;
  for (const auto& p : attention_pairs_) {
    const auto& as = s.attention[p.layers.student];
    const auto& at = t.attention[p.layers.teacher];
    add_term(out, "attn." + p.layers.name, weights_.attention / static_cast<double>(attention_pairs_.size()),
             attention_kl_loss ? attention_kl(as, at) : attention_mse(as, at));
  }
  return out;
}

Losses DistillerImpl::forward(const torch::Tensor& x, const data::Labels& labels, const TeacherDistribution& cached) {
  if (!prepared_) throw Error("Distiller: prepare(sample) must run before the first loss");
  Losses out;
  out.logits = student_->forward(x).logits;
  add_logit_terms(out.logits, cached, torch::Tensor(), labels, out);
  return out;
}

std::vector<DistillerImpl::LogitTerm> DistillerImpl::logit_terms() const {
  const auto& w = weights_;
  std::vector<LogitTerm> terms;
  for (const LogitTerm& term : {LogitTerm{"kl", w.kl, Divergence::kForwardKl, 0.0},
                                LogitTerm{"reverse_kl", w.reverse_kl, Divergence::kReverseKl, 0.0},
                                LogitTerm{"skew_kl", w.skew_kl, Divergence::kSkewKl, options_.skew_lambda},
                                LogitTerm{"gjs", w.gjs, Divergence::kGjs, options_.gjs_beta}})
    if (term.weight > 0) terms.push_back(term);
  return terms;
}

void DistillerImpl::add_logit_terms(const torch::Tensor& student_logits, const TeacherDistribution& teacher,
                                    const torch::Tensor& teacher_logits, const data::Labels& labels,
                                    Losses& out) const {
  // Every term takes rows over the leading dims: a language model's tokens are its rows.
  const double temperature = options_.temperature;
  if (weights_.ce > 0)
    add_term(out, "ce", weights_.ce,
             labels.mix([&](const torch::Tensor& y) { return ce_loss(student_logits, y, labels.smoothing); }));
  for (const auto& term : logit_terms())
    add_term(out, term.name, term.weight, divergence(term.kind, student_logits, teacher, temperature, term.param));
  if (weights_.dkd > 0)
    add_term(out, "dkd", weights_.dkd,
             dkd_loss(student_logits, teacher_logits, labels.y, temperature, options_.dkd_alpha, options_.dkd_beta));
}

std::vector<std::string> DistillerImpl::term_names() const {
  if (!prepared_) throw Error("Distiller: term_names() needs prepare(sample) first (it resolves the layer pairs)");
  std::vector<std::string> names;
  if (weights_.ce > 0) names.push_back("ce");
  for (const auto& term : logit_terms()) names.push_back(term.name);
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
  if (teacher_) teacher_->eval();
}

void DistillerImpl::to(torch::Device device, bool non_blocking) {
  torch::nn::Module::to(device, non_blocking);
  student_->to(device, non_blocking);
  if (teacher_) teacher_->to(device, non_blocking);
}

}  // namespace retort::distill
