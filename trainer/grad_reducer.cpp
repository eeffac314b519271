#include "trainer/grad_reducer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <set>

#include "core/error.h"
#include "core/text.h"
#include "core/fs.h"

namespace retort::trainer {

// ------------------------------------------------------------------------------------
// LibTorch version seam. FunctionPostHook::operator()(outputs, inputs) and
// Node::add_post_hook / del_post_hook (keyed by uintptr_t) read the same in 1.13 and 2.x;
// 2.x adds FunctionPostHook::compiled_args, virtual with a default body, used only by
// compiled autograd. A post hook on a parameter's AccumulateGrad node runs after the
// gradient has been accumulated into .grad: the point where DDP marks it ready. If these
// signatures change, this block is the one place to adapt.
// ------------------------------------------------------------------------------------
namespace {

using torch::autograd::FunctionPostHook;
using torch::autograd::Node;
using torch::autograd::variable_list;
using HookKey = uintptr_t;

template <typename Fn>
class PostAccumulateHook final : public FunctionPostHook {
 public:
  explicit PostAccumulateHook(Fn fn) : fn_(std::move(fn)) {}
  variable_list operator()(const variable_list& outputs, const variable_list& /*inputs*/) override {
    fn_();
    return outputs;
  }

 private:
  Fn fn_;
};

// Keeps the parameter's accumulator alive: autograd holds it only weakly between
// backwards, and a recreated one would have lost the hook.
struct HookHandle {
  std::shared_ptr<Node> accumulator;
  HookKey key = 0;
};

template <typename Fn>
HookHandle add_post_accumulate_hook(const torch::Tensor& param, Fn fn) {
  HookHandle handle;
  handle.accumulator = torch::autograd::impl::grad_accumulator(param);
  if (!handle.accumulator) throw Error("GradReducer: parameter is not a leaf tensor that requires grad");
  handle.key = handle.accumulator->add_post_hook(std::make_unique<PostAccumulateHook<Fn>>(std::move(fn)));
  return handle;
}

void remove_post_accumulate_hook(HookHandle& handle) {
  if (handle.accumulator) handle.accumulator->del_post_hook(handle.key);
  handle.accumulator.reset();
}

}  // namespace
// ------------------------------------------------------------------------------------

void GradReducerOptions::declare(config::Fields<GradReducerOptions>& f) {
  f.add("bucket_mb", &GradReducerOptions::bucket_mb, "gradient bucket size in MB (the first bucket is smaller)")
      .greater_than(0);
  f.add("find_unused", &GradReducerOptions::find_unused,
        "tolerate parameters without a gradient: reduced as zeros; one no rank used keeps none (the optimizer skips it)");
}

std::vector<BucketInfo> assign_buckets(const std::vector<torch::Tensor>& params, int64_t first_bytes, int64_t bytes,
                                       const std::vector<size_t>& order) {
  std::vector<size_t> fill = order;
  if (fill.empty())
    for (size_t k = params.size(); k-- > 0;) fill.push_back(k);
  if (fill.size() != params.size()) throw Error("assign_buckets: the order must name every parameter once");
  std::vector<size_t> position(params.size(), params.size());
  for (size_t i = 0; i < fill.size(); ++i) {
    if (fill[i] >= params.size() || position[fill[i]] != params.size())
      throw Error("assign_buckets: the order must name every parameter once");
    position[fill[i]] = i;
  }
  struct Open {
    BucketInfo bucket;
    bool first_done = false;
  };
  std::map<torch::ScalarType, Open> open;  // one bucket filling per dtype, as DDP
  std::vector<BucketInfo> out;
  for (size_t k : fill) {
    const auto& p = params[k];
    auto& o = open[p.scalar_type()];
    o.bucket.dtype = p.scalar_type();
    o.bucket.params.push_back(k);
    o.bucket.numel += p.numel();
    o.bucket.bytes += p.numel() * static_cast<int64_t>(p.element_size());
    if (o.bucket.bytes >= (o.first_done ? bytes : first_bytes)) {
      out.push_back(std::move(o.bucket));
      o.bucket = BucketInfo();
      o.first_done = true;
    }
  }
  for (auto& [dtype, o] : open)
    if (!o.bucket.params.empty()) out.push_back(std::move(o.bucket));
  // Launch order = order of readiness: the bucket whose first parameter is ready first goes first.
  std::stable_sort(out.begin(), out.end(), [&](const BucketInfo& x, const BucketInfo& y) {
    return position[x.params.front()] < position[y.params.front()];
  });
  return out;
}

// ------------------------------------------------------------------------------------
// Core: the state the hooks touch, behind one mutex (hooks of a CUDA backward run on
// autograd's device threads).
// ------------------------------------------------------------------------------------

struct GradReducer::Core {
  struct Bucket {
    BucketInfo info;
    std::vector<int64_t> offsets;  // element offset of each param in `flat`
    torch::Tensor flat;            // [numel], the gradients' dtype and device
    // Each parameter's slot in `flat`, shaped like the parameter: a plain tensor on flat's
    // storage (not an autograd view, so that an optimizer's zero_grad may detach_() it),
    // made once per buffer. After the first step it is the parameter's .grad itself.
    std::vector<torch::Tensor> slots;
    int64_t pending = 0;           // params not yet ready in this backward
    bool launched = false;
    bool in_backward = false;
    std::shared_ptr<launch::Work> work;
  };

