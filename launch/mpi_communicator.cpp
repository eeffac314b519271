#include "launch/mpi_communicator.h"

#if RETORT_HAVE_MPI
#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "launch/mpi_detail.h"

namespace retort::launch {
namespace {

using Clock = std::chrono::steady_clock;

bool is_16bit_float(torch::ScalarType t) { return t == torch::kBFloat16 || t == torch::kHalf; }

// A collective in flight. `complete` and `request` are guarded by mpi_mutex().
struct PendingOp {
  MPI_Request request = MPI_REQUEST_NULL;
  std::string kind;  // "all_reduce(sum)"
  int64_t seq = 0;
  int64_t bytes = 0;
  std::string dtype;
  Clock::time_point issued;
  Clock::time_point deadline;
  bool complete = false;
  std::vector<torch::Tensor> keep;  // buffers MPI reads or writes until completion
  std::function<void()> finish;     // after completion, once, on the caller's thread
  std::once_flag finished;
};

// A new op named for messages: its kind and the size and dtype of `described`.
std::shared_ptr<PendingOp> describe(std::string kind, const torch::Tensor& described) {
  auto op = std::make_shared<PendingOp>();
  op->kind = std::move(kind);
  op->bytes = described.defined() ? static_cast<int64_t>(described.numel() * described.element_size()) : 0;
  op->dtype = described.defined() ? c10::toString(described.scalar_type()) : "none";
  return op;
}

}  // namespace

struct MpiCommunicator::Impl {
  MPI_Comm comm = MPI_COMM_NULL;
  int rank = 0;
  int size = 1;
  MpiOptions options;
  std::unique_ptr<detail::SequenceBoard> board;
  std::vector<std::string> hosts;  // World::hosts(), for timeout messages
  std::atomic<int64_t> seq{0};
  std::vector<std::shared_ptr<PendingOp>> pending;  // mpi_mutex
  bool shut_down = false;
  // Held from the start of a collective's issue until it is started (non-blocking) or has
  // returned (blocking), so that every rank starts its collectives in the order it issues
  // them, even when a blocking one runs outside mpi_mutex. Taken before mpi_mutex.
  std::mutex issue_mu;
  // Blocking collectives run without mpi_mutex (the watchdog must still reach MPI while
  // one waits), which MPI allows only at MPI_THREAD_MULTIPLE, and need the progress thread
  // as their watchdog.
  bool blocking_ok = false;

  // Progress / watchdog thread. `active` counts pending ops (cv_mu): the thread sleeps on
  // the condition variable while there is nothing to progress.
  std::thread thread;
  std::mutex cv_mu;
  std::condition_variable cv;
  int64_t active = 0;
  std::vector<std::shared_ptr<PendingOp>> blocking;  // blocking collectives in flight (cv_mu)
  bool stop = false;
  std::atomic<bool> timing_out{false};

  // Gives `op` the next sequence number and its deadline, and publishes the number. Caller
  // holds issue_mu and mpi_mutex.
  void number_locked(PendingOp& op);
  std::shared_ptr<PendingOp> issue(std::string kind, const torch::Tensor& described, std::vector<torch::Tensor> keep,
                                   const std::function<int(MPI_Request*)>& start, std::function<void()> finish);
  // Tests every pending op; caller holds mpi_mutex. Returns how many completed.
  int64_t test_pending_locked();
  // Runs a blocking collective (`call`) in the caller's thread, watched by the progress
  // thread against its deadline; `finish` then runs on the caller's thread.
  void run_blocking(std::string kind, const torch::Tensor& described, const std::function<int()>& call,
                    const std::function<void()>& finish);
  void wait(PendingOp& op);
  bool poll(PendingOp& op);
  [[noreturn]] void timeout(const PendingOp& op);
  void progress_loop();
  void shutdown();
};

// ------------------------------------------------------------------------------------
// Impl
// ------------------------------------------------------------------------------------

void MpiCommunicator::Impl::number_locked(PendingOp& op) {
  if (shut_down) throw CommError("MpiCommunicator: " + op.kind + " issued after the communicator was shut down");
  op.seq = seq.load() + 1;
  // Publish before starting: a peer that times out waiting for us must see that we got
  // here, or it would name us as missing.
  board->publish(op.seq);
  seq.store(op.seq);
  op.issued = Clock::now();
  op.deadline = op.issued + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.timeout_s));
}

