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

TEST(AmpOptions, ParsesModesAndDtypes) {
  EXPECT_EQ(amp::parse_mode("off"), amp::AmpMode::kOff);
  EXPECT_EQ(amp::parse_mode("autocast"), amp::AmpMode::kAutocast);
  EXPECT_EQ(amp::parse_mode("master"), amp::AmpMode::kMaster);
  EXPECT_EQ(amp::parse_dtype("bf16"), torch::kBFloat16);
  EXPECT_EQ(amp::parse_dtype("fp16"), torch::kHalf);
  auto msg = config_error_of([] { amp::parse_mode("O2"); });
  EXPECT_NE(msg.find("amp.mode: expected off, autocast or master, got 'O2'"), std::string::npos) << msg;
  msg = config_error_of([] { amp::parse_dtype("fp8"); });
  EXPECT_NE(msg.find("amp.dtype: expected bf16 or fp16, got 'fp8'"), std::string::npos) << msg;
}

TEST(AmpOptions, ValidateRefusesFp16OnCpu) {
  amp::AmpOptions o;
  o.mode = "autocast";
  o.dtype = "fp16";
  amp::validate(o, torch::kCUDA);
  auto msg = config_error_of([&] { amp::validate(o, torch::kCPU); });
  EXPECT_NE(msg.find("fp16 autocast is not supported on CPU"), std::string::npos) << msg;
  o.mode = "off";
  amp::validate(o, torch::kCPU);  // fp16 is never used with amp off
  o.loss_scaling = "sometimes";
  msg = config_error_of([&] { amp::validate(o, torch::kCPU); });
  EXPECT_NE(msg.find("amp.loss_scaling: expected auto, on or off, got 'sometimes'"), std::string::npos) << msg;
  o.loss_scaling = "auto";
  o.growth_interval = 0;
  msg = config_error_of([&] { amp::validate(o, torch::kCPU); });
  EXPECT_NE(msg.find("amp.scaler.growth_interval"), std::string::npos) << msg;
}

TEST(AmpOptions, LossScalingFollowsDtype) {
  amp::AmpOptions o;
  EXPECT_FALSE(amp::scaler_options(o).enabled()) << "amp off";
  o.mode = "autocast";
  EXPECT_FALSE(amp::scaler_options(o).enabled()) << "bf16 has fp32's range";
  o.dtype = "fp16";
  EXPECT_TRUE(amp::scaler_options(o).enabled());
  o.loss_scaling = "off";
  EXPECT_FALSE(amp::scaler_options(o).enabled());
  o.dtype = "bf16";
  o.loss_scaling = "on";
  o.init_scale = 128;
  auto s = amp::scaler_options(o);
  EXPECT_TRUE(s.enabled());
  EXPECT_EQ(s.init_scale(), 128.0);
  o.loss_scaling = "maybe";
  auto msg = config_error_of([&] { amp::scaler_options(o); });
  EXPECT_NE(msg.find("amp.loss_scaling"), std::string::npos) << msg;
}