  std::mutex mu;
  std::shared_ptr<launch::Communicator> comm;
  GradReducerOptions options;
  bool local = false;     // world of one: nothing to send
  bool buffered = false;  // gradients live in bucket buffers (many ranks, or fp32 accumulation)
  bool sync = true;
  bool rebuilt = false;
  std::vector<torch::Tensor> params;  // what autograd accumulates into
  std::vector<torch::Tensor> mains;   // whose .grad is the reduced gradient: params[k], or its fp32 master
  std::vector<char> folds;            // mains[k] is not params[k]: each gradient is added into it on arrival
  std::vector<std::string> names;
  std::vector<size_t> bucket_of;
  std::vector<size_t> slot_of;
  std::vector<Bucket> buckets;
  std::vector<char> ready;            // got its gradient in this synchronised backward
  std::vector<char> used;             // got a gradient in any micro-batch of this step
  std::vector<size_t> ready_order;    // readiness order of this synchronised backward
  size_t next_launch = 0;
  std::vector<HookHandle> hooks;
  GradReducerStats stats;

  const torch::Tensor& slot(size_t index) { return buckets[bucket_of[index]].slots[slot_of[index]]; }

  void make_slots(Bucket& b) {
    torch::NoGradGuard no_grad;
    b.slots.clear();
    for (size_t s = 0; s < b.info.params.size(); ++s) {
      const auto& p = params[b.info.params[s]];
      b.slots.push_back(torch::empty({0}, b.flat.options()).set_(b.flat.storage(), b.offsets[s], p.sizes(),
                                                                  c10::contiguous_strides(p.sizes())));
    }
  }

  // Buckets for an assignment, with buffers when gradients live in them.
  void make_buckets(const std::vector<BucketInfo>& infos) {
    buckets.clear();
    for (size_t bi = 0; bi < infos.size(); ++bi) {
      Bucket b;
      b.info = infos[bi];
      int64_t offset = 0;
      for (size_t s = 0; s < b.info.params.size(); ++s) {
        const size_t k = b.info.params[s];
        bucket_of[k] = bi;
        slot_of[k] = s;
        b.offsets.push_back(offset);
        offset += params[k].numel();
      }
      if (buffered) {
        b.flat = torch::empty({b.info.numel}, mains[b.info.params.front()].options().requires_grad(false));
        make_slots(b);
      }
      b.pending = static_cast<int64_t>(b.info.params.size());
      buckets.push_back(std::move(b));
    }
  }

  // Makes the slot the .grad of mains[index], as DDP's gradient_as_bucket_view:
  // accumulation (AccumulateGrad adds into a defined .grad in place) and the all-reduce
  // then work on the bucket directly, and nothing is copied in or out. A gradient that is
  // not the slot (the first step; after zero_grad(set_to_none)) is copied in once.
  void bind(size_t index) {
    auto& m = mains[index];
    const auto& s = slot(index);
    if (m.grad().is_same(s)) return;
    if (m.grad().defined())
      s.copy_(m.grad());
    else
      s.zero_();
    m.mutable_grad() = s;
  }

  // fp32 accumulation: this micro-batch's low-precision gradient is added into the main
  // gradient's slot and dropped, so the next micro-batch starts a fresh one.
  void fold(size_t index) {
    bind(index);
    slot(index).add_(params[index].grad());
    params[index].mutable_grad().reset();
  }

  // Launch every bucket that is complete, in index order only: all ranks must issue the
  // same collectives in the same order, whatever order their hooks fire in. The last
  // bucket is reduced with a blocking call: nothing is left to overlap it with, and the
  // blocking algorithms are faster (launch/mpi_communicator.h).
  void launch_ready(bool at_finish) {
    while (next_launch < buckets.size() && buckets[next_launch].pending == 0) {
      auto& b = buckets[next_launch];
      b.launched = true;
      b.in_backward = !at_finish;
      ++next_launch;
      if (next_launch == buckets.size()) {
        comm->all_reduce(b.flat, options.op);
        b.work.reset();
      } else {
        b.work = comm->all_reduce_async(b.flat, options.op);
      }
    }
  }