void MpiCommunicator::Impl::run_blocking(std::string kind, const torch::Tensor& described,
                                         const std::function<int()>& call, const std::function<void()>& finish) {
  auto op = describe(std::move(kind), described);
  int rc = MPI_SUCCESS;
  {
    std::lock_guard<std::mutex> order(issue_mu);
    {
      std::lock_guard<std::mutex> lock(detail::mpi_mutex());
      number_locked(*op);
    }
    {
      std::lock_guard<std::mutex> lock(cv_mu);
      blocking.push_back(op);  // the progress thread watches its deadline
    }
    rc = call();  // outside mpi_mutex: MPI_THREAD_MULTIPLE
    {
      std::lock_guard<std::mutex> lock(cv_mu);
      blocking.erase(std::find(blocking.begin(), blocking.end(), op));
    }
  }
  detail::check_mpi(rc, ("MPI " + op->kind).c_str());
  if (finish) finish();
}

std::shared_ptr<PendingOp> MpiCommunicator::Impl::issue(std::string kind, const torch::Tensor& described,
                                                         std::vector<torch::Tensor> keep,
                                                         const std::function<int(MPI_Request*)>& start,
                                                         std::function<void()> finish) {
  auto op = describe(std::move(kind), described);
  op->keep = std::move(keep);
  op->finish = std::move(finish);
  {
    std::lock_guard<std::mutex> order(issue_mu);
    std::lock_guard<std::mutex> lock(detail::mpi_mutex());
    number_locked(*op);
    detail::check_mpi(start(&op->request), ("MPI " + op->kind).c_str());
    pending.push_back(op);
    if (!thread.joinable()) test_pending_locked();  // no progress thread: progress when we can
  }
  if (thread.joinable()) {
    {
      std::lock_guard<std::mutex> lock(cv_mu);
      ++active;
    }
    cv.notify_one();
  }
  return op;
}

int64_t MpiCommunicator::Impl::test_pending_locked() {
  board->serve();
  int64_t completed = 0;
  for (auto& op : pending) {
    int flag = 0;
    detail::check_mpi(MPI_Test(&op->request, &flag, MPI_STATUS_IGNORE), ("MPI_Test of " + op->kind).c_str());
    if (flag) {
      op->complete = true;
      ++completed;
    }
  }
  if (completed) {
    pending.erase(std::remove_if(pending.begin(), pending.end(), [](const auto& op) { return op->complete; }),
                  pending.end());
    if (thread.joinable()) {
      std::lock_guard<std::mutex> lock(cv_mu);
      active -= completed;
    }
  }
  return completed;
}

bool MpiCommunicator::Impl::poll(PendingOp& op) {
  {
    std::lock_guard<std::mutex> lock(detail::mpi_mutex());
    if (!op.complete) test_pending_locked();
    if (!op.complete) return false;
  }
  std::call_once(op.finished, [&] {
    if (op.finish) op.finish();
  });
  return true;
}

void MpiCommunicator::Impl::wait(PendingOp& op) {
  // The caller has nothing else to do until the op completes, so poll without sleeping
  // for a while first: a non-blocking collective advances only inside MPI_Test, and each
  // sleep adds the timer's slack to a collective that takes microseconds (bench/RESULTS.md,
  // "Data parallel: scaling and the reducer"). Long waits (a slow rank) then back off to
  // sleeps so they leave the core to others.
  const auto spin_until = Clock::now() + std::chrono::milliseconds(5);
  auto pause = std::chrono::microseconds(1);
  while (!poll(op)) {
    const auto now = Clock::now();
    if (now > op.deadline) timeout(op);
    if (now < spin_until) {
      std::this_thread::yield();
      continue;
    }
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::microseconds(200));
  }
}

