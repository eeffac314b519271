#include "launch/world.h"

#include <cstring>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "core/error.h"
#include "launch/communicator.h"
#include "launch/mpi_communicator.h"
#include "launch/mpi_detail.h"
#include "launch/nccl_communicator.h"

namespace retort::launch {
namespace {

World* g_world = nullptr;
// Read by abort_all, which may run on any thread (watchdog) while the World is in use.
std::atomic<int> g_rank{0};
std::atomic<bool> g_mpi_active{false};

// Signal state: only lock-free atomics and sig_atomic_t are touched in the handler.
std::atomic<bool> g_stop{false};
volatile std::sig_atomic_t g_stop_signal = 0;
volatile std::sig_atomic_t g_signal_count = 0;
static_assert(std::atomic<bool>::is_always_lock_free, "stop flag must be async-signal-safe");

void on_stop_signal(int sig) {
  if (g_signal_count > 0 && sig != SIGUSR1) {
    // Second Ctrl-C / TERM: the user means it. Die the default way (async-signal-safe).
    std::signal(sig, SIG_DFL);
    std::raise(sig);
    return;
  }
  g_signal_count = g_signal_count + 1;
  g_stop_signal = sig;
  g_stop.store(true);
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown-host";
  return buf;
}

}  // namespace

// ------------------------------------------------------------------------------------
// Launcher detection
// ------------------------------------------------------------------------------------

LaunchInfo detect_launcher(const std::function<std::optional<std::string>(const std::string&)>& getenv) {
  if (auto forced = getenv("RETORT_LAUNCHER")) {
    if (*forced == "mpi") return {true, "RETORT_LAUNCHER=mpi"};
    if (*forced == "local") return {false, "RETORT_LAUNCHER=local"};
    throw UsageError("RETORT_LAUNCHER='" + *forced + "' is not one of: mpi, local");
  }
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "MV2_COMM_WORLD_RANK"}) {
    if (auto value = getenv(var)) return {true, std::string(var) + "=" + *value};
  }
  if (auto tasks = getenv("SLURM_STEP_NUM_TASKS")) {
    long n = std::strtol(tasks->c_str(), nullptr, 10);
    if (n > 1 && getenv("SLURM_PROCID")) {
      throw UsageError("Slurm started SLURM_STEP_NUM_TASKS=" + *tasks +
                       " tasks but no MPI launcher environment (no PMIX_RANK or PMI_RANK): launch with "
                       "`srun --mpi=pmix` (or --mpi=pmi2), or set RETORT_LAUNCHER=local to run each task alone");
    }
  }
  return {false, "no MPI launcher variables"};
}

LaunchInfo detect_launcher() {
  return detect_launcher([](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  });
}

// ------------------------------------------------------------------------------------
// World
// ------------------------------------------------------------------------------------

World::World() : World(detect_launcher()) {}

World::World(const LaunchInfo& launch) {
  if (g_world) throw Error("launch::World: a World already exists in this process (one per process)");
  hostname_ = host_name();
  launch_reason_ = launch.reason;
  if (launch.use_mpi) {
    init_mpi();
  } else {
    init_single();
  }
  g_rank.store(rank_);
  g_world = this;
}

void World::init_single() {
  rank_ = 0;
  size_ = 1;
  local_rank_ = 0;
  local_size_ = 1;
  hosts_ = {hostname_};
}

