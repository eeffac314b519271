#include "amp/options.h"

#include <gtest/gtest.h>

#include "core/error.h"

namespace amp = retort::amp;

namespace {

template <typename F>
std::string config_error_of(F&& f) {
  try {
    f();
  } catch (const retort::ConfigError& e) {
    EXPECT_EQ(e.exit_code(), retort::kExitUsage);
    return e.what();
  }
  return "<no ConfigError thrown>";
}

}  // namespace

// The amp: section read as a user writes it: names become enums and a dtype, the
// scaler's keys land in the scaler's own options.
TEST(AmpOptions, ReadFromTheConfigAsTypedValues) {
  retort::config::Reader reader(retort::config::parse(
      "amp: {mode: master, dtype: float16, loss_scaling: on, scaler: {init_scale: 128, hysteresis: 2}}\n", "t"));
  const auto o = reader.section<amp::AmpOptions>("amp");
  reader.finish();
  EXPECT_EQ(o.mode, amp::AmpMode::kMaster);
  EXPECT_EQ(o.dtype, torch::kHalf);  // an alias of fp16
  EXPECT_EQ(o.loss_scaling, amp::LossScaling::kOn);
  EXPECT_EQ(o.scaler.init_scale(), 128.0);
  EXPECT_EQ(o.scaler.hysteresis(), 2);
  EXPECT_EQ(o.scaler.growth_interval(), amp::GradScalerOptions().growth_interval()) << "defaults are the scaler's";
  retort::config::Reader bad(retort::config::parse("amp: {mode: O2, dtype: fp8}\n", "t"));
  bad.section<amp::AmpOptions>("amp");
  std::string msg;
  try {
    bad.finish();
  } catch (const retort::ConfigError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("amp.mode: must be one of: off, autocast, master; got 'O2'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("amp.dtype: must be one of: bf16, fp16"), std::string::npos) << msg;
}

TEST(AmpOptions, ValidateRefusesFp16OnCpu) {
  amp::AmpOptions o;
  o.mode = amp::AmpMode::kAutocast;
  o.dtype = torch::kHalf;
  amp::validate(o, torch::kCUDA);
  auto msg = config_error_of([&] { amp::validate(o, torch::kCPU); });
  EXPECT_NE(msg.find("fp16 autocast is not supported on CPU"), std::string::npos) << msg;
  o.mode = amp::AmpMode::kOff;
  amp::validate(o, torch::kCPU);  // fp16 is never used with amp off
  o.scaler.growth_interval(0);
  msg = config_error_of([&] { amp::validate(o, torch::kCPU); });
  EXPECT_NE(msg.find("amp.scaler.growth_interval"), std::string::npos) << msg;
}

TEST(AmpOptions, LossScalingFollowsDtype) {
  amp::AmpOptions o;
  EXPECT_FALSE(amp::scaler_options(o).enabled()) << "amp off";
  o.mode = amp::AmpMode::kAutocast;
  EXPECT_FALSE(amp::scaler_options(o).enabled()) << "bf16 has fp32's range";
  o.dtype = torch::kHalf;
  EXPECT_TRUE(amp::scaler_options(o).enabled());
  o.loss_scaling = amp::LossScaling::kOff;
  EXPECT_FALSE(amp::scaler_options(o).enabled());
  o.dtype = torch::kBFloat16;
  o.loss_scaling = amp::LossScaling::kOn;
  o.scaler.init_scale(128);
  auto s = amp::scaler_options(o);
  EXPECT_TRUE(s.enabled());
  EXPECT_EQ(s.init_scale(), 128.0);
}
