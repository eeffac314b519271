#include "launch/mpi_detail.h"

#if RETORT_HAVE_MPI
#include <algorithm>
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

namespace {
constexpr int kQuestion = 1;  // "what is your counter?"; the payload is unused
constexpr int kAnswer = 2;    // the counter
}  // namespace

SequenceBoard::SequenceBoard(MPI_Comm comm) {
  check_mpi(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  post_question_receive();
}

SequenceBoard::~SequenceBoard() {
  if (comm_ == MPI_COMM_NULL || std::uncaught_exceptions() > 0) return;
  if (question_request_ != MPI_REQUEST_NULL) {
    MPI_Cancel(&question_request_);
    MPI_Wait(&question_request_, MPI_STATUS_IGNORE);
  }
  for (auto& answer : answers_) MPI_Wait(&answer.second, MPI_STATUS_IGNORE);  // 8 bytes, sent eagerly
  MPI_Comm_free(&comm_);
}

void SequenceBoard::post_question_receive() {
  if (MPI_Irecv(&question_, 1, MPI_INT64_T, MPI_ANY_SOURCE, kQuestion, comm_, &question_request_) != MPI_SUCCESS)
    question_request_ = MPI_REQUEST_NULL;
}

void SequenceBoard::serve() {
  while (question_request_ != MPI_REQUEST_NULL) {
    int arrived = 0;
    MPI_Status status;
    if (MPI_Test(&question_request_, &arrived, &status) != MPI_SUCCESS || !arrived) break;
    auto& answer = answers_.emplace_back(mine_.load(std::memory_order_acquire), MPI_REQUEST_NULL);
    MPI_Isend(&answer.first, 1, MPI_INT64_T, status.MPI_SOURCE, kAnswer, comm_, &answer.second);
    post_question_receive();
  }
  while (!answers_.empty()) {
    int sent = 0;
    if (MPI_Test(&answers_.front().second, &sent, MPI_STATUS_IGNORE) != MPI_SUCCESS || !sent) break;
    answers_.pop_front();
  }
}

std::vector<int64_t> SequenceBoard::read_all(double wait_s) {
  // Member buffers: an answer that comes late may still land, and must not land in freed
  // memory.
  values_.assign(size_, -1);
  requests_.assign(2 * static_cast<size_t>(size_), MPI_REQUEST_NULL);  // answers, then questions
  values_[rank_] = mine_.load(std::memory_order_acquire);
  std::vector<bool> done(size_, false);
  done[rank_] = true;
  for (int r = 0; r < size_; ++r) {
    if (r == rank_) continue;
    if (MPI_Irecv(&values_[r], 1, MPI_INT64_T, r, kAnswer, comm_, &requests_[r]) != MPI_SUCCESS ||
        MPI_Isend(&values_[rank_], 1, MPI_INT64_T, r, kQuestion, comm_, &requests_[size_ + r]) != MPI_SUCCESS)
      done[r] = true;  // could not ask: stays -1 ("did not answer")
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(wait_s);
  int open = static_cast<int>(std::count(done.begin(), done.end(), false));
  while (open > 0 && std::chrono::steady_clock::now() < deadline) {
    serve();  // a peer timing out at the same moment asks us too
    for (int r = 0; r < size_; ++r) {
      if (done[r]) continue;
      int flag = 0;
      if (MPI_Test(&requests_[r], &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
        values_[r] = -1;
        flag = 1;
      }
      if (flag) {
        done[r] = true;
        --open;
      }
    }
    if (open > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::vector<int64_t> out = values_;
  for (int r = 0; r < size_; ++r)
    if (!done[r]) out[r] = -1;
  return out;
}

std::string describe_missing(const std::vector<int64_t>& counters, int64_t seq,
                             const std::vector<std::string>& hosts) {
  std::string out;
  for (size_t r = 0; r < counters.size(); ++r) {
    if (counters[r] >= seq) continue;
    if (!out.empty()) out += ", ";
    out += std::to_string(r) + " on " + (r < hosts.size() ? hosts[r] : "?");
    if (counters[r] < 0)
      out += " (did not answer: dead, unreachable, or its process stuck)";
    else
      out += " (last issued #" + std::to_string(counters[r]) + ")";
  }
  return out;
}

}  // namespace retort::launch::detail
#endif
