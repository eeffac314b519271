#pragma once
// launch/ internals shared by World, MpiCommunicator and NcclCommunicator. Not part of the
// public API: it includes <mpi.h>, which only launch/ sources see.
#if RETORT_HAVE_MPI
// C bindings only: Open MPI's and MPICH's C++ bindings (removed in MPI-3) need libmpi_cxx.
#ifndef OMPI_SKIP_MPICXX
#define OMPI_SKIP_MPICXX 1
#endif
#ifndef MPICH_SKIP_MPICXX
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
#include <torch/torch.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace retort::launch::detail {

/// Every MPI call of this process goes through this lock, so MPI_THREAD_SERIALIZED is
/// enough even though hooks, the progress thread and the caller all issue or test.
std::mutex& mpi_mutex();

/// Throws CommError("<call> failed on rank r: <MPI error string>") unless rc is MPI_SUCCESS.
void check_mpi(int rc, const char* call);

/// The MPI type that carries `dtype` element by element. bf16 and fp16 travel as
/// MPI_UINT16_T (bit patterns: fine for broadcast and gather, not for arithmetic).
/// Throws CommError naming the dtype when there is none.
MPI_Datatype mpi_type(torch::ScalarType dtype);

/// Per-rank collective sequence counters, asked for on timeout to learn which ranks never
/// reached a collective. Each rank stores its own counter locally (no communication in the
/// hot path) and answers the peers' questions from serve(), which its progress or watchdog
/// thread calls while the rank is alive, whatever its main thread is doing. Point-to-point messages on a communicator of the board's own,
/// not a one-sided window: Open MPI 4.1 opens no window between hosts over TCP (its pt2pt
/// component refuses MPI_THREAD_MULTIPLE, rdma needs RDMA hardware), and a board must work
/// wherever the collectives do.
class SequenceBoard {
 public:
  /// Collective over `comm` (duplicates it).
  explicit SequenceBoard(MPI_Comm comm);
  /// Collective, except while an exception unwinds (then the communicator is left to the
  /// process's end: the job is going down and the peers may never free theirs).
  /// Caller holds mpi_mutex(), as for every member.
  ~SequenceBoard();
  SequenceBoard(const SequenceBoard&) = delete;
  SequenceBoard& operator=(const SequenceBoard&) = delete;

  /// Announces that this rank has issued its `seq`-th collective. No MPI call.
  void publish(int64_t seq) { mine_.store(seq, std::memory_order_release); }
  /// Answers the questions that have arrived. Caller holds mpi_mutex().
  void serve();
  /// Every rank's counter; -1 for a rank that did not answer within `wait_s`.
  /// Caller holds mpi_mutex(). Once per process: it leaves requests open on the dead.
  std::vector<int64_t> read_all(double wait_s);
 private:
  void post_question_receive();

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::atomic<int64_t> mine_{0};
  int64_t question_ = 0;  ///< the receive buffer of the next question
  MPI_Request question_request_ = MPI_REQUEST_NULL;
  /// Answers in flight: buffers stay put (a deque never moves its elements) until sent.
  std::deque<std::pair<int64_t, MPI_Request>> answers_;
  std::vector<int64_t> values_;
  std::vector<MPI_Request> requests_;
  int rank_ = 0;
  int size_ = 1;
};

/// "1 on node-b (last issued #6), 3 on node-c (did not answer: ...)" for the ranks whose
/// counter is below `seq`; empty when every rank reached it. `hosts`: World::hosts().
std::string describe_missing(const std::vector<int64_t>& counters, int64_t seq,
                             const std::vector<std::string>& hosts);

}  // namespace retort::launch::detail
#endif
