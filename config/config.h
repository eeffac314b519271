#pragma once
/// Hydra-style configuration: compose a recipe with its `defaults:` list and command-line
/// overrides, resolve interpolations, then read typed, validated options structs.
///
///   auto composed = config::compose({"recipes/fmnist/teacher.yaml", {"optim.lr=3e-4"}});
///   config::Reader reader(composed.config);
///   auto trainer = reader.section<TrainerOptions>("trainer");
///   auto optim   = reader.section<OptimOptions>("optim");
///   reader.finish();   // throws ConfigError listing every problem, with full key paths
///
/// Options structs declare their keys once:
///   struct TrainerOptions {
///     int64_t max_epochs = 10;
///     static void declare(config::Fields<TrainerOptions>& f) {
///       f.add("max_epochs", &TrainerOptions::max_epochs, "epochs to train").min(1);
///     }
///   };
/// This header is the contract between config/ and its users; config/ owns the rest.
///
/// compose() does, in order (Hydra semantics):
///  1. the defaults tree: `defaults:` lists name options of config groups (folders under
///     recipes/, looked up in the recipe's folder, its ancestors up to the nearest one
///     named `recipes`, then ComposeRequest::search_path). Entries: `group: option`
///     (content goes under the group's key path), `group/sub: option`, `/group: option`
///     (absolute, from inside a group file), `group@pkg: option` (under `pkg`;
///     `@_global_` = the root), `optional group: option`, `override group: option`
///     (changes a choice made deeper in the tree), `some_config` (a file merged at the
///     current package), `_self_` (this file's own keys; last when absent). A group file
///     may start with `# @package pkg`.
///  2. command-line group choices: model=x, +model=x, ++model=x, ~model, model=null;
///  3. command-line key overrides in order (config/override.h has the grammar);
///  4. interpolation (config/interpolate.h): ${a.b}, ${.x}, ${env:V,default}, ${now:%Y}.
/// YAML scalars follow the YAML 1.2 core schema (plus inf/nan): `yes` is a string,
/// `1e-3` a float, quoted values are strings.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/text.h"

