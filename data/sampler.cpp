#include "data/sampler.h"

#include <numeric>

#include "core/error.h"

namespace retort::data {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

int64_t scalar(const std::map<std::string, torch::Tensor>& state, const std::string& key) {
  auto it = state.find(key);
  if (it == state.end()) throw DataError("sampler state: missing key '" + key + "'");
  const torch::Tensor& t = it->second;
  if (!t.defined() || t.numel() != 1 || t.scalar_type() != torch::kInt64) {
    throw DataError("sampler state: key '" + key + "' must be a one-element int64 tensor");
  }
  return t.cpu().item<int64_t>();
}

torch::Tensor make_scalar(int64_t v) { return torch::tensor(v, torch::kInt64); }

}  // namespace

uint64_t SplitMix64::below(uint64_t range) {
  unsigned __int128 m = static_cast<unsigned __int128>(next()) * range;
  auto low = static_cast<uint64_t>(m);
  if (low < range) {
    const uint64_t threshold = (0 - range) % range;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(next()) * range;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

uint64_t mix64(uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), int64_t{0});
  // Seed and epoch go through separate mixing so (s, e) and (e, s) give different streams.
  SplitMix64 rng(mix64(seed) ^ mix64(static_cast<uint64_t>(epoch) + kGolden));
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>(i) + 1));
    std::swap(p[i], p[j]);
  }
  return p;
}

DistributedSampler::DistributedSampler(int64_t dataset_size, int64_t global_batch, int rank, int world,
                                       uint64_t seed, bool shuffle, bool drop_last)
    : dataset_size_(dataset_size),
      global_batch_(global_batch),
      rank_(rank),
      world_(world),
      seed_(seed),
      shuffle_(shuffle),
      drop_last_(drop_last) {
  if (dataset_size < 1) throw ConfigError("sampler: dataset is empty (size " + std::to_string(dataset_size) + ")");
  if (global_batch < 1) throw ConfigError("sampler: global batch size must be >= 1, got " + std::to_string(global_batch));
  if (world < 1) throw ConfigError("sampler: world size must be >= 1, got " + std::to_string(world));
  if (rank < 0 || rank >= world) {
    throw ConfigError("sampler: rank " + std::to_string(rank) + " outside [0, " + std::to_string(world) + ")");
  }
  if (global_batch < world) {
    throw ConfigError("sampler: global batch size " + std::to_string(global_batch) + " is smaller than the world size " +
                      std::to_string(world) + ", so some ranks would get no samples");
  }
  if (drop_last && dataset_size < global_batch) {
    throw ConfigError("sampler: drop_last with " + std::to_string(dataset_size) + " samples and global batch " +
                      std::to_string(global_batch) + " leaves no batch in an epoch");
  }
}

int64_t DistributedSampler::batches_per_epoch() const {
  return drop_last_ ? dataset_size_ / global_batch_ : (dataset_size_ + global_batch_ - 1) / global_batch_;
}

const std::vector<int64_t>& DistributedSampler::order() const {
  if (!order_ || order_epoch_ != epoch_) {
    if (shuffle_) {
      order_ = std::make_shared<const std::vector<int64_t>>(epoch_permutation(dataset_size_, seed_, epoch_));
      order_epoch_ = epoch_;
    } else if (!order_) {
      auto iota = std::make_shared<std::vector<int64_t>>(static_cast<size_t>(dataset_size_));
      std::iota(iota->begin(), iota->end(), int64_t{0});
      order_ = std::move(iota);
      order_epoch_ = epoch_;
    } else {
      order_epoch_ = epoch_;  // without shuffle every epoch has the same order
    }
  }
  return *order_;
}

std::optional<DistributedSampler::Shard> DistributedSampler::next() {
  if (exhausted()) return std::nullopt;
  const std::vector<int64_t>& perm = order();
  const int64_t k = cursor_++;
  const int64_t start = k * global_batch_;
  const int64_t b = std::min(global_batch_, dataset_size_ - start);
  const int64_t lo = start + rank_ * b / world_;
  const int64_t hi = start + (rank_ + 1) * b / world_;
  return Shard{std::vector<int64_t>(perm.begin() + lo, perm.begin() + hi), b, k};
}

void DistributedSampler::set_epoch(int64_t epoch) {
  if (epoch < 0) throw Error("sampler: epoch must be >= 0, got " + std::to_string(epoch));
  epoch_ = epoch;
  cursor_ = 0;
}

std::map<std::string, torch::Tensor> DistributedSampler::state_dict() const {
  return {{"epoch", make_scalar(epoch_)},
          {"cursor", make_scalar(cursor_)},
          {"seed", make_scalar(static_cast<int64_t>(seed_))},
          {"dataset_size", make_scalar(dataset_size_)},
          {"global_batch", make_scalar(global_batch_)},
          {"shuffle", make_scalar(shuffle_)},
          {"drop_last", make_scalar(drop_last_)}};
}

void DistributedSampler::load_state_dict(const std::map<std::string, torch::Tensor>& state) {
  auto expect = [&](const char* key, int64_t mine) {
    const int64_t theirs = scalar(state, key);
    if (theirs != mine) {
      throw DataError(std::string("sampler state: ") + key + " is " + std::to_string(theirs) +
                      " in the checkpoint but " + std::to_string(mine) + " here; resume with the same data settings");
    }
  };
  expect("dataset_size", dataset_size_);
  expect("global_batch", global_batch_);
  expect("seed", static_cast<int64_t>(seed_));
  expect("shuffle", shuffle_);
  expect("drop_last", drop_last_);
  const int64_t epoch = scalar(state, "epoch");
  const int64_t cursor = scalar(state, "cursor");
  if (epoch < 0) throw DataError("sampler state: epoch must be >= 0, got " + std::to_string(epoch));
  if (cursor < 0 || cursor > batches_per_epoch()) {
    throw DataError("sampler state: cursor " + std::to_string(cursor) + " outside [0, " +
                    std::to_string(batches_per_epoch()) + "]");
  }
  epoch_ = epoch;
  cursor_ = cursor;
}

}  // namespace retort::data
