// Interpolation: every form, type keeping, escapes, cycles and missing targets.
#include <gtest/gtest.h>

#include <regex>

#include "config/interpolate.h"
#include "config/value.h"
#include "helpers.h"

namespace retort::config {
namespace {

using detail::Kind;
using detail::Value;
using testing::config_error;
using testing::ScopedEnv;

// 2024-03-05 14:07:09 local time.
std::time_t fixed_time() {
  std::tm tm{};
  tm.tm_year = 124;
  tm.tm_mon = 2;
  tm.tm_mday = 5;
  tm.tm_hour = 14;
  tm.tm_min = 7;
  tm.tm_sec = 9;
  tm.tm_isdst = -1;
  return std::mktime(&tm);
}

Value resolved(const std::string& yaml) {
  Value v = detail::load_yaml_text(yaml, "t");
  detail::resolve(v, fixed_time());
  return v;
}

std::string flow_of(const std::string& yaml) { return detail::flow(resolved(yaml)); }

const Value& at(const Value& root, const std::string& dotted) {
  const Value* v = &root;
  for (const auto& seg : detail::split(dotted, '.')) {
    if (v->is_list()) v = &v->list.at(std::stoul(seg));
    else v = v->find(seg);
    if (!v) throw std::runtime_error("no " + dotted);
  }
  return *v;
}

TEST(ConfigInterpolation, AbsoluteKeepsType) {
  Value v = resolved("a: {i: 3, f: 1.5, b: true, n: null, s: text, q: '7', l: [1, 2], m: {x: 1}}\n"
                     "r: {i: '${a.i}', f: '${a.f}', b: '${a.b}', n: '${a.n}', s: '${a.s}', q: '${a.q}', "
                     "l: '${a.l}', m: '${a.m}', e: '${a.l.1}'}\n");
  EXPECT_EQ(detail::kind_of(at(v, "r.i")), Kind::Int);
  EXPECT_EQ(at(v, "r.i").text, "3");
  EXPECT_EQ(detail::kind_of(at(v, "r.f")), Kind::Float);
  EXPECT_EQ(detail::kind_of(at(v, "r.b")), Kind::Bool);
  EXPECT_TRUE(at(v, "r.n").is_null());
  EXPECT_EQ(detail::kind_of(at(v, "r.s")), Kind::String);
  EXPECT_EQ(detail::kind_of(at(v, "r.q")), Kind::String);  // a quoted '7' stays a string
  EXPECT_EQ(detail::flow(at(v, "r.l")), "[1, 2]");
  EXPECT_EQ(detail::flow(at(v, "r.m")), "{x: 1}");
  EXPECT_EQ(at(v, "r.e").text, "2");
}

TEST(ConfigInterpolation, MixedTextGivesAString) {
  Value v = resolved("a: 1\nb: x\nrun: run_${a}_${b}\nnum: '${a}${a}'\nn: '${c}!'\nc: null\n");
  EXPECT_EQ(at(v, "run").text, "run_1_x");
  EXPECT_EQ(detail::kind_of(at(v, "num")), Kind::String);  // "11" is text, not a number
  EXPECT_EQ(at(v, "num").text, "11");
  EXPECT_EQ(at(v, "n").text, "null!");
}

TEST(ConfigInterpolation, Relative) {
  Value v = resolved("top: 0\nm:\n  a: 1\n  b: ${.a}\n  inner:\n    c: ${..a}\n    d: ${...top}\n    e: ${.c}\n"
                     "  l: ['${..a}', '${.0}']\n");
  EXPECT_EQ(at(v, "m.b").text, "1");
  EXPECT_EQ(at(v, "m.inner.c").text, "1");
  EXPECT_EQ(at(v, "m.inner.d").text, "0");
  EXPECT_EQ(at(v, "m.inner.e").text, "1");
  // Inside a list, one dot is the list itself.
  EXPECT_EQ(at(v, "m.l.0").text, "1");
  EXPECT_EQ(at(v, "m.l.1").text, "1");
}

TEST(ConfigInterpolation, Chains) {
  Value v = resolved("a: ${b}\nb: ${c.d}\nc: {d: '${e}'}\ne: 5\nf: ${c}\n");
  EXPECT_EQ(at(v, "a").text, "5");
  EXPECT_EQ(detail::flow(at(v, "f")), "{d: 5}");
  // The target is resolved first, also when it is a map whose values interpolate.
  EXPECT_EQ(flow_of("x: ${m}\nm:\n  p: ${y}\ny: 1\n"), "{x: {p: 1}, m: {p: 1}, y: 1}");
  // A path may run through a value that is itself an interpolation.
  EXPECT_EQ(flow_of("a: ${m}\nm: {k: 1}\nb: ${a.k}\n"), "{a: {k: 1}, m: {k: 1}, b: 1}");
}

TEST(ConfigInterpolation, InsideLists) {
    // In YAML flow collections ${...} must be quoted ({ and } are flow indicators there).
  EXPECT_EQ(flow_of("w: 4\nlayers: ['${w}', '${w}x', ['${w}']]\nblock:\n  - ${w}\n  - - ${w}\n"),
            "{w: 4, layers: [4, 4x, [4]], block: [4, [4]]}");
}

TEST(ConfigInterpolation, Escapes) {
  Value v = resolved("a: 1\nlit: \\${a}\ntwo: \\\\${a}\nmixed: 'x \\${a} ${a}'\nplain_bs: a\\b\n");
  EXPECT_EQ(at(v, "lit").text, "${a}");
  EXPECT_EQ(at(v, "two").text, "\\1");
  EXPECT_EQ(at(v, "mixed").text, "x ${a} 1");
  EXPECT_EQ(at(v, "plain_bs").text, "a\\b");
  // A literal ${...} copied by another interpolation is not resolved again.
  EXPECT_EQ(at(resolved("a: \\${nope}\nb: ${a}\n"), "b").text, "${nope}");
}

TEST(ConfigInterpolation, Env) {
  ScopedEnv set("RETORT_TEST_SET", "42");
  ScopedEnv text("RETORT_TEST_TEXT", "hello world");
  ScopedEnv unset("RETORT_TEST_UNSET", nullptr);
  Value v = resolved(
      "a: ${env:RETORT_TEST_SET}\n"
      "b: ${env:RETORT_TEST_TEXT}\n"
      "c: ${env:RETORT_TEST_UNSET,8080}\n"
      "d: '${env:RETORT_TEST_UNSET,fallback value}'\n"
      "e: '${env:RETORT_TEST_UNSET,}'\n"
      "f: \"${env:RETORT_TEST_UNSET,'1,2'}\"\n"
      "g: ${env:RETORT_TEST_UNSET,${x}}\n"
      "h: dir_${env:RETORT_TEST_SET}\n"
      "x: 2.5\n");
  EXPECT_EQ(detail::kind_of(at(v, "a")), Kind::Int);  // typed like a YAML scalar
  EXPECT_EQ(at(v, "a").text, "42");
  EXPECT_EQ(at(v, "b").text, "hello world");
  EXPECT_EQ(detail::kind_of(at(v, "c")), Kind::Int);
  EXPECT_EQ(at(v, "d").text, "fallback value");
  EXPECT_EQ(at(v, "e").text, "");
  EXPECT_EQ(at(v, "f").text, "1,2");
  EXPECT_EQ(detail::kind_of(at(v, "f")), Kind::String);
  EXPECT_EQ(detail::kind_of(at(v, "g")), Kind::Float);
  EXPECT_EQ(at(v, "h").text, "dir_42");
}

TEST(ConfigInterpolation, NowIsOneTimestampPerCall) {
  Value v = resolved("a: ${now:%Y-%m-%d_%H-%M-%S}\nb: run_${now:%H:%M}\nc: ${now:}\nd: ${now:%p%p}\n");
  EXPECT_EQ(at(v, "a").text, "2024-03-05_14-07-09");
  EXPECT_EQ(at(v, "b").text, "run_14:07");
  EXPECT_EQ(at(v, "c").text, "2024-03-05_14-07-09");
  EXPECT_EQ(detail::kind_of(at(v, "a")), Kind::String);
  EXPECT_EQ(at(v, "d").text, "PMPM");
}

TEST(ConfigInterpolationErrors, Cycles) {
  EXPECT_EQ(config_error([] { resolved("a:\n  b: ${a.c}\n  c: ${a.b}\n"); }), "interpolation cycle: a.b -> a.c -> a.b");
  EXPECT_EQ(config_error([] { resolved("a: ${a}\n"); }), "interpolation cycle: a -> a");
  EXPECT_EQ(config_error([] { resolved("x: ${m}\nm:\n  p: ${x}\n"); }), "interpolation cycle: x -> m.p -> x");
  EXPECT_EQ(config_error([] { resolved("m:\n  y: ${m}\n"); }), "interpolation cycle: m.y -> m");
  EXPECT_EQ(config_error([] { resolved("m:\n  y: ${.}\n"); }), "interpolation cycle: m.y -> m");
}

TEST(ConfigInterpolationErrors, MissingTargets) {
  EXPECT_EQ(config_error([] { resolved("a: ${b}\nb: ${c.d}\nc: {e: 1}\n"); }),
            "interpolation target not found: a -> b -> c.d ('${c.d}' at b: no such key 'c.d', did you mean 'c.e'?)");
  EXPECT_EQ(config_error([] { resolved("a: ${zzz.q}\n"); }),
            "interpolation target not found: a -> zzz.q ('${zzz.q}' at a: no such key 'zzz')");
  EXPECT_EQ(config_error([] { resolved("l: [1]\na: ${l.3}\n"); }),
            "interpolation target not found: a -> l.3 ('${l.3}' at a: no such key 'l.3', did you mean 'l.0'?)");
  EXPECT_EQ(config_error([] { resolved("a: ${....x}\n"); }), "relative interpolation '${....x}' at a goes above the root");
}

TEST(ConfigInterpolationErrors, BadForms) {
  ScopedEnv unset("RETORT_TEST_UNSET", nullptr);
  EXPECT_EQ(config_error([] { resolved("a: ${env:RETORT_TEST_UNSET}\n"); }),
            "environment variable 'RETORT_TEST_UNSET' is not set, in '${env:RETORT_TEST_UNSET}' at a (give a "
            "default: ${env:RETORT_TEST_UNSET,default})");
  EXPECT_EQ(config_error([] { resolved("a: ${oc.env:HOME}\n"); }),
            "unknown resolver 'oc.env' in '${oc.env:HOME}' at a; only ${env:VAR,default} and ${now:FORMAT} exist");
  EXPECT_EQ(config_error([] { resolved("a: ${python:import os}\n"); }),
            "unknown resolver 'python' in '${python:import os}' at a; only ${env:VAR,default} and ${now:FORMAT} exist");
  EXPECT_EQ(config_error([] { resolved("a: '${}'\n"); }), "empty interpolation '${}' at a");
  EXPECT_EQ(config_error([] { resolved("a: '${b'\n"); }), "unterminated interpolation in '${b' at a (missing '}')");
  EXPECT_EQ(config_error([] { resolved("a: '${b c}'\nb: 1\n"); }),
            "invalid interpolation '${b c}' at a (expected a key path like ${a.b} or ${.sibling}, ${env:VAR} or "
            "${now:FORMAT})");
  EXPECT_EQ(config_error([] { resolved("m: {x: 1}\na: 'v_${m}'\n"); }),
            "interpolation '${m}' at a is a map, which cannot be part of a string");
  EXPECT_EQ(config_error([] { resolved("a: ${env:1BAD}\n"); }),
            "invalid environment variable name '1BAD' in '${env:1BAD}' at a");
}

TEST(ConfigInterpolationErrors, BlowUpLimits) {
  // Each level doubles the string: the length limit stops it.
  std::string yaml = "s0: xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n";
  for (int i = 1; i < 40; ++i)
    yaml += "s" + std::to_string(i) + ": ${s" + std::to_string(i - 1) + "}${s" + std::to_string(i - 1) + "}\n";
  EXPECT_NE(config_error([&] { resolved(yaml); }).find("makes a string longer than 1048576 bytes"), std::string::npos);
  // Each level doubles the node count: the node budget stops it.
  std::string lists = "l0: [1, 2]\n";
  for (int i = 1; i < 40; ++i)
    lists += "l" + std::to_string(i) + ":\n  - ${l" + std::to_string(i - 1) + "}\n  - ${l" + std::to_string(i - 1) + "}\n";
  EXPECT_NE(config_error([&] { resolved(lists); }).find("interpolations expand the config beyond 200000 values"),
            std::string::npos);
  // Long chains stop before the stack does.
  std::string chain;
  for (int i = 0; i < 300; ++i) chain += "k" + std::to_string(i) + ": ${k" + std::to_string(i + 1) + "}\n";
  chain += "k300: 1\n";
  EXPECT_EQ(config_error([&] { resolved(chain); }), "interpolation chain longer than 256 steps at k256");
}

}  // namespace
}  // namespace retort::config