namespace retort::config {

namespace fs = std::filesystem;

// ------------------------------------------------------------------------------------
// Composition
// ------------------------------------------------------------------------------------

struct ComposeRequest {
  fs::path recipe = {};                     ///< the primary YAML file
  std::vector<std::string> overrides = {};  ///< a.b=1, +a.b=1, ++a.b=1, ~a.b, group=opt, +group=opt
  /// Extra roots searched for config groups after the recipe's own directory and its
  /// ancestors up to the nearest folder named `recipes`.
  std::vector<fs::path> search_path = {};
  /// Structured defaults (Hydra's structured-config schema), as YAML: every declared key
  /// with its default. The composed recipe is merged over it before the command-line
  /// overrides, so any declared key can be set with `a.b=1` even when the recipe does
  /// not mention it. Empty: no schema.
  std::string schema_yaml = {};
  /// The primary recipe's YAML text, when it is not read from `recipe` (a checkpoint's
  /// stored config): `recipe` then only names it in messages and roots the search for
  /// config groups. Empty: read the file `recipe`.
  std::string recipe_text = {};
  /// The instant `${now:...}` formats (seconds since the epoch); 0: the time of the call.
  /// Ranks other than 0 compose with rank 0's instant so their configs can be compared.
  std::time_t now = 0;
};

struct Composed {
  YAML::Node config;                          ///< composed, overridden, interpolations resolved
  std::string recipe_text;                    ///< the primary recipe as written
  std::vector<std::string> overrides;         ///< as given on the command line
  std::map<std::string, std::string> choices; ///< config group -> option chosen
  std::time_t now = 0;                        ///< the instant `${now:...}` formatted
};

/// Throws ConfigError (file, key and value in the message) on any problem.
Composed compose(const ComposeRequest& request);

/// Composes from YAML text already in memory (rank 0's result received by other ranks;
/// interpolations are already resolved there, so this only parses). The text must hold one
/// map (or nothing); ConfigError names `origin`, line and column.
YAML::Node parse(const std::string& yaml_text, const std::string& origin);

/// Deterministic block-style YAML (keys in insertion order); parse(emit(x)) == x.
std::string emit(const YAML::Node& node);

/// xxhash64 of emit(node): every rank checks it against rank 0's.
uint64_t hash(const YAML::Node& node);

/// The first key path where two trees differ ("" when equal), for mismatch messages.
std::string first_difference(const YAML::Node& a, const YAML::Node& b);

/// The first difference with both sides' values, for messages that show them: `key` as
/// first_difference gives it (a.b, a.b[2]), each value as one line of YAML, "(absent)"
/// where that tree lacks the key. Empty when the trees are equal.
struct Difference {
  std::string key, a, b;
};
std::optional<Difference> describe_difference(const YAML::Node& a, const YAML::Node& b);

/// Config groups visible from a recipe: group -> its options (for --help).
std::map<std::string, std::vector<std::string>> list_groups(const fs::path& recipe,
                                                            const std::vector<fs::path>& search_path = {});

/// Sweep expansion for `-m`: an override whose value is a comma list (a=1,2 or
/// model=cnn_small,cnn_large; not inside [] or {} or quotes) becomes one axis of the
/// cartesian product. Returns one override list per run, in row-major order.
std::vector<std::vector<std::string>> expand_sweep(const std::vector<std::string>& overrides);

// ------------------------------------------------------------------------------------
// Typed access with validation
// ------------------------------------------------------------------------------------

/// One declared key, for validation and for `--help`.
struct KeyInfo {
  std::string path;        ///< full dotted path, e.g. "trainer.max_epochs"
  std::string type;        ///< "int", "float", "bool", "string", "list[int]", ...
  std::string default_value;
  std::string constraint;  ///< ">= 1", "one of: adamw, sgd", "" when none
  std::string help;
};

template <class T>
class Fields;

/// A declared field; the fluent setters add constraints. Numeric bounds apply to int and
/// float fields (and to each element of their lists); one_of to scalar fields (and to each
/// element of a list). A constraint on a field of the wrong type throws retort::Error.
class FieldBase {
 public:
  virtual ~FieldBase() = default;
  FieldBase& min(double v);           ///< inclusive
  FieldBase& max(double v);           ///< inclusive
  FieldBase& greater_than(double v);  ///< exclusive
  FieldBase& less_than(double v);     ///< exclusive
  FieldBase& one_of(std::vector<std::string> choices);
  FieldBase& optional_key();          ///< the key may be absent (default used); all keys are by default
  FieldBase& required();              ///< the key must be present in the config
  // Implementation detail (config/config_impl.h).
  struct Impl;
  std::shared_ptr<Impl> impl;
};

/// The names an enum's values have in configs. Specialise it next to an enum to make
/// members of that type readable from one of the names (the key then takes exactly those,
/// with a did-you-mean for others) and printable (`--help`, emitted configs):
///   template <> struct config::EnumNames<AmpMode> {
///     static std::vector<std::pair<std::string, AmpMode>> list() {
///       return {{"off", AmpMode::kOff}, {"autocast", AmpMode::kAutocast}};
///     }
///   };
/// Several names may map to one value (aliases); a value prints as its first name.
template <class E>
struct EnumNames;

/// A member type read from a YAML value by its own parser (a layer map, a nested model's
/// options). Specialise it next to the type:
///   template <> struct config::Codec<LayerMap> {
///     static std::string type_name() { return "layer map"; }
///     static LayerMap decode(const YAML::Node& node);    // ConfigError whose message omits the key
///     static YAML::Node encode(const LayerMap& value);   // for --help, and is_default
///   };
template <class T>
struct Codec;

/// Every declared key of `options` as YAML (each field as `--help` renders it).
template <class T>
YAML::Node encode_options(const T& options);
/// Whether every declared key of `options` has its default value: a section the recipe
/// and the command line leave alone.
template <class T>
bool is_default(const T& options);

/// The value `name` stands for (ConfigError naming `key` and the names otherwise), and a
/// value's name: for enums outside a Reader (benchmarks' flags, messages).
template <class E>
E enum_value(const std::string& name, const std::string& key);
template <class E>
std::string enum_name(E value);

/// Supported member types: bool, int, int64_t, uint64_t, float, double, std::string,
/// enums with EnumNames, types with a Codec, std::vector<T> and std::optional<T> of those
/// scalars, YAML::Node (free-form subtree, not validated). Keys may be dotted ("teacher.checkpoint") to reach
/// nested maps.
template <class T>
class Fields {
 public:
  /// A member read from `key`.
  template <class V>
  FieldBase& add(const std::string& key, V T::*member, const std::string& help);
  /// A value reached through an accessor returning a reference (TORCH_ARG's `T& x()`):
  ///   f.add<double>("init_scale", [](Opts& o) -> double& { return o.init_scale(); }, "...");
  template <class V>
  FieldBase& add(const std::string& key, std::function<V&(T&)> access, const std::string& help);
  /// Every key an options struct S declares, read into the member `member`, under
  /// `prefix` ("scaler" gives scaler.<key>; "" puts them beside this struct's own), so a
  /// config section can be made of the options of the parts that consume it.
  template <class S>
  void add_section(const std::string& prefix, S T::*member);
  const std::vector<std::unique_ptr<FieldBase>>& fields() const { return fields_; }

 private:
  std::vector<std::unique_ptr<FieldBase>> fields_;
};

class Reader {
 public:
  explicit Reader(YAML::Node root);
  ~Reader();
  Reader(Reader&&) noexcept;
  Reader& operator=(Reader&&) noexcept;

  /// Reads the map at `path` ("" for the root) into T, collecting every problem instead of
  /// throwing. A missing section yields T's defaults.
  template <class T>
  T section(const std::string& path);

  /// Throws ConfigError listing all problems collected so far plus every key present in
  /// the tree that no section declared (with the nearest declared key suggested).
  /// Keys under sections registered with allow_extra() are not reported.
  void finish();
  void allow_extra(const std::string& path);

  /// Every key declared so far (for --help).
  const std::vector<KeyInfo>& declared() const;

 private:
  void read(const std::string& path, const std::vector<std::unique_ptr<FieldBase>>& fields, void* object);
  struct State;
  std::unique_ptr<State> state_;
};

/// The keys of one options struct, as `--help` lists them.
template <class T>
std::vector<KeyInfo> describe(const std::string& path);

/// Nearest candidate by edit distance, "" when nothing is close.
/// Tries whole paths first, then the last path segment (so "optim.max_epochs" finds
/// "trainer.max_epochs").
std::string suggest(const std::string& key, const std::vector<std::string>& candidates);

}  // namespace retort::config

#include "config/config_impl.h"