  void on_grad_ready(size_t index) {
    std::lock_guard<std::mutex> lock(mu);
    torch::NoGradGuard no_grad;
    used[index] = 1;
    if (params[index].grad().is_sparse())
      throw Error("GradReducer: parameter '" + names[index] + "' has a sparse gradient (unsupported)");
    if (folds[index]) fold(index);
    if (!sync) return;  // accumulation micro-batch: .grad just accumulates
    if (ready[index])
      throw Error("GradReducer: parameter '" + names[index] +
                  "' got a second gradient before finish(); call finish() after every synchronised backward, or "
                  "set_sync(false) for accumulation micro-batches");
    ready[index] = 1;
    if (!rebuilt) ready_order.push_back(index);
    if (!buffered) return;
    bind(index);
    if (local) return;
    const size_t bi = bucket_of[index];
    if (--buckets[bi].pending == 0) {
      if (bi != next_launch) ++stats.buckets_held_back;
      launch_ready(false);
    }
  }

  // find_unused: a parameter that no rank used in this step keeps no gradient, so the
  // optimizer skips it (DDP's globally unused parameters).
  void drop_globally_unused() {
    auto flags = torch::from_blob(used.data(), {static_cast<int64_t>(used.size())}, torch::kUInt8).clone();
    if (!local) comm->all_reduce_staged(flags, launch::ReduceOp::kMax);
    const auto* any = flags.data_ptr<uint8_t>();
    for (size_t k = 0; k < mains.size(); ++k)
      if (!any[k]) mains[k].mutable_grad().reset();
  }

  // Re-buckets once, in rank 0's readiness order of the first synchronised backward
  // (parameters that were not ready follow in reverse registration order); gradients
  // move to their new slots.
  void rebuild() {
    rebuilt = true;
    std::vector<int64_t> order(ready_order.begin(), ready_order.end());
    std::vector<char> listed(params.size(), 0);
    for (size_t k : ready_order) listed[k] = 1;
    for (size_t k = params.size(); k-- > 0;)
      if (!listed[k]) order.push_back(static_cast<int64_t>(k));
    auto shared = torch::tensor(order, torch::kLong).to(comm->device());
    comm->broadcast(shared, 0);
    shared = shared.cpu();
    const auto* o = shared.data_ptr<int64_t>();
    const std::vector<size_t> rank0(o, o + shared.numel());
    const auto infos = assign_buckets(mains, first_bytes(), bucket_bytes(), rank0);
    bool same = infos.size() == buckets.size();
    for (size_t i = 0; same && i < infos.size(); ++i) same = infos[i].params == buckets[i].info.params;
    if (same) return;
    std::vector<torch::Tensor> grads;
    for (auto& m : mains) grads.push_back(m.grad());
    make_buckets(infos);
    for (size_t k = 0; k < mains.size(); ++k) {
      if (!grads[k].defined()) continue;
      slot(k).copy_(grads[k]);
      mains[k].mutable_grad() = slot(k);
    }
    ++stats.rebuilds;
  }

  int64_t first_bytes() const {
    return static_cast<int64_t>(std::min(options.first_bucket_mb, options.bucket_mb) * 1024.0 * 1024.0);
  }
  int64_t bucket_bytes() const { return static_cast<int64_t>(options.bucket_mb * 1024.0 * 1024.0); }