void World::init_mpi() {
#if RETORT_HAVE_MPI
  std::lock_guard<std::mutex> lock(detail::mpi_mutex());
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) {
    MPI_Query_thread(&thread_level_);
  } else {
    detail::check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &thread_level_), "MPI_Init_thread");
    owns_mpi_ = true;
  }
  uses_mpi_ = true;
  g_mpi_active.store(true);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  MPI_Comm node = MPI_COMM_NULL;
  detail::check_mpi(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node),
                    "MPI_Comm_split_type");
  MPI_Comm_rank(node, &local_rank_);
  MPI_Comm_size(node, &local_size_);
  MPI_Comm_free(&node);
  constexpr int kHostBytes = 256;
  char mine[kHostBytes] = {0};
  std::strncpy(mine, hostname_.c_str(), kHostBytes - 1);
  std::vector<char> all(static_cast<size_t>(size_) * kHostBytes);
  detail::check_mpi(MPI_Allgather(mine, kHostBytes, MPI_CHAR, all.data(), kHostBytes, MPI_CHAR, MPI_COMM_WORLD),
                    "MPI_Allgather of host names");
  for (int r = 0; r < size_; ++r) hosts_.emplace_back(all.data() + static_cast<size_t>(r) * kHostBytes);
#else
  throw UsageError("started by an MPI launcher (" + launch_reason_ +
                   ") but this retort was built without MPI: rebuild with MPI, run one process, "
                   "or set RETORT_LAUNCHER=local");
#endif
}

World::~World() {
  g_world = nullptr;
#if RETORT_HAVE_MPI
  if (owns_mpi_) {
    // Finalize synchronises with the other ranks; while an exception unwinds they may
    // never get here, so leave the process to end without it (the launcher then ends
    // the job, which is what an escaped error should do).
    if (std::uncaught_exceptions() > 0) return;
    std::lock_guard<std::mutex> lock(detail::mpi_mutex());
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Finalize();
    g_mpi_active.store(false);
  }
#endif
}

torch::Device choose_device(const std::string& want, int gpus, int local_rank, int local_size,
                            bool cuda_visible_devices_set, const std::string& hostname) {
  if (want != "auto" && want != "cpu" && want != "cuda")
    throw ConfigError("trainer.device: expected auto, cpu or cuda, got '" + want + "'");
  if (want == "cpu") return torch::kCPU;
  if (gpus <= 0) {
    if (want == "cuda")
      throw UsageError("trainer.device=cuda, but no CUDA device is visible on " + hostname +
                       " (a CPU-only LibTorch, no driver, or CUDA_VISIBLE_DEVICES empty); use auto or cpu");
    return torch::kCPU;
  }
  if (local_size <= gpus) return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  // The launcher gave each rank its own GPU through CUDA_VISIBLE_DEVICES: every rank sees
  // one device, its own.
  if (gpus == 1 && cuda_visible_devices_set) return torch::Device(torch::kCUDA, 0);
  throw UsageError(std::to_string(local_size) + " ranks on " + hostname + " but " + std::to_string(gpus) +
                   " GPU" + (gpus == 1 ? "" : "s") + " visible" +
                   (cuda_visible_devices_set ? "" : " and no CUDA_VISIBLE_DEVICES binding one per rank") +
                   ": two ranks cannot share a GPU under NCCL. Start at most one rank per GPU (or bind one "
                   "per rank: srun --gpus-per-task=1), or train on CPUs with trainer.device=cpu");
}

torch::Device World::pick_device(const std::string& want) const {
  const int gpus = torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
  return choose_device(want, gpus, local_rank_, local_size_, std::getenv("CUDA_VISIBLE_DEVICES") != nullptr, hostname_);
}

World* World::current() { return g_world; }

// ------------------------------------------------------------------------------------
// Ending the job
// ------------------------------------------------------------------------------------

std::string ranks_by_host(const std::vector<std::string>& hosts) {
  std::vector<std::pair<std::string, std::vector<int>>> groups;
  for (int r = 0; r < static_cast<int>(hosts.size()); ++r) {
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == hosts[r]; });
    if (it == groups.end()) it = groups.insert(groups.end(), {hosts[r], {}});
    it->second.push_back(r);
  }
  std::string out;
  for (const auto& [host, ranks] : groups) {
    out += (out.empty() ? "" : ", ") + host + ":";
    for (size_t i = 0; i < ranks.size(); ++i) {
      size_t j = i;  // a run of consecutive ranks reads as first-last
      while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
      out += (i ? "," : " ") + std::to_string(ranks[i]) + (j > i ? "-" + std::to_string(ranks[j]) : "");
      i = j;
    }
  }
  return out;
}

