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

std::vector<BucketInfo> assign_buckets(const std::vector<torch::Tensor>& params, int64_t first_bytes, int64_t bytes) {
  struct Open {
    BucketInfo bucket;
    bool first_done = false;
  };
  std::map<torch::ScalarType, Open> open;  // one bucket filling per dtype, as DDP
  std::vector<BucketInfo> out;
  for (size_t k = params.size(); k-- > 0;) {
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
  // Launch order = order of readiness: the bucket holding the latest-registered
  // parameter (whose gradient backward makes first) goes first.
  std::stable_sort(out.begin(), out.end(),
                   [](const BucketInfo& a, const BucketInfo& b) { return a.params.front() > b.params.front(); });
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
  bool local = false;  // world of one: nothing to copy or send
  bool sync = true;
  std::vector<torch::Tensor> params;
  std::vector<std::string> names;
  std::vector<size_t> bucket_of;
  std::vector<size_t> slot_of;
  std::vector<Bucket> buckets;
  std::vector<char> ready;
  size_t next_launch = 0;
  std::vector<HookHandle> hooks;

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

  // Makes the slot `index`'s gradient, as DDP's gradient_as_bucket_view: accumulation
  // (AccumulateGrad adds into a defined .grad in place) and the all-reduce then work on
  // the bucket directly, and nothing is copied in or out. A gradient that is not the slot
  // (the first step; after zero_grad(set_to_none); master weights dropping it) is copied
  // in once and replaced by the slot.
  void bind_slot(size_t index) {
    auto& p = params[index];
    const auto& s = slot(index);
    if (p.grad().is_same(s)) return;
    if (p.grad().defined())
      s.copy_(p.grad());
    else
      s.zero_();
    p.mutable_grad() = s;
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
    if (!sync) return;  // accumulation micro-batch: .grad just accumulates
    if (ready[index])
      throw Error("GradReducer: parameter '" + names[index] +
                  "' got a second gradient before finish(); call finish() after every synchronised backward, or "
                  "set_sync(false) for accumulation micro-batches");
    ready[index] = 1;
    if (local) return;
    const auto& grad = params[index].grad();
    if (grad.is_sparse()) throw Error("GradReducer: parameter '" + names[index] + "' has a sparse gradient (unsupported)");
    torch::NoGradGuard no_grad;
    bind_slot(index);
    auto& b = buckets[bucket_of[index]];
    if (--b.pending == 0) launch_ready(false);
  }

  // Ready for the next backward. After an error, launched buckets get fresh buffers: their
  // collectives may still be running, and the communicator keeps the old ones alive.
  void reset(bool after_error) {
    std::fill(ready.begin(), ready.end(), 0);
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

GradReducer::GradReducer(const std::vector<std::pair<std::string, torch::Tensor>>& params,
                         std::shared_ptr<launch::Communicator> comm, GradReducerOptions options)
    : core_(std::make_shared<Core>()) {
  if (!comm) throw Error("GradReducer: no communicator");
  if (!(options.bucket_mb > 0)) throw ConfigError("ddp.bucket_mb must be > 0, got " + std::to_string(options.bucket_mb));
  if (!(options.first_bucket_mb > 0))
    throw ConfigError("GradReducer: first_bucket_mb must be > 0, got " + std::to_string(options.first_bucket_mb));
  if (options.op != launch::ReduceOp::kSum && options.op != launch::ReduceOp::kAvg)
    throw ConfigError("GradReducer: op must be sum or avg (gradients are added, not compared)");
  auto& c = *core_;
  c.comm = std::move(comm);
  c.options = options;
  c.local = c.comm->size() == 1;

  std::set<const void*> seen;
  for (const auto& [name, p] : params) {
    if (!p.defined() || !p.requires_grad()) continue;
    if (!seen.insert(p.unsafeGetTensorImpl()).second)
      throw Error("GradReducer: parameter '" + name + "' is listed twice (shared weights must be listed once)");
    if (!c.local && p.device() != c.comm->device())
      throw Error("GradReducer: parameter '" + name + "' is on " + p.device().str() + " but the " + c.comm->backend() +
                  " communicator reduces tensors on " + c.comm->device().str());
    c.params.push_back(p);
    c.names.push_back(name);
  }
  names_ = c.names;

  const double mib = 1024.0 * 1024.0;
  // The first bucket is the smaller one: never larger than the others.
  buckets_ = assign_buckets(c.params, static_cast<int64_t>(std::min(options.first_bucket_mb, options.bucket_mb) * mib),
                            static_cast<int64_t>(options.bucket_mb * mib));
  c.bucket_of.assign(c.params.size(), 0);
  c.slot_of.assign(c.params.size(), 0);
  c.ready.assign(c.params.size(), 0);
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    Core::Bucket b;
    b.info = buckets_[bi];
    int64_t offset = 0;
    for (size_t s = 0; s < b.info.params.size(); ++s) {
      const size_t k = b.info.params[s];
      c.bucket_of[k] = bi;
      c.slot_of[k] = s;
      b.offsets.push_back(offset);
      offset += c.params[k].numel();
    }
    if (!c.local) {
      b.flat = torch::empty({b.info.numel}, c.params[b.info.params.front()].options().requires_grad(false));
      c.make_slots(b);
    }
    b.pending = static_cast<int64_t>(b.info.params.size());
    c.buckets.push_back(std::move(b));
  }

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
  if (!unused.empty()) {
    if (!c.options.find_unused) {
      std::string list;
      for (size_t i = 0; i < unused.size() && i < 20; ++i) list += (i ? ", " : "") + c.names[unused[i]];
      if (unused.size() > 20) list += ", ... (" + std::to_string(unused.size() - 20) + " more)";
      c.reset(/*after_error=*/true);
      throw Error("GradReducer: " + std::to_string(unused.size()) + " parameter(s) got no gradient in this backward: " +
                  list +
                  ". Every rank must reduce every parameter (or the ranks would wait on each other forever): make "
                  "the loss use them, set requires_grad=false on them, or set ddp.find_unused=true to reduce them "
                  "as zeros");
    }
    for (size_t k : unused) {
      auto& p = c.params[k];
      if (c.local) {
        if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
        continue;
      }
      // What an accumulation micro-batch left in .grad still counts; else zeros.
      c.bind_slot(k);
      --c.buckets[c.bucket_of[k]].pending;
      c.ready[k] = 1;
    }
    if (!c.local) c.launch_ready(true);
  }

  ++stats_.syncs;
  if (c.local) {
    c.reset(false);
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  for (auto& b : c.buckets)
    if (b.work) b.work->wait();
  stats_.wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (auto& b : c.buckets) {
    (b.in_backward ? stats_.buckets_in_backward : stats_.buckets_at_finish) += 1;
    stats_.bytes += b.info.bytes;
  }
  // Every .grad is its slot (bind_slot), so the averaged gradients are in place already;
  // a .grad replaced since its hook ran gets the slot back.
  for (size_t k = 0; k < c.params.size(); ++k)
    if (!c.params[k].grad().is_same(c.slot(k))) c.params[k].mutable_grad() = c.slot(k);
  c.reset(false);
}

// ------------------------------------------------------------------------------------

void broadcast_parameters_and_buffers(torch::nn::Module& module, launch::Communicator& comm, int root) {
  if (root < 0 || root >= comm.size())
    throw Error("broadcast_parameters_and_buffers: root " + std::to_string(root) + " outside a world of " +
                std::to_string(comm.size()));
  if (comm.size() == 1) return;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) tensors.emplace_back(item.key(), item.value());
  for (const auto& item : module.named_buffers(/*recurse=*/true)) tensors.emplace_back(item.key(), item.value());

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
      throw Error("broadcast_parameters_and_buffers: rank " + std::to_string(r) +
                  "'s parameters and buffers (names, dtypes, shapes) differ from rank " + std::to_string(root) +
                  "'s; every rank must build the same model");
  }

  torch::NoGradGuard no_grad;
  std::vector<std::shared_ptr<launch::Work>> works;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> copy_back;  // (target, contiguous stand-in)
  for (auto& [name, t] : tensors) {
    if (t.numel() == 0) continue;
    if (t.device() != comm.device())
      throw Error("broadcast_parameters_and_buffers: '" + name + "' is on " + t.device().str() + " but the " +
                  comm.backend() + " communicator works on " + comm.device().str());
    torch::Tensor buffer = t.is_contiguous() ? t : t.contiguous();
    if (!buffer.is_same(t)) copy_back.emplace_back(t, buffer);
    works.push_back(comm.broadcast_async(buffer, root));
  }
  for (auto& w : works) w->wait();
  for (auto& [target, buffer] : copy_back) target.copy_(buffer);
}

}  // namespace retort::trainer
