// distill::TeacherCache: what it stores equals the teacher's distributions, it refuses a
// cache made for another run, and a damaged cache is an error naming the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/data.h"
#include "distill/teacher_cache.h"
#include "models/models.h"
#include "tests/common/expect.h"
#include "tests/common/gpt.h"
#include "tests/common/temp_dir.h"

using namespace retort;
using test::expect_error;

namespace {

constexpr int64_t kVocab = 11, kContext = 6;

/// 5 blocks of 6 tokens (and the one next token) of a token file, and a teacher.
struct Fixture {
  test::TempDir dir{"teacher-cache"};
  std::shared_ptr<const data::TokenFile> tokens;
  std::shared_ptr<data::TextWindows> windows;
  std::shared_ptr<models::Model> teacher;
  Fixture() {
    std::vector<int32_t> ids(5 * kContext + 1);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7 + i / 3) % kVocab);
    data::write_token_file(dir / "train.tokens", ids, {data::TokenFormat::kRetort, kVocab, "bytes", 0});
    tokens = std::make_shared<data::TokenFile>(dir / "train.tokens", kVocab);
    windows = std::make_shared<data::TextWindows>(tokens, kContext, data::WindowSampling::kBlocks, 0);
    torch::manual_seed(3);
    teacher = models::make_model(test::gpt_options(kVocab, kContext, 8, 1, 2, 0));
  }
  distill::TeacherCacheSpec spec(int64_t top_k, torch::ScalarType dtype, double temperature = 2.0) const {
    distill::TeacherCacheKey key{"t1", "teacher.safetensors", "c1", "train.tokens", kContext, kVocab, temperature};
    return {key, top_k, dtype};
  }
  /// The teacher's log-probabilities at T of blocks `b`, [rows, V].
  torch::Tensor live(const std::vector<int64_t>& b, double temperature = 2.0) const {
    torch::NoGradGuard no_grad;
    teacher->eval();
    return distill::teacher_distribution(teacher->forward(windows->batch(b, 0).first).logits, temperature).logp;
  }
};

}  // namespace

TEST(TeacherCache, WholeFp32IsTheTeachersDistribution) {
  Fixture f;
  std::vector<std::pair<int64_t, int64_t>> progress;
  distill::write_teacher_cache(*f.teacher, *f.windows, f.spec(0, torch::kFloat32), f.dir / "cache", 2,
                               [&](int64_t done, int64_t total) { progress.emplace_back(done, total); });
  EXPECT_EQ(progress, (std::vector<std::pair<int64_t, int64_t>>{{2, 5}, {4, 5}, {5, 5}}));
  EXPECT_FALSE(std::filesystem::exists(f.dir / "cache" / "ids.bin")) << "the whole vocabulary needs no ids";
  const distill::TeacherCache cache(f.dir / "cache");
  EXPECT_EQ(cache.blocks(), 5);
  EXPECT_EQ(cache.spec().top_k, kVocab);
  const auto t = cache.distribution(torch::tensor({3, 0}, torch::kInt64));
  EXPECT_TRUE(t.whole());
  // Equal but for the last bit: the cache ran blocks {2, 3} and {0, 1} together, this
  // forward {3, 0}, and a matrix product's rounding depends on the rows it is batched with.
  EXPECT_TRUE(torch::allclose(t.logp, f.live({3, 0}), 0, 1e-6));
  const auto block3 = cache.distribution(torch::tensor({3}, torch::kInt64)).logp;
  EXPECT_TRUE(torch::equal(block3, f.live({2, 3}).slice(0, kContext, 2 * kContext))) << "the same batch: bit for bit";
}

TEST(TeacherCache, TopKKeepsTheLargestAndLowerPrecisionRoundsThem) {
  Fixture f;
  distill::write_teacher_cache(*f.teacher, *f.windows, f.spec(4, torch::kFloat32), f.dir / "k4", 3);
  const auto live = f.live({1, 4});
  const auto top = live.topk(4, 1);
  const auto t = distill::TeacherCache(f.dir / "k4").distribution(torch::tensor({1, 4}, torch::kInt64));
  EXPECT_TRUE(torch::allclose(t.logp, std::get<0>(top), 0, 1e-6));
  EXPECT_TRUE(torch::equal(t.ids, std::get<1>(top)));
  for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
    const auto name = f.dir / ("whole-" + distill::cache_dtype_name(dtype));
    distill::write_teacher_cache(*f.teacher, *f.windows, f.spec(0, dtype), name);
    const auto low = distill::TeacherCache(name).distribution(torch::tensor({1, 4}, torch::kInt64)).logp;
    EXPECT_TRUE(torch::allclose(low, live, 0, dtype == torch::kHalf ? 1e-2 : 5e-2)) << name;
  }
}

