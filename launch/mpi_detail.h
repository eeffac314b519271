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

#include <cstdint>
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

/// Per-rank collective sequence counters in an MPI window, read on timeout to learn which
/// ranks never reached a collective. Each rank stores its own counter locally (no
/// communication in the hot path); a reader gets the others with passive-target MPI_Rget,
/// bounded in time because a target that is not inside MPI may not answer over networks
/// whose one-sided operations need the target's progress (on one host, or with RDMA,
/// they never need it).
class SequenceBoard {
 public:
  /// Collective over `comm`.
  explicit SequenceBoard(MPI_Comm comm);
  /// Collective, except while an exception unwinds (then the window is left to the
  /// process's end: the job is going down and the peers may never free theirs).
  /// Caller holds mpi_mutex(), as for every member.
  ~SequenceBoard();
  SequenceBoard(const SequenceBoard&) = delete;
  SequenceBoard& operator=(const SequenceBoard&) = delete;

  /// Announces that this rank has issued its `seq`-th collective. Caller holds mpi_mutex().
  void publish(int64_t seq);
  /// Every rank's counter; -1 for a rank that did not answer within `wait_s`.
  /// Caller holds mpi_mutex().
  std::vector<int64_t> read_all(double wait_s);

 private:
  MPI_Comm comm_;
  MPI_Win win_ = MPI_WIN_NULL;
  int64_t* mine_ = nullptr;
  std::vector<int64_t> scratch_;
  std::vector<MPI_Request> requests_;
  bool unified_ = true;
  int rank_ = 0;
  int size_ = 1;
};

/// "1 (last issued #6), 3 (did not answer)" for the ranks whose counter is below `seq`;
/// empty when every rank reached it.
std::string describe_missing(const std::vector<int64_t>& counters, int64_t seq);

}  // namespace retort::launch::detail
#endif