  // Ready for the next step. After an error, launched buckets get fresh buffers: their
  // collectives may still be running, and the communicator keeps the old ones alive.
  void reset(bool after_error) {
    std::fill(ready.begin(), ready.end(), 0);
    std::fill(used.begin(), used.end(), 0);
    ready_order.clear();
    next_launch = 0;
    for (auto& b : buckets) {
      if (after_error && b.launched) {
        b.flat = torch::empty_like(b.flat);
        make_slots(b);
      }
      b.pending = static_cast<int64_t>(b.info.params.size());
      b.launched = false;
      b.in_backward = false;
      b.work.reset();
    }
  }
};

GradReducer::GradReducer(const NamedTensors& params, std::shared_ptr<launch::Communicator> comm,
                         GradReducerOptions options, const NamedTensors& grads_into)
    : core_(std::make_shared<Core>()) {
  if (!comm) throw Error("GradReducer: no communicator");
  if (!(options.bucket_mb > 0)) throw ConfigError("ddp.bucket_mb must be > 0, got " + std::to_string(options.bucket_mb));
  if (!(options.first_bucket_mb > 0))
    throw ConfigError("GradReducer: first_bucket_mb must be > 0, got " + std::to_string(options.first_bucket_mb));
  if (options.op != launch::ReduceOp::kSum && options.op != launch::ReduceOp::kAvg)
    throw ConfigError("GradReducer: op must be sum or avg (gradients are added, not compared)");
  if (!grads_into.empty() && grads_into.size() != params.size())
    throw Error("GradReducer: grads_into has " + std::to_string(grads_into.size()) + " entries for " +
                std::to_string(params.size()) + " parameters");
  auto& c = *core_;
  c.comm = std::move(comm);
  c.options = options;
  c.local = c.comm->size() == 1;

  std::set<const void*> seen;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, p] = params[i];
    if (!p.defined() || !p.requires_grad()) continue;
    if (!seen.insert(p.unsafeGetTensorImpl()).second)
      throw Error("GradReducer: parameter '" + name + "' is listed twice (shared weights must be listed once)");
    if (!c.local && p.device() != c.comm->device())
      throw Error("GradReducer: parameter '" + name + "' is on " + p.device().str() + " but the " + c.comm->backend() +
                  " communicator reduces tensors on " + c.comm->device().str());
    const torch::Tensor main = grads_into.empty() ? p : grads_into[i].second;
    if (!main.defined() || main.sizes() != p.sizes() || main.device() != p.device() || !main.is_floating_point())
      throw Error("GradReducer: the gradient of '" + name +
                  "' must go into a floating tensor of its shape on its device");
    c.params.push_back(p);
    c.mains.push_back(main);
    c.folds.push_back(!main.is_same(p));
    c.names.push_back(name);
  }
  names_ = c.names;
  c.buffered = !c.local || std::any_of(c.folds.begin(), c.folds.end(), [](char f) { return f != 0; });
  c.rebuilt = !options.rebuild_buckets || c.local;  // one process has no launch order to fix
  c.bucket_of.assign(c.params.size(), 0);
  c.slot_of.assign(c.params.size(), 0);
  c.ready.assign(c.params.size(), 0);
  c.used.assign(c.params.size(), 0);
  c.make_buckets(assign_buckets(c.mains, c.first_bytes(), c.bucket_bytes()));

  std::weak_ptr<Core> weak = core_;
  for (size_t k = 0; k < c.params.size(); ++k) {
    c.hooks.push_back(add_post_accumulate_hook(c.params[k], [weak, k] {
      if (auto core = weak.lock()) core->on_grad_ready(k);
    }));
  }
}

GradReducer::~GradReducer() {
  std::lock_guard<std::mutex> lock(core_->mu);
  for (auto& h : core_->hooks) remove_post_accumulate_hook(h);
  core_->hooks.clear();
}

std::vector<BucketInfo> GradReducer::buckets() const {
  std::lock_guard<std::mutex> lock(core_->mu);
  std::vector<BucketInfo> out;
  for (const auto& b : core_->buckets) out.push_back(b.info);
  return out;
}

const GradReducerStats& GradReducer::stats() const { return core_->stats; }

void GradReducer::reset_stats() { core_->stats = GradReducerStats(); }

void GradReducer::set_sync(bool sync) {
  std::lock_guard<std::mutex> lock(core_->mu);
  sync_ = sync;
  core_->sync = sync;
}

void GradReducer::finish() {
  auto& c = *core_;
  std::lock_guard<std::mutex> lock(c.mu);
  if (!c.sync) return;

  std::vector<size_t> unused;
  for (size_t k = 0; k < c.params.size(); ++k)
    if (!c.ready[k]) unused.push_back(k);
  torch::NoGradGuard no_grad;
  if (!unused.empty() && !c.options.find_unused) {
    std::vector<std::string> names;
    for (size_t i = 0; i < unused.size() && i < 20; ++i) names.push_back(c.names[unused[i]]);
    std::string list = join(names);
    if (unused.size() > 20) list += ", ... (" + std::to_string(unused.size() - 20) + " more)";
    c.reset(/*after_error=*/true);
    throw Error("GradReducer: " + std::to_string(unused.size()) + " parameter(s) got no gradient in this backward: " +
                list +
                ". Every rank must reduce every parameter (or the ranks would wait on each other forever): make "
                "the loss use them, set requires_grad=false on them, or set ddp.find_unused=true to reduce them "
                "as zeros");
  }
  // Reduced as what accumulation micro-batches left in .grad, else zeros.
  for (size_t k : unused) {
    if (!c.buffered) continue;
    c.bind(k);
    if (!c.local) --c.buckets[c.bucket_of[k]].pending;
  }
  ++c.stats.syncs;
  if (!c.local) {
    c.launch_ready(true);
    const auto start = std::chrono::steady_clock::now();
    for (auto& b : c.buckets)
      if (b.work) b.work->wait();
    c.stats.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (auto& b : c.buckets) {
      (b.in_backward ? c.stats.buckets_in_backward : c.stats.buckets_at_finish) += 1;
      c.stats.bytes += b.info.bytes;
    }
  }
  // Every .grad is its slot (bind), so the averaged gradients are in place already; a
  // .grad replaced since its hook ran gets the slot back.
  if (c.buffered)
    for (size_t k = 0; k < c.mains.size(); ++k)
      if (!c.mains[k].grad().is_same(c.slot(k))) c.mains[k].mutable_grad() = c.slot(k);
  if (c.options.find_unused) c.drop_globally_unused();
  if (!c.rebuilt) c.rebuild();
  c.reset(false);
}

