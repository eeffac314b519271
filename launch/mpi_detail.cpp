#include "launch/mpi_detail.h"

#if RETORT_HAVE_MPI
#include <chrono>
#include <exception>
#include <thread>

#include "core/error.h"

namespace retort::launch::detail {

std::mutex& mpi_mutex() {
  static std::mutex mu;
  return mu;
}

void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  throw CommError(std::string(call) + " failed on rank " + std::to_string(rank) + ": " + std::string(text, len));
}

MPI_Datatype mpi_type(torch::ScalarType dtype) {
  switch (dtype) {
    case torch::kFloat: return MPI_FLOAT;
    case torch::kDouble: return MPI_DOUBLE;
    case torch::kBFloat16:
    case torch::kHalf: return MPI_UINT16_T;
    case torch::kInt: return MPI_INT32_T;
    case torch::kLong: return MPI_INT64_T;
    case torch::kShort: return MPI_INT16_T;
    case torch::kChar: return MPI_INT8_T;
    case torch::kByte: return MPI_UINT8_T;
    case torch::kBool: return MPI_C_BOOL;
    default:
      throw CommError(std::string("MpiCommunicator: dtype ") + c10::toString(dtype) +
                      " is not supported (float32, float64, bfloat16, float16, int8/16/32/64, uint8, bool)");
  }
}

SequenceBoard::SequenceBoard(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  check_mpi(MPI_Win_allocate(sizeof(int64_t), sizeof(int64_t), MPI_INFO_NULL, comm_, &mine_, &win_),
            "MPI_Win_allocate");
  *mine_ = 0;
  int* model = nullptr;
  int found = 0;
  MPI_Win_get_attr(win_, MPI_WIN_MODEL, &model, &found);
  unified_ = !found || *model == MPI_WIN_UNIFIED;
  // One passive-target epoch for the window's whole life: reads on timeout need no
  // collective to open one, and the holder's own stores are legal inside it.
  check_mpi(MPI_Win_lock_all(MPI_MODE_NOCHECK, win_), "MPI_Win_lock_all");
  // Everyone's 0 must be in place before anyone may read it.
  check_mpi(MPI_Barrier(comm_), "MPI_Barrier");
}

SequenceBoard::~SequenceBoard() {
  if (win_ == MPI_WIN_NULL) return;
  if (std::uncaught_exceptions() > 0) return;
  MPI_Win_unlock_all(win_);
  MPI_Win_free(&win_);
}

void SequenceBoard::publish(int64_t seq) {
  if (unified_) {
    // Unified model: public and private copies are one memory, and "a store access to a
    // window is eventually visible to remote get or accumulate calls without additional
    // RMA calls" (MPI-3.1, 11.4). The board is read only after a timeout, seconds later,
    // so no MPI_Win_sync: in Open MPI it runs the progress engine, a cost paid on every
    // collective of a training step.
    __atomic_store_n(mine_, seq, __ATOMIC_RELEASE);
  } else {
    MPI_Put(&seq, 1, MPI_INT64_T, rank_, 0, 1, MPI_INT64_T, win_);
    MPI_Win_flush(rank_, win_);
  }
}

std::vector<int64_t> SequenceBoard::read_all(double wait_s) {
  // Member buffers: a get that never completes may still land later, and must not land in
  // freed memory.
  auto& values = scratch_;
  auto& requests = requests_;
  values.assign(size_, -1);
  requests.assign(size_, MPI_REQUEST_NULL);
  values[rank_] = *static_cast<volatile int64_t*>(mine_);
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    if (MPI_Rget(&values[r], 1, MPI_INT64_T, r, 0, 1, MPI_INT64_T, win_, &requests[r]) != MPI_SUCCESS) {
      values[r] = -1;
      requests[r] = MPI_REQUEST_NULL;
    }
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s);
  std::vector<bool> done(size_, false);
  done[rank_] = true;
  int open = size_ - 1;
  while (open > 0 && std::chrono::steady_clock::now() < deadline) {
    for (int r = 0; r < size_; ++r) {
      if (done[r]) continue;
      int flag = 0;
      if (requests[r] == MPI_REQUEST_NULL || MPI_Test(&requests[r], &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        flag = 1;  // failed to ask: value stays -1 ("did not answer")
      }
      if (flag) {
        done[r] = true;
        --open;
      }
    }
    if (open > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::vector<int64_t> out = values;
  for (int r = 0; r < size_; ++r)
    if (!done[r]) out[r] = -1;
  return out;
}

std::string describe_missing(const std::vector<int64_t>& counters, int64_t seq) {
  std::string out;
  for (size_t r = 0; r < counters.size(); ++r) {
    if (counters[r] >= seq) continue;
    if (!out.empty()) out += ", ";
    out += std::to_string(r);
    if (counters[r] < 0)
      out += " (did not answer: busy outside MPI or dead)";
    else
      out += " (last issued #" + std::to_string(counters[r]) + ")";
  }
  return out;
}

}  // namespace retort::launch::detail
#endif