TEST(TeacherCache, RefusesACacheMadeForAnotherRunNamingWhatDiffers) {
  Fixture f;
  const auto spec = f.spec(4, torch::kBFloat16);
  distill::write_teacher_cache(*f.teacher, *f.windows, spec, f.dir / "c");
  const distill::TeacherCache cache(f.dir / "c");
  EXPECT_NO_THROW(cache.check(spec));
  auto other = spec;
  other.key.teacher = "t2";
  other.key.teacher_origin = "other-teacher.safetensors";
  other.key.context = 8;
  other.key.temperature = 1.0;
  expect_error<ConfigError>([&] { cache.check(other); },
                            {"distill.cache.dir", "made for another run", "the teacher: made from teacher.safetensors",
                             "this run's is other-teacher.safetensors", "blocks of 6 tokens, this run's model.context is 8",
                             "the temperature: 2, this run's distill.temperature is 1"});
  other = spec;
  other.key.corpus = "c2";
  other.top_k = 0;
  expect_error<ConfigError>([&] { cache.check(other); },
                            {"the corpus: made from train.tokens", "the storage: top 4 ids in bf16, this run's distill.cache is top_k 0"});
  expect_error<Error>([&] { cache.distribution(torch::tensor({5}, torch::kInt64)); },
                      {"block 5 is outside the cache's 5 blocks"});
}

TEST(TeacherCache, DamagedOrMissingFilesAreCheckpointErrorsNamingTheFile) {
  Fixture f;
  distill::write_teacher_cache(*f.teacher, *f.windows, f.spec(4, torch::kHalf), f.dir / "c");
  const auto ids = f.dir / "c" / "ids.bin";
  std::filesystem::resize_file(ids, std::filesystem::file_size(ids) - 4);
  try {
    distill::TeacherCache cache(f.dir / "c");
    FAIL() << "a truncated ids.bin was accepted";
  } catch (const CheckpointError& e) {
    EXPECT_EQ(e.exit_code(), 4);
    EXPECT_NE(std::string(e.what()).find(ids.string() + "': 476 bytes, but cache.json's shape needs 480 (truncated)"),
              std::string::npos)
        << e.what();
  }
  std::filesystem::remove(f.dir / "c" / "logp.bin");
  expect_error<CheckpointError>([&] { distill::TeacherCache(f.dir / "c"); }, {"logp.bin': not found"});
  std::ofstream(f.dir / "c" / "cache.json") << "{\"format\": \"retort-teacher-cache-1\"";
  expect_error<CheckpointError>([&] { distill::TeacherCache(f.dir / "c"); }, {"cache.json': unreadable"});
  expect_error<CheckpointError>([&] { distill::TeacherCache(f.dir / "none"); }, {"none/cache.json': unreadable"});
}

TEST(TeacherCache, WritingRefusesBadSpecsAndLeavesNothingBehind) {
  Fixture f;
  expect_error<ConfigError>([&] { distill::write_teacher_cache(*f.teacher, *f.windows, f.spec(12, torch::kFloat32), f.dir / "c"); },
                            {"distill.cache.top_k", "up to the vocabulary's 11 ids, got 12"});
  data::TextWindows random(f.tokens, kContext, data::WindowSampling::kRandom, 0);
  expect_error<ConfigError>([&] { distill::write_teacher_cache(*f.teacher, random, f.spec(0, torch::kFloat32), f.dir / "c"); },
                            {"data.windows=blocks"});
  expect_error<ConfigError>([&] { distill::write_teacher_cache(*f.teacher, *f.windows, f.spec(0, torch::kInt8), f.dir / "c"); },
                            {"distill.cache.dtype: expected fp32, fp16 or bf16"});
  EXPECT_FALSE(std::filesystem::exists(f.dir / "c"));
  distill::write_teacher_cache(*f.teacher, *f.windows, f.spec(0, torch::kFloat32), f.dir / "c");
  expect_error<ConfigError>([&] { distill::write_teacher_cache(*f.teacher, *f.windows, f.spec(0, torch::kFloat32), f.dir / "c"); },
                            {"already holds a teacher cache"});
  for (const auto& entry : std::filesystem::directory_iterator(f.dir.path()))
    EXPECT_EQ(entry.path().filename().string().find(".tmp-"), std::string::npos) << entry.path();
}
