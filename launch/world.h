#pragma once
/// The process world: who we are (rank, local rank, host), which device we use, and how
/// an error or a stop signal on one rank reaches all of them.
///
///   int main(int argc, char** argv) {
///     retort::launch::World world;             // MPI_Init_thread when launched by mpirun/srun
///     return retort::launch::run_guarded(world, [&] {
///       auto device = world.pick_device();
///       auto comm = retort::launch::make_communicator(world, device);
///       ...
///       return 0;
///     });                                      // an exception on any rank ends every rank
///   }
///
/// Launcher detection (why not always MPI_Init): a singleton MPI_Init works with Open MPI
/// but costs a noticeable start-up time and fails on hosts where the MPI runtime cannot start a singleton
/// (no orted, PMIx server missing). So MPI is initialised only when the environment says
/// an MPI launcher started us: OMPI_COMM_WORLD_SIZE (Open MPI's mpirun), PMIX_RANK
/// (PMIx: Open MPI 4+, `srun --mpi=pmix`), PMI_RANK / PMI_SIZE (MPICH/Hydra, Intel MPI,
/// `srun --mpi=pmi2`), MV2_COMM_WORLD_RANK (MVAPICH). Otherwise the world is one process
/// with no MPI at all. RETORT_LAUNCHER=mpi|local overrides the detection. A Slurm step of
/// several tasks without any PMI variable (plain `srun` without `--mpi=`) is an error:
/// those tasks would each train alone and overwrite one another's outputs.
#include <torch/torch.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace retort::launch {

class Communicator;

/// How the process was started, decided from the environment alone.
struct LaunchInfo {
  bool use_mpi = false;
  std::string reason;  ///< the variable that decided it, for logs ("OMPI_COMM_WORLD_SIZE=4")
};

/// Pure function of the environment (`getenv` returns nullopt when unset); throws
/// UsageError for a bad RETORT_LAUNCHER value or a multi-task Slurm step without PMI.
LaunchInfo detect_launcher(const std::function<std::optional<std::string>(const std::string&)>& getenv);
/// detect_launcher over the real environment.
LaunchInfo detect_launcher();

/// RAII owner of MPI for the process (init in the constructor, finalize in the
/// destructor when no exception is in flight). One World per process.
class World {
 public:
  World();
  /// As World(), with the launch decision given (tests, embedding).
  explicit World(const LaunchInfo& launch);
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  /// Rank among the processes on this host and their number, from
  /// MPI_Comm_split_type(MPI_COMM_TYPE_SHARED), not from launcher variables.
  int local_rank() const { return local_rank_; }
  int local_size() const { return local_size_; }
  const std::string& hostname() const { return hostname_; }
  /// Every rank's host name, by rank (gathered once at start).
  const std::vector<std::string>& hosts() const { return hosts_; }
  bool uses_mpi() const { return uses_mpi_; }
  /// The thread level MPI granted (MPI_THREAD_* value; -1 without MPI).
  int thread_level() const { return thread_level_; }
  const std::string& launch_reason() const { return launch_reason_; }

  /// choose_device() for this process: `want` is trainer.device (auto, cpu or cuda).
  torch::Device pick_device(const std::string& want = "auto") const;

  /// The World of this process, or null before one exists.
  static World* current();

 private:
  void init_single();
  void init_mpi();

  int rank_ = 0;
  int size_ = 1;
  int local_rank_ = 0;
  int local_size_ = 1;
  int thread_level_ = -1;
  bool uses_mpi_ = false;
  bool owns_mpi_ = false;
  std::string hostname_;
  std::vector<std::string> hosts_;
  std::string launch_reason_;
};

/// "node-a: 0-3, node-b: 4-7" for World::hosts() (hosts in the order of their first rank).
std::string ranks_by_host(const std::vector<std::string>& hosts);

/// Ends every rank now: prints "[rank r] message" to stderr, then MPI_Abort(code) when
/// MPI is running (the launcher kills the other ranks), else exits with `code`.
/// Safe from any thread; never returns.
[[noreturn]] void abort_all(int code, const std::string& message);

/// Runs `body`; an exception escaping it ends the job: with several ranks through
/// abort_all (exit code from retort::Error, else 1), in a world of one by printing
/// "error: <message>" and returning the code. Destructors inside `body` run first.
int run_guarded(World& world, const std::function<int()>& body);

// ------------------------------------------------------------------------------------
// Stop signals
// ------------------------------------------------------------------------------------

/// SIGTERM, SIGINT and SIGUSR1 (Slurm's `--signal=USR1@120` warning) set a flag that the
/// trainer polls; a second SIGINT/SIGTERM kills the process the default way.
void install_stop_handlers();
bool stop_requested();
/// The signal that asked to stop (0 when none, or when set by request_stop()).
int stop_signal();
/// Sets / clears the flag by hand (tests; a trainer stopping itself).
void request_stop();
void clear_stop_request();

/// True when any rank has been asked to stop: an all-reduce MAX of the flag on the
/// communicator's device. One tiny collective; the trainer calls it once per step so every
/// rank stops after the same step.
bool any_rank_stopping(Communicator& comm);

// ------------------------------------------------------------------------------------
// Choosing a communicator
// ------------------------------------------------------------------------------------

/// Options of the data-parallel transport (config section `ddp`).
struct CommOptions {
  /// auto: local for one process, nccl for a CUDA device, mpi for CPU.
  /// local | mpi | nccl force one (nccl also runs in a world of one, for tests).
  std::string backend = "auto";
  /// A collective that has not completed after this long ends the job, naming it and the
  /// ranks that never reached it (`ddp.timeout_s`).
  double timeout_s = 300.0;
};

/// Builds the communicator for `device` at run time. Throws UsageError / CommError when the
/// requested backend is not built in or cannot run here (names backend and reason).
std::unique_ptr<Communicator> make_communicator(World& world, torch::Device device, const CommOptions& options = {});

/// The device a rank trains on; every input given, so that it is tested without GPUs.
///   want: "cpu"; "cuda" (an error when no GPU is visible); "auto" (a GPU when one is, else
///   the CPU). With GPUs: cuda:<local rank>. Fewer visible GPUs than local ranks is an
///   error (two ranks on one GPU: NCCL refuses), except one GPU per process when the
///   launcher set CUDA_VISIBLE_DEVICES (Slurm --gpus-per-task / --gpu-bind: each its own).
torch::Device choose_device(const std::string& want, int gpus, int local_rank, int local_size,
                            bool cuda_visible_devices_set, const std::string& hostname);

}  // namespace retort::launch