void abort_all(int code, const std::string& message) {
  if (code == 0) code = kExitOther;
  std::fflush(stdout);
  // One write() so lines of different ranks do not interleave mid-line.
  const std::string line = "[rank " + std::to_string(g_rank.load()) + "] " + message + "\n";
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
#if RETORT_HAVE_MPI
  // No mpi_mutex here: the thread holding it may be the one stuck in MPI.
  if (g_mpi_active.load()) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::_Exit(code);
}

int run_guarded(World& world, const std::function<int()>& body) {
  int code = kExitOther;
  std::string message;
  try {
    return body();
  } catch (const Error& e) {
    code = e.exit_code();
    message = e.what();
  } catch (const c10::Error& e) {
    message = e.what_without_backtrace();
  } catch (const std::exception& e) {
    message = e.what();
  } catch (...) {
    message = "unknown exception";
  }
  if (world.size() > 1) abort_all(code, message);
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return code;
}

// ------------------------------------------------------------------------------------
// Stop signals
// ------------------------------------------------------------------------------------

void install_stop_handlers() {
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int sig : {SIGTERM, SIGINT, SIGUSR1}) sigaction(sig, &action, nullptr);
}

bool stop_requested() { return g_stop.load(); }
int stop_signal() { return static_cast<int>(g_stop_signal); }
void request_stop() { g_stop.store(true); }
void clear_stop_request() {
  g_stop.store(false);
  g_stop_signal = 0;
  g_signal_count = 0;
}

bool any_rank_stopping(Communicator& comm) {
  if (comm.size() == 1) return stop_requested();
  auto flag = torch::full({1}, stop_requested() ? 1 : 0, torch::TensorOptions().dtype(torch::kInt).device(comm.device()));
  comm.all_reduce(flag, ReduceOp::kMax);
  return flag.item<int>() != 0;  // host sync: once per step, by design
}

// ------------------------------------------------------------------------------------
// Communicator choice
// ------------------------------------------------------------------------------------

std::unique_ptr<Communicator> make_communicator(World& world, torch::Device device, const CommOptions& options) {
  if (!(options.timeout_s > 0)) throw ConfigError("ddp.timeout_s must be > 0, got " + std::to_string(options.timeout_s));
  std::string backend = options.backend;
  if (backend == "auto") backend = world.size() == 1 ? "local" : device.is_cuda() ? "nccl" : "mpi";
  if (backend == "local") {
    if (world.size() > 1)
      throw ConfigError("ddp.backend=local cannot serve a world of " + std::to_string(world.size()) +
                        " ranks: use auto, mpi or nccl");
    return std::make_unique<LocalCommunicator>();
  }
  if (backend == "mpi") {
    if (!device.is_cpu())
      throw ConfigError("ddp.backend=mpi reduces CPU tensors but the device is " + device.str() +
                        ": use nccl (or auto)");
#if RETORT_HAVE_MPI
    MpiOptions mpi;
    mpi.timeout_s = options.timeout_s;
    return std::make_unique<MpiCommunicator>(world, mpi);
#else
    throw ConfigError("ddp.backend=mpi: this retort was built without MPI");
#endif
  }
  if (backend == "nccl") {
    if (!device.is_cuda())
      throw ConfigError("ddp.backend=nccl reduces CUDA tensors but the device is " + device.str() +
                        ": use mpi (or auto)");
#if RETORT_HAVE_CUDA
    NcclOptions nccl;
    nccl.timeout_s = options.timeout_s;
    return std::make_unique<NcclCommunicator>(world, device, nccl);
#else
    throw ConfigError("ddp.backend=nccl: this retort was built without CUDA + NCCL");
#endif
  }
  throw ConfigError("ddp.backend='" + options.backend + "' is not one of: auto, local, mpi, nccl");
}

}  // namespace retort::launch