void GradReducer::zero_grad() {
  auto& c = *core_;
  std::lock_guard<std::mutex> lock(c.mu);
  torch::NoGradGuard no_grad;
  for (auto& b : c.buckets)
    if (b.flat.defined()) b.flat.zero_();
  for (size_t k = 0; k < c.mains.size(); ++k) {
    if (c.folds[k]) c.params[k].mutable_grad().reset();
    if (!c.buffered || !c.mains[k].grad().is_same(c.slot(k))) c.mains[k].mutable_grad().reset();
  }
}

// ------------------------------------------------------------------------------------

namespace {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

void check_root(const char* what, launch::Communicator& comm, int root) {
  if (root < 0 || root >= comm.size())
    throw Error(std::string(what) + ": root " + std::to_string(root) + " outside a world of " +
                std::to_string(comm.size()));
}

void broadcast_tensors(const char* what, const NamedTensors& tensors, launch::Communicator& comm, int root) {
  torch::NoGradGuard no_grad;
  std::vector<std::shared_ptr<launch::Work>> works;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copy_back;  // (target, contiguous stand-in)
  for (const auto& [name, t] : tensors) {
    if (t.numel() == 0) continue;
    if (t.device() != comm.device())
      throw Error(std::string(what) + ": '" + name + "' is on " + t.device().str() + " but the " + comm.backend() +
                  " communicator works on " + comm.device().str());
    torch::Tensor buffer = t.is_contiguous() ? t : t.contiguous();
    if (!buffer.is_same(t)) copy_back.emplace_back(t, buffer);
    works.push_back(comm.broadcast_async(buffer, root));
  }
  for (auto& w : works) w->wait();
  for (auto& [target, buffer] : copy_back) target.copy_(buffer);
}

NamedTensors named_buffers(torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& item : module.named_buffers(/*recurse=*/true)) out.emplace_back(item.key(), item.value());
  return out;
}

}  // namespace

void broadcast_parameters_and_buffers(torch::nn::Module& module, launch::Communicator& comm, int root) {
  const char* what = "broadcast_parameters_and_buffers";
  check_root(what, comm, root);
  if (comm.size() == 1) return;
  NamedTensors tensors;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) tensors.emplace_back(item.key(), item.value());
  const auto buffers = named_buffers(module);
  tensors.insert(tensors.end(), buffers.begin(), buffers.end());

  // Same structure everywhere, or a broadcast would pair the wrong tensors (or hang).
  std::string signature;
  for (const auto& [name, t] : tensors)
    signature += name + ":" + c10::toString(t.scalar_type()) + ":" + c10::str(t.sizes()) + ";";
  auto hash = torch::full({1}, static_cast<int64_t>(xxh64(signature)),
                          torch::TensorOptions().dtype(torch::kLong).device(comm.device()));
  auto all = comm.all_gather(hash).cpu();  // [size, 1]
  const int64_t want = all[root].item<int64_t>();
  for (int r = 0; r < comm.size(); ++r) {
    if (all[r].item<int64_t>() != want)
      throw Error(std::string(what) + ": rank " + std::to_string(r) +
                  "'s parameters and buffers (names, dtypes, shapes) differ from rank " + std::to_string(root) +
                  "'s; every rank must build the same model");
  }
  broadcast_tensors(what, tensors, comm, root);
}

void broadcast_buffers(torch::nn::Module& module, launch::Communicator& comm, int root) {
  check_root("broadcast_buffers", comm, root);
  if (comm.size() > 1) broadcast_tensors("broadcast_buffers", named_buffers(module), comm, root);
}

}  // namespace retort::trainer
