// `retort train <recipe> [overrides...] [--cfg] [--help] [-m]`
#include <CLI/CLI.hpp>

#include <ctime>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "cli/run_config.h"
#include "core/error.h"
#include "core/text.h"
#include "core/fs.h"
#include "data/data.h"
#include "launch/communicator.h"
#include "launch/world.h"
#include "models/model.h"
#include "models/weights.h"
#include "trainer/metrics.h"
#include "trainer/task.h"
#include "distill/distill.h"
#include "cli/prune.h"
#include "trainer/distill_task.h"
#include "trainer/pruned_task.h"
#include "trainer/trainer.h"

namespace retort::cli {
namespace {

struct TrainArgs {
  Args positionals;  ///< the recipe and the overrides, as given
  std::string recipe;
  Args overrides;
  bool print_cfg = false;
  bool multirun = false;
};

/// Why `run_dir` cannot take a fresh run (empty when it can): a directory that already
/// holds a run's metrics or checkpoints is continued with trainer.resume, never written
/// over (the logs would interleave and the new checkpoints would mix with the old).
std::string existing_run_problem(const std::filesystem::path& run_dir, const std::string& resume) {
  if (!resume.empty()) return "";
  std::error_code ec;
  std::vector<std::string> found;
  if (std::filesystem::exists(run_dir / "metrics.jsonl", ec)) found.push_back("metrics.jsonl");
  const auto checkpoints = run_dir / "checkpoints";
  if (std::filesystem::is_directory(checkpoints, ec) && !std::filesystem::is_empty(checkpoints, ec))
    found.push_back("checkpoints/");
  if (found.empty()) return "";
  return "run.dir: '" + run_dir.string() + "' already holds a run (" + join(found) +
         "); continue it with trainer.resume=auto, or choose another run.dir (by default every run gets a new "
         "timestamped one)";
}

std::string yaml_list(const std::vector<std::string>& items) {
  YAML::Node n(YAML::NodeType::Sequence);
  for (const auto& s : items) n.push_back(s);
  return config::emit(n);
}

/// Why this rank's own composition disagrees with rank 0's config ("" when it agrees).
std::string rank_config_problem(const TrainArgs& a, int rank_index, const std::string& text, const std::string& hash,
                                long long now, YAML::Node* received, config::Composed* mine) {
  const std::string rank = "rank " + std::to_string(rank_index);
  *received = config::parse(text, "config from rank 0");
  if (hex64(config::hash(*received)) != hash)
    return rank + ": the config received from rank 0 does not match its hash " + hash + " (corrupted in transit)";
  try {
    config::ComposeRequest request{a.recipe, a.overrides, {}, run_config_schema_yaml()};
    request.now = static_cast<std::time_t>(now);  // rank 0's instant: ${now:...} agrees
    *mine = config::compose(request);
  } catch (const ConfigError& e) {
    return rank + ": " + e.what();
  }
  if (hex64(config::hash(mine->config)) == hash) return "";
  const auto d = config::describe_difference(*received, mine->config);
  if (!d) return rank + ": the config's hash differs from rank 0's, but no key does";
  return rank + ": config differs from rank 0's at '" + d->key + "': rank 0 has " + d->a + ", " + rank + " has " +
         d->b + " (start every rank with the same recipe, overrides and environment)";
}

/// Composes on rank 0 and hands the result to every rank, which uses it as the run's
/// config. Every other rank also composes its own command line, recipe files and
/// environment at rank 0's instant (so `${now:...}` agrees) and compares: a rank started
/// differently (another recipe on its node, another override, another environment
/// variable) stops the job with the first differing key named, before anything is created.
config::Composed compose_everywhere(const TrainArgs& a, launch::Communicator& comm) {
  config::Composed composed;
  std::string text, hash, now;
  if (comm.rank() == 0) {
    composed = config::compose({a.recipe, a.overrides, {}, run_config_schema_yaml()});
    text = config::emit(composed.config);
    hash = hex64(config::hash(composed.config));
    now = std::to_string(static_cast<long long>(composed.now));
  }
  if (comm.size() == 1) return composed;
  comm.broadcast_string(text, 0);
  comm.broadcast_string(hash, 0);
  comm.broadcast_string(now, 0);
  std::string recipe_text = composed.recipe_text;
  comm.broadcast_string(recipe_text, 0);

  // Every rank learns of a mismatch (lowest differing rank's message) before anyone
  // creates the run directory, and all stop with the same message.
  std::string problem;
  YAML::Node received;
  config::Composed mine;
  if (comm.rank() != 0) {
    problem = rank_config_problem(a, comm.rank(), text, hash, std::stoll(now), &received, &mine);
  }
  auto who = torch::full({1}, problem.empty() ? comm.size() : comm.rank(), torch::kInt);
  comm.all_reduce_staged(who, launch::ReduceOp::kMin);
  const int first = who.item<int>();
  if (first < comm.size()) {
    comm.broadcast_string(problem, first);
    throw ConfigError(problem);
  }
  if (comm.rank() == 0) return composed;
  composed.config = received;
  composed.recipe_text = recipe_text;
  composed.overrides = a.overrides;
  composed.now = mine.now;
  return composed;
}

struct RunSummary {
  trainer::TrainResult result;
  std::filesystem::path dir;
};

/// Distillation from a teacher cache (distill.cache.dir): the teacher is not loaded; the
/// cache must have been made for this run's teacher, corpus, blocks and storage.
std::shared_ptr<trainer::Task> cached_distill_task(const RunConfig& rc, std::shared_ptr<models::Model> model,
                                                   const data::Dataset& train_set) {
  if (!train_set.text || train_set.text->sampling() != data::WindowSampling::kBlocks)
    throw ConfigError("distill.cache.dir: a teacher cache holds the teacher's outputs on fixed aligned blocks of text; "
                      "train on them with data.windows=blocks");
  auto cache = std::make_shared<distill::TeacherCache>(rc.distill.cache_dir);
  cache->check(distill::cache_spec(rc.distill, trainer::teacher_cache_key(rc.distill, *train_set.text, rc.model)));
  if (cache->blocks() < train_set.size())
    throw ConfigError("distill.cache.dir: the cache holds " + std::to_string(cache->blocks()) +
                      " blocks, this run trains on " + std::to_string(train_set.size()) +
                      " (data.subset); make the cache with the run's data.subset");
  distill::Distiller distiller(nullptr, model, rc.distill);
  return std::make_shared<trainer::DistillTask>(distiller, trainer::sample_batch(train_set, 2, rc.data), cache);
}

/// The task the run trains: supervised, distillation when any distill key is set (teacher
/// frozen, projections made, every mapped pair checked by a dry forward on one batch),
/// wrapped in pruning masks when started from a pruned checkpoint; all before the run
/// directory exists.
std::shared_ptr<trainer::Task> make_task(const RunConfig& rc, std::shared_ptr<models::Model> model,
                                         const std::optional<PrunedStart>& pruned, const data::Dataset& train_set,
                                         const torch::Device& device, std::shared_ptr<launch::Communicator> comm) {
  std::shared_ptr<trainer::Task> task = std::make_shared<trainer::SupervisedTask>(model);
  // The schema gives every run a distill section at its defaults.
  if (!config::is_default(rc.distill)) {
    rc.distill.validate();
    rc.distill.validate_teacher_source();
    const double dkd = rc.distill.loss_weights().dkd;
    if (rc.data.mixup > 0 && dkd > 0)
      throw ConfigError("distill.weights.dkd=" + std::to_string(dkd) +
                        " needs one true class per sample, which data.mixup=" + std::to_string(rc.data.mixup) +
                        " mixes away: set one of them to 0");
    model->to(device);
    if (!rc.distill.cache_dir.empty()) {
      task = cached_distill_task(rc, model, train_set);
    } else {
      auto teacher = trainer::load_teacher(rc.distill, rc.data);
      teacher->to(device);
      distill::Distiller distiller(teacher, model, rc.distill);
      task = std::make_shared<trainer::DistillTask>(distiller, trainer::sample_batch(train_set, 2, rc.data));
    }
  }
  // Masks keep pruned weights at exactly zero through fine-tuning (gradients masked,
  // weights re-masked after every step). A compacted model with nothing left to mask trains
  // as any model, so its checkpoints resume without masks.
  if (pruned && !pruned->masks.empty())
    task = std::make_shared<trainer::PrunedTask>(task, pruned->masks, std::move(comm));
  return task;
}

/// Rank 0 writes the run directory (one run, one directory): the recipe as written, the
/// overrides, the resolved config, and train.log from now on.
void write_run_directory(const std::filesystem::path& run_dir, const config::Composed& composed,
                         const std::string& config_text) {
  try {
    ensure_writable_dir(run_dir / "config");
  } catch (const Error& e) {
    throw Error(std::string("run.dir: ") + e.what());
  }
  write_file_atomic(run_dir / "config" / "recipe.yaml", composed.recipe_text);
  write_file_atomic(run_dir / "config" / "overrides.yaml", yaml_list(composed.overrides));
  write_file_atomic(run_dir / "config" / "config.yaml", config_text);
  trainer::attach_log_file(run_dir / "train.log");
}

RunSummary run_one(const config::Composed& composed_in, launch::World& world) {
  // --- CONFIG: every problem reported before anything is created -------------------------
  // prune.from: start from a pruned checkpoint; its model section (compacted widths
  // included) replaces the recipe's, so the config written below is the one trained.
  config::Composed composed = composed_in;
  composed.config = YAML::Clone(composed_in.config);
  const auto pruned = resolve_prune_from(composed.config);
  RunConfig rc = read_run_config(composed.config);
  rc.data.validate();
  const torch::Device device = world.pick_device(rc.trainer.device);
  std::shared_ptr<launch::Communicator> comm = launch::make_communicator(world, device, rc.ddp.comm);
  const int threads = trainer::set_threads(rc.trainer.threads);

  // Rank 0 writes the run directory, so its view decides; every rank stops alike.
  std::string dir_problem = comm->rank() == 0 ? existing_run_problem(rc.run.dir, rc.trainer.resume) : "";
  if (comm->size() > 1) comm->broadcast_string(dir_problem, 0);
  if (!dir_problem.empty()) throw ConfigError(dir_problem);

  // --- DATA AND MODEL: fail on bad input before the run directory exists -----------------
  auto train_set = std::make_shared<data::Dataset>(data::load_dataset(rc.data, "train", window_shape(rc)));
  auto test_set = std::make_shared<data::Dataset>(data::load_dataset(rc.data, "test", window_shape(rc)));
  torch::manual_seed(static_cast<uint64_t>(rc.trainer.seed));
  auto model = models::make_model(rc.model);
  if (pruned) models::load_weights(*model, pruned->weights, (pruned->checkpoint / "model.safetensors").string());
  auto task = make_task(rc, model, pruned, *train_set, device, comm);

  // --- RUN DIRECTORY -------------------------------------------------------------------
  const std::filesystem::path run_dir = rc.run.dir;
  const std::string config_text = config::emit(composed.config);
  if (comm->rank() == 0) write_run_directory(run_dir, composed, config_text);
  auto log = trainer::logger();
  if (comm->rank() == 0) {
    log->info("retort {} | run dir {} | {} rank(s), backend {}, device {}, {} thread(s)", RETORT_VERSION,
              run_dir.string(), comm->size(), comm->backend(), device.str(), threads);
    if (world.hosts().size() > 1) log->info("ranks by host: {}", launch::ranks_by_host(world.hosts()));
    log->info("model {}: {} parameters | data {}: {} train / {} test samples", rc.model.name,
              models::count_parameters(*model), rc.data.name, train_set->size(), test_set->size());
  }

  // --- TRAIN -------------------------------------------------------------------------------
  trainer::TrainerSetup setup;
  setup.trainer = rc.trainer;
  setup.optim = rc.optim;
  setup.data = rc.data;
  setup.amp = rc.amp;
  setup.ddp = rc.ddp;
  setup.run_dir = run_dir;
  setup.config_yaml = config_text;
  setup.comm = comm;
  setup.device = device;
  setup.task = task;
  setup.train_set = train_set;
  setup.test_set = rc.trainer.eval ? test_set : nullptr;
  trainer::Trainer trainer(std::move(setup));
  RunSummary summary{trainer.fit(), run_dir};
  if (comm->rank() == 0) {
    const auto& r = summary.result;
    const char* outcome = r.stopped_early ? "stopped" : "done";
    if (r.last_eval.samples > 0)
      log->info("{}: {} steps in {:.1f} s ({:.0f} samples/s) | test accuracy {:.2f} %, loss {:.4f} | {}", outcome,
                r.steps, r.train_seconds, r.samples_per_s, 100.0 * r.last_eval.accuracy, r.last_eval.loss,
                run_dir.string());
    else
      log->info("{}: {} steps in {:.1f} s ({:.0f} samples/s) | {}", outcome, r.steps, r.train_seconds, r.samples_per_s,
                run_dir.string());
  }
  return summary;
}

/// What `retort train [<recipe>] --help` lists under the flags: the recipe's config groups
/// and every key with its type, default and help.
std::string config_reference(const TrainArgs& a) {
  std::ostringstream out;
  const Args recipes = split_positionals(a.positionals, "train", "recipe", 0, SIZE_MAX).inputs;
  if (!recipes.empty()) {
    out << "config groups:\n";
    for (const auto& [group, options] : config::list_groups(recipes.front())) {
      out << "  " << group << ":";
      for (const auto& o : options) out << " " << o;
      out << "\n";
    }
    out << "\n";
  }
  out << "keys:\n";
  for (const auto& k : describe_run_config()) {
    out << "  " << std::left << std::setw(26) << k.path << " " << std::setw(13) << k.type << " default "
        << std::setw(10) << k.default_value;
    if (!k.constraint.empty()) out << " [" << k.constraint << "]";
    out << "  " << k.help << "\n";
  }
  return out.str();
}

std::string now_string(const char* format) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

int multirun(const TrainArgs& a, launch::World& world) {
  if (world.size() > 1) throw UsageError("-m runs a sweep one run after another in one process; launch it without mpirun");
  const auto runs = config::expand_sweep(a.overrides);
  const std::string base = "multirun/" + now_string("%Y-%m-%d") + "/" + now_string("%H-%M-%S");
  struct Row {
    std::string overrides, status;
    double accuracy = -1, loss = -1;
    int64_t steps = 0;
  };
  std::vector<Row> rows;
  for (size_t i = 0; i < runs.size(); ++i) {
    Row row;
    for (const auto& o : runs[i]) row.overrides += (row.overrides.empty() ? "" : " ") + o;
    std::cerr << "[multirun " << i << "/" << runs.size() << "] " << row.overrides << "\n";
    try {
      auto overrides = runs[i];
      overrides.push_back("++run.dir=" + base + "/" + std::to_string(i));
      launch::LocalCommunicator local;
      TrainArgs one = a;
      one.overrides = overrides;
      auto composed = compose_everywhere(one, local);
      composed.overrides = runs[i];
      auto summary = run_one(composed, world);
      row.status = "ok";
      row.steps = summary.result.steps;
      row.accuracy = summary.result.last_eval.accuracy;
      row.loss = summary.result.last_eval.loss;
    } catch (const std::exception& e) {
      row.status = std::string("failed: ") + e.what();
    }
    trainer::detach_log_files();
    rows.push_back(row);
  }
  std::ostringstream table;
  table << "\n| # | overrides | status | steps | test accuracy | test loss |\n|---|---|---|---|---|---|\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    table << "| " << i << " | " << r.overrides << " | " << r.status << " | " << r.steps << " | ";
    if (r.accuracy >= 0) table << std::fixed << std::setprecision(2) << 100 * r.accuracy << " % | " << std::setprecision(4) << r.loss << " |\n";
    else table << "- | - |\n";
  }
  std::cout << table.str();
  write_file_atomic(std::filesystem::path(base) / "summary.md", table.str());
  for (const auto& r : rows)
    if (r.status != "ok") return kExitOther;
  return kExitOk;
}

int train(launch::World& world, TrainArgs a) {
  const Positionals p = split_positionals(a.positionals, "train", "recipe", 1, 1);
  a.recipe = p.inputs.front();
  a.overrides = p.overrides;
  launch::install_stop_handlers();
  if (a.multirun) return multirun(a, world);
  // Config travels over the CPU (MPI) communicator, whatever the training device.
  auto boot = launch::make_communicator(world, torch::kCPU);
  auto composed = compose_everywhere(a, *boot);
  if (a.print_cfg) {
    if (boot->rank() == 0) std::cout << config::emit(composed.config);
    return kExitOk;
  }
  // Stopped by a signal (a preemption): not done, so a scheduler's script can requeue it.
  return run_one(composed, world).result.stopped_early ? kExitStopped : kExitOk;
}

}  // namespace

CommandRun define_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  app.add_option("args", a->positionals,
                 "the recipe, then overrides: key=value, +key=value, ++key=value, ~key, group=option");
  app.add_flag("--cfg", a->print_cfg, "print the resolved config and exit");
  app.add_flag("-m,--multirun", a->multirun,
               "sweep: key=a,b runs one run per value (cartesian product), one after another");
  app.footer([a] { return config_reference(*a); });
  return [a](launch::World& world) { return train(world, *a); };
}

}  // namespace retort::cli