void MpiCommunicator::Impl::timeout(const PendingOp& op) {
  if (timing_out.exchange(true)) {
    // Another thread is already reporting; it ends the process.
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  const double waited = std::chrono::duration<double>(Clock::now() - op.issued).count();
  std::string missing;
  {
    std::lock_guard<std::mutex> lock(detail::mpi_mutex());
    missing = detail::describe_missing(board->read_all(/*wait_s=*/5.0), op.seq, hosts);
  }
  char head[160];
  std::snprintf(head, sizeof head, "%.1f s", waited);
  std::string message = "collective timed out: " + op.kind + " #" + std::to_string(op.seq) + " (" +
                        std::to_string(op.bytes) + " bytes of " + op.dtype + ") has not completed " + head +
                        " after it was issued (ddp.timeout_s=" + c10::str(options.timeout_s) + "); ";
  if (!missing.empty()) {
    message += "ranks that never issued it: " + missing;
  } else {
    message += "every rank issued it, so the ranks disagree on the order or sizes of their collectives, or the "
               "network stalled";
  }
  abort_all(kExitOther, message);
}

void MpiCommunicator::Impl::progress_loop() {
  const auto overdue_blocking = [&](Clock::time_point now) -> std::shared_ptr<PendingOp> {
    for (auto& op : blocking)  // cv_mu held
      if (now > op->deadline) return op;
    return nullptr;
  };
  // Blocking collectives run in their callers' threads and are not announced to this
  // thread (a wake-up per collective costs more CPU than a small all-reduce on a busy
  // core): it looks at their deadlines every watch period, even while idle.
  const auto watch_period = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(std::clamp(options.timeout_s / 10.0, 0.01, 1.0)));
  for (;;) {
    std::shared_ptr<PendingOp> overdue;
    {
      std::unique_lock<std::mutex> lock(cv_mu);
      cv.wait_for(lock, watch_period, [&] { return stop || active > 0; });
      if (stop) return;
      overdue = overdue_blocking(Clock::now());
      if (active == 0) {
        lock.unlock();
        if (overdue) timeout(*overdue);
        std::lock_guard<std::mutex> mpi_lock(detail::mpi_mutex());
        board->serve();  // a peer that timed out asks how far this rank got
        continue;
      }
    }
    {
      std::lock_guard<std::mutex> lock(detail::mpi_mutex());
      try {
        test_pending_locked();
      } catch (const std::exception& e) {
        abort_all(kExitOther, e.what());
      }
      const auto now = Clock::now();
      for (auto& op : pending)
        if (now > op->deadline) overdue = op;
    }
    if (overdue) timeout(*overdue);
    // Often enough to keep a reduction's rounds moving, rarely enough to leave backward
    // its cores.
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
}

void MpiCommunicator::Impl::shutdown() {
  if (thread.joinable()) {
    {
      std::lock_guard<std::mutex> lock(cv_mu);
      stop = true;
    }
    cv.notify_one();
    thread.join();
  }
  const bool unwinding = std::uncaught_exceptions() > 0;
  if (!unwinding) {
    // Collectives nobody waited for still own their buffers; finish them before freeing.
    std::vector<std::shared_ptr<PendingOp>> left;
    {
      std::lock_guard<std::mutex> lock(detail::mpi_mutex());
      left = pending;
    }
    for (auto& op : left) wait(*op);
  }
  std::lock_guard<std::mutex> lock(detail::mpi_mutex());
  shut_down = true;
  if (unwinding) {
    (void)board.release();  // see SequenceBoard: never free collectively while unwinding
    return;
  }
  board.reset();
  MPI_Comm_free(&comm);
}

// ------------------------------------------------------------------------------------
// Work
// ------------------------------------------------------------------------------------

namespace {

class MpiWork final : public Work {
 public:
  MpiWork(std::shared_ptr<MpiCommunicator::Impl> impl, std::shared_ptr<PendingOp> op)
      : impl_(std::move(impl)), op_(std::move(op)) {}
  void wait() override { impl_->wait(*op_); }
  bool done() override { return impl_->poll(*op_); }

 private:
  std::shared_ptr<MpiCommunicator::Impl> impl_;
  std::shared_ptr<PendingOp> op_;
};

void check_cpu_tensor(const torch::Tensor& t, const std::string& what) {
  if (!t.defined()) throw CommError("MpiCommunicator." + what + ": tensor is undefined");
  if (!t.device().is_cpu())
    throw CommError("MpiCommunicator." + what + ": tensor is on " + t.device().str() +
                    "; MPI reduces CPU tensors (use the nccl backend for CUDA)");
  if (t.numel() > INT_MAX)
    throw CommError("MpiCommunicator." + what + ": " + std::to_string(t.numel()) +
                    " elements exceed MPI's int count; split the tensor");
}

void check_in_place(const torch::Tensor& t, const std::string& what) {
  check_cpu_tensor(t, what);
  if (!t.is_contiguous())
    throw CommError("MpiCommunicator." + what + ": tensor of shape " + c10::str(t.sizes()) +
                    " is not contiguous; collectives work in place on contiguous tensors");
}

}  // namespace

// ------------------------------------------------------------------------------------
// MpiCommunicator
// ------------------------------------------------------------------------------------

MpiCommunicator::MpiCommunicator(World& world, MpiOptions options) : impl_(std::make_shared<Impl>()) {
  if (!world.uses_mpi())
    throw CommError("MpiCommunicator needs a world started by an MPI launcher (mpirun, srun --mpi=pmix); this "
                    "process has " + world.launch_reason());
  if (!(options.timeout_s > 0))
    throw ConfigError("ddp.timeout_s must be > 0, got " + std::to_string(options.timeout_s));
  impl_->options = options;
  impl_->hosts = world.hosts();
  {
    std::lock_guard<std::mutex> lock(detail::mpi_mutex());
    detail::check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &impl_->comm), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(impl_->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(impl_->comm, &impl_->rank);
    MPI_Comm_size(impl_->comm, &impl_->size);
    impl_->board = std::make_unique<detail::SequenceBoard>(impl_->comm);
  }
  if (options.progress_thread && world.thread_level() >= MPI_THREAD_SERIALIZED) {
    Impl* impl = impl_.get();
    impl_->thread = std::thread([impl] { impl->progress_loop(); });
    impl_->blocking_ok = world.thread_level() >= MPI_THREAD_MULTIPLE;
  }
}

MpiCommunicator::~MpiCommunicator() { impl_->shutdown(); }

int MpiCommunicator::rank() const { return impl_->rank; }
int MpiCommunicator::size() const { return impl_->size; }
int64_t MpiCommunicator::issued() const { return impl_->seq.load(); }

namespace {
// An all-reduce ready to start: what MPI reduces, how, and what to do after it.
struct AllReducePlan {
  std::string kind;
  torch::Tensor buffer;  // the tensor itself, or an fp32 copy of a 16-bit one
  MPI_Datatype type = MPI_DATATYPE_NULL;
  MPI_Op op = MPI_SUM;
  std::function<void()> finish;  // avg's division, the copy back of a 16-bit tensor
};

AllReducePlan plan_all_reduce(const torch::Tensor& tensor, ReduceOp op, int world_size) {
  AllReducePlan plan;
  plan.kind = std::string("all_reduce(") + to_string(op) + ")";
  check_in_place(tensor, plan.kind);
  const auto dtype = tensor.scalar_type();
  if (op == ReduceOp::kMax) plan.op = MPI_MAX;
  if (op == ReduceOp::kMin) plan.op = MPI_MIN;
  if (dtype == torch::kBool) {
    if (op == ReduceOp::kSum || op == ReduceOp::kAvg)
      throw CommError("MpiCommunicator." + plan.kind + ": not defined for bool; use max (any rank) or min (every rank)");
    plan.op = op == ReduceOp::kMax ? MPI_LOR : MPI_LAND;
  }
  if (op == ReduceOp::kAvg && !torch::isFloatingType(dtype))
    throw CommError("MpiCommunicator." + plan.kind + ": not defined for " + c10::toString(dtype) +
                    " (integer division would truncate); use sum and divide");
  plan.buffer = tensor;
  if (is_16bit_float(dtype)) {
    plan.buffer = tensor.to(torch::kFloat);  // see the header: reduce 16-bit floats in fp32
    plan.type = MPI_FLOAT;
  } else {
    plan.type = detail::mpi_type(dtype);
  }
  if (op == ReduceOp::kAvg || plan.buffer.data_ptr() != tensor.data_ptr()) {
    plan.finish = [tensor, buffer = plan.buffer, world_size, op]() mutable {
      if (op == ReduceOp::kAvg) buffer.div_(world_size);
      if (buffer.data_ptr() != tensor.data_ptr()) tensor.copy_(buffer);
    };
  }
  return plan;
}
}  // namespace

std::shared_ptr<Work> MpiCommunicator::all_reduce_async(torch::Tensor tensor, ReduceOp op) {
  auto plan = plan_all_reduce(tensor, op, impl_->size);
  MPI_Comm comm = impl_->comm;
  void* data = plan.buffer.data_ptr();
  const int count = static_cast<int>(plan.buffer.numel());
  auto pending = impl_->issue(
      plan.kind, tensor, {tensor, plan.buffer},
      [&](MPI_Request* req) { return MPI_Iallreduce(MPI_IN_PLACE, data, count, plan.type, plan.op, comm, req); },
      std::move(plan.finish));
  return std::make_shared<MpiWork>(impl_, std::move(pending));
}

void MpiCommunicator::all_reduce(torch::Tensor tensor, ReduceOp op) {
  if (!impl_->blocking_ok) {
    Communicator::all_reduce(std::move(tensor), op);
    return;
  }
  auto plan = plan_all_reduce(tensor, op, impl_->size);
  MPI_Comm comm = impl_->comm;
  void* data = plan.buffer.data_ptr();
  const int count = static_cast<int>(plan.buffer.numel());
  impl_->run_blocking(
      plan.kind, tensor, [&] { return MPI_Allreduce(MPI_IN_PLACE, data, count, plan.type, plan.op, comm); },
      plan.finish);
}

std::shared_ptr<Work> MpiCommunicator::broadcast_async(torch::Tensor tensor, int root) {
  const std::string kind = "broadcast(root " + std::to_string(root) + ")";
  if (root < 0 || root >= impl_->size)
    throw CommError("MpiCommunicator.broadcast: root " + std::to_string(root) + " outside a world of " +
                    std::to_string(impl_->size));
  check_in_place(tensor, kind);
  MPI_Datatype type = detail::mpi_type(tensor.scalar_type());
  MPI_Comm comm = impl_->comm;
  void* data = tensor.data_ptr();
  const int count = static_cast<int>(tensor.numel());
  auto pending = impl_->issue(
      kind, tensor, {tensor}, [&](MPI_Request* req) { return MPI_Ibcast(data, count, type, root, comm, req); },
      nullptr);
  return std::make_shared<MpiWork>(impl_, std::move(pending));
}

torch::Tensor MpiCommunicator::all_gather(const torch::Tensor& tensor) {
  check_cpu_tensor(tensor, "all_gather");
  auto send = tensor.contiguous();
  std::vector<int64_t> shape{impl_->size};
  shape.insert(shape.end(), tensor.sizes().begin(), tensor.sizes().end());
  auto out = torch::empty(shape, tensor.options());  // [size, ...tensor.shape]
  MPI_Datatype type = detail::mpi_type(tensor.scalar_type());
  MPI_Comm comm = impl_->comm;
  const int count = static_cast<int>(send.numel());
  auto pending = impl_->issue("all_gather", tensor, {send, out}, [&](MPI_Request* req) {
    return MPI_Iallgather(send.data_ptr(), count, type, out.data_ptr(), count, type, comm, req);
  }, nullptr);
  impl_->wait(*pending);
  return out;
}

void MpiCommunicator::barrier() {
  MPI_Comm comm = impl_->comm;
  auto pending = impl_->issue("barrier", torch::Tensor(), {}, [&](MPI_Request* req) { return MPI_Ibarrier(comm, req); },
                              nullptr);
  impl_->wait(*pending);
}

}  // namespace retort::launch
#endif
