// parse / emit / hash / first_difference, YAML loading errors and limits, and sweeps.
#include <gtest/gtest.h>

#include "config/config.h"
#include "config/value.h"
#include "core/fs.h"
#include "helpers.h"

namespace retort::config {
namespace {

using testing::config_error;

// ---------------------------------------------------------------------------- emit

TEST(ConfigEmit, BlockStyleInInsertionOrder) {
  YAML::Node n = parse(
      "z: 1\n"
      "a:\n"
      "  list: [1, two, {k: v, k2: [x]}, [3, 4], [], {}]\n"
      "  empty_map: {}\n"
      "  nothing: ~\n"
      "m: {b: true, a: 2.5}\n",
      "t");
  EXPECT_EQ(emit(n),
            "z: 1\n"
            "a:\n"
            "  list:\n"
            "    - 1\n"
            "    - two\n"
            "    - k: v\n"
            "      k2:\n"
            "        - x\n"
            "    - - 3\n"
            "      - 4\n"
            "    - []\n"
            "    - {}\n"
            "  empty_map: {}\n"
            "  nothing: null\n"
            "m:\n"
            "  b: true\n"
            "  a: 2.5\n");
  EXPECT_EQ(emit(parse("", "t")), "{}\n");
}

TEST(ConfigEmit, QuotesOnlyWhatNeedsIt) {
  YAML::Node n = parse(
      "s1: plain text\n"
      "s2: \"1\"\n"
      "s3: 'true'\n"
      "s4: 'null'\n"
      "s5: ''\n"
      "s6: 'a: b'\n"
      "s7: 'x #y'\n"
      "s8: ' lead'\n"
      "s9: \"line\\nbreak\\ttab\"\n"
      "s10: yes\n"
      "s11: 'say \"hi\" \\ ok'\n"
      "s12: ${a.b}\n"
      "s13: -x\n"
      "s14: \"caf\xc3\xa9\"\n"
      "s15: \"\\x00\\x7f\\u2028\"\n"
      "'1': int-looking key\n"
      "f: 1e-3\n"
      "i: 0x1F\n",
      "t");
  EXPECT_EQ(emit(n),
            "s1: plain text\n"
            "s2: \"1\"\n"
            "s3: \"true\"\n"
            "s4: \"null\"\n"
            "s5: \"\"\n"
            "s6: \"a: b\"\n"
            "s7: \"x #y\"\n"
            "s8: \" lead\"\n"
            "s9: \"line\\nbreak\\ttab\"\n"
            "s10: \"yes\"\n"
            "s11: \"say \\\"hi\\\" \\\\ ok\"\n"
            "s12: \"${a.b}\"\n"
            "s13: \"-x\"\n"
            "s14: \"caf\xc3\xa9\"\n"
            "s15: \"\\x00\\x7F\\u2028\"\n"
            "\"1\": int-looking key\n"
            "f: 1e-3\n"
            "i: 0x1F\n");
}

TEST(ConfigEmit, RoundTripIsExact) {
  const char* texts[] = {
      "a: {b: [1, 2, {c: d}], e: \"\"}\n",
      "k: \"\\u0085 \\uFEFF \\t\\r\\x01\"\n",
      "list: [[[]], [{}], [null, ~, 'x y', \"#\", '[', '{a}', ':', '- b', '? q', '%x', '@y', '`z']]\n",
      "? weird key with spaces\n: v\n",
      "n: [.inf, -.inf, .nan, 1., +5, -0, 007]\n",
  };
  for (const char* text : texts) {
    YAML::Node once = parse(text, "t");
    std::string out = emit(once);
    YAML::Node twice = parse(out, "emitted");
    EXPECT_EQ(first_difference(once, twice), "") << text << "\n--\n" << out;
    EXPECT_EQ(emit(twice), out);
  }
}

// ---------------------------------------------------------------------------- hash

TEST(ConfigHash, StableAndSensitive) {
  YAML::Node a = parse("x: 1\ny: [a, b]\n", "t");
  YAML::Node b = parse("x: 1\ny:\n  - a\n  - b\n", "t");
  EXPECT_EQ(hash(a), hash(b));  // layout in the source does not matter
  // Pinned: the hash is compared across ranks and stored in run directories.
  EXPECT_EQ(emit(a), "x: 1\ny:\n  - a\n  - b\n");
  EXPECT_EQ(hash(a), retort::xxh64(std::string("x: 1\ny:\n  - a\n  - b\n")));
  EXPECT_NE(hash(a), hash(parse("x: 2\ny: [a, b]\n", "t")));
  EXPECT_NE(hash(a), hash(parse("x: '1'\ny: [a, b]\n", "t")));  // a string is not an int
  EXPECT_NE(hash(a), hash(parse("y: [a, b]\nx: 1\n", "t")));    // key order counts
  EXPECT_EQ(hash(a), hash(parse(emit(a), "t")));
}

// ---------------------------------------------------------------------------- first_difference

TEST(ConfigFirstDifference, NamesThePath) {
  YAML::Node a = parse("t: {e: 1, f: [1, 2]}\nm: x\n", "t");
  EXPECT_EQ(first_difference(a, parse("t: {e: 1, f: [1, 2]}\nm: x\n", "t")), "");
  EXPECT_EQ(first_difference(a, parse("t: {e: 2, f: [1, 2]}\nm: x\n", "t")), "t.e");
  EXPECT_EQ(first_difference(a, parse("t: {e: 1, f: [1, 3]}\nm: x\n", "t")), "t.f[1]");
  EXPECT_EQ(first_difference(a, parse("t: {e: 1, f: [1]}\nm: x\n", "t")), "t.f[1]");
  EXPECT_EQ(first_difference(a, parse("t: {e: 1, f: [1, 2]}\n", "t")), "m");
  EXPECT_EQ(first_difference(a, parse("t: {e: 1, f: [1, 2]}\nm: x\nn: 1\n", "t")), "n");
  EXPECT_EQ(first_difference(a, parse("t: {f: [1, 2], e: 1}\nm: x\n", "t")), "t.e");
  EXPECT_EQ(first_difference(a, parse("t: {e: '1', f: [1, 2]}\nm: x\n", "t")), "t.e");
  EXPECT_EQ(first_difference(a, parse("t: 5\nm: x\n", "t")), "t");
}

TEST(ConfigDescribeDifference, NamesThePathAndBothValuesOnOneLine) {
  YAML::Node a = parse("t: {e: 1, f: [1, 2]}\nm: x\n", "t");
  EXPECT_FALSE(describe_difference(a, parse("t: {e: 1, f: [1, 2]}\nm: x\n", "t")).has_value());
  auto expect = [&](const std::string& other, const std::string& key, const std::string& va, const std::string& vb) {
    const auto d = describe_difference(a, parse(other, "t"));
    ASSERT_TRUE(d.has_value()) << other;
    EXPECT_EQ(d->key, key) << other;
    EXPECT_EQ(d->a, va) << other;
    EXPECT_EQ(d->b, vb) << other;
  };
  expect("t: {e: 2, f: [1, 2]}\nm: x\n", "t.e", "1", "2");
  expect("t: {e: 1, f: [1, 3]}\nm: x\n", "t.f[1]", "2", "3");
  expect("t: {e: 1, f: [1]}\nm: x\n", "t.f[1]", "2", "(absent)");
  expect("t: {e: 1, f: [1, 2]}\n", "m", "x", "(absent)");
  expect("t: {e: 1, f: [1, 2]}\nm: x\nn: 1\n", "n", "(absent)", "1");
  expect("t: {e: '1', f: [1, 2]}\nm: x\n", "t.e", "1", "\"1\"");  // a string, quoted
  expect("t: 5\nm: x\n", "t", "{e: 1, f: [1, 2]}", "5");
}

// ---------------------------------------------------------------------------- loading errors

TEST(ConfigParseErrors, InvalidYamlNamesOriginLineAndColumn) {
  EXPECT_EQ(config_error([] { parse("a: 1\nb: [1, 2\n", "recipe.yaml"); }),
            "invalid YAML in 'recipe.yaml' at line 3, column 1: end of sequence flow not found");
  EXPECT_EQ(config_error([] { parse("a: 1\n  b: 2\n", "r.yaml"); }),
            "invalid YAML in 'r.yaml' at line 2, column 4: illegal map value");
  EXPECT_EQ(config_error([] { parse("a: 1\na: 2\n", "r.yaml"); }),
            "duplicate key 'a' in 'r.yaml' at line 2, column 1");
  EXPECT_EQ(config_error([] { parse("a: 1\n---\nb: 2\n", "r.yaml"); }),
            "'r.yaml' holds more than one YAML document (a second starts at line 2); a config is a single document");
  // yaml-cpp's LoadAll would loop forever here (yaml-cpp issue #1040).
  EXPECT_EQ(config_error([] { parse(" ,\n", "r.yaml"); }), "invalid YAML in 'r.yaml' at line 1, column 2: unexpected character");
  EXPECT_EQ(config_error([] { parse("- 1\n- 2\n", "r.yaml"); }),
            "'r.yaml' must hold a map of keys at the top, not a list");
  EXPECT_EQ(config_error([] { parse("[1]: x\n", "r.yaml"); }),
            "map keys must be non-empty scalars, in 'r.yaml' at line 1, column 1");
}

TEST(ConfigParseErrors, BadBytes) {
  EXPECT_EQ(config_error([] { parse("a: 1\nb: \x01\n", "r.yaml"); }),
            "invalid character 0x01 in 'r.yaml' at line 2, column 4");
  EXPECT_EQ(config_error([] { parse(std::string("a: \xc3(\n"), "r.yaml"); }),
            "invalid UTF-8 in 'r.yaml' at line 1, column 4");
  EXPECT_EQ(config_error([] { parse("a: \"\\N\"\n", "r.yaml"); }),
            "string is not valid UTF-8 (write U+0085 as \\u0085, not \\N) in 'r.yaml' at line 1, column 4");
}

TEST(ConfigParseErrors, NestingAndAliasLimits) {
  // The 65th nested container is refused while yaml-cpp parses (its recursion stops there).
  const std::string limit = "nesting deeper than 64 levels in 'r.yaml' at line ";
  std::string deep = "a: " + std::string(64, '[') + std::string(64, ']');
  EXPECT_EQ(config_error([&] { parse(deep, "r.yaml"); }).substr(0, limit.size() + 1), limit + "1");
  EXPECT_EQ(config_error([&] { parse(std::string(100000, '['), "r.yaml"); }).substr(0, limit.size() + 1), limit + "1");
  std::string dashes;
  for (int i = 0; i < 70; ++i) dashes += "- ";
  EXPECT_EQ(config_error([&] { parse("a:\n" + dashes + "x\n", "r.yaml"); }).substr(0, limit.size() + 1), limit + "2");
  std::string block;
  for (int i = 0; i < 70; ++i) block += std::string(static_cast<size_t>(i), ' ') + "k:\n";
  EXPECT_EQ(config_error([&] { parse(block, "r.yaml"); }), limit + "65, column 65");
  std::string ok = "a: " + std::string(63, '[') + std::string(63, ']') + "\n";
  EXPECT_EQ(detail::depth(detail::load_yaml_text(ok, "r.yaml")), 64);
  // An alias inside the node it names would be an infinite tree.
  EXPECT_EQ(config_error([] { parse("a: &x [1, *x]\n", "r.yaml"); }),
            "an alias refers to the anchor that contains it (a recursive alias) in 'r.yaml' at line 1, column 11");
  // Aliases are expanded, but an alias bomb hits the size limit.
  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 8; ++i) {
    std::string p = "*a" + std::to_string(i - 1);
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [" + p + "," + p + "," + p + "," + p + "," + p +
            "," + p + "," + p + "," + p + "," + p + "," + p + "]\n";
  }
  EXPECT_EQ(config_error([&] { parse(bomb, "r.yaml"); }),
            "config in 'r.yaml' is too large: more than 200000 values (aliases expanded)");
  EXPECT_EQ(emit(parse("base: &b {x: 1}\nother: *b\n", "r.yaml")), "base:\n  x: 1\nother:\n  x: 1\n");
}

TEST(ConfigParseErrors, EmptyDocumentIsAnEmptyMap) {
  EXPECT_EQ(emit(parse("# only a comment\n", "r.yaml")), "{}\n");
  EXPECT_EQ(emit(parse("~\n", "r.yaml")), "{}\n");
}

// ---------------------------------------------------------------------------- YAML::Node input

TEST(ConfigYamlNodes, ConstructedNodesAreAccepted) {
  YAML::Node n;
  n["i"] = 3;
  n["s"] = "text";
  n["e"] = "";
  n["list"].push_back(1.5);
  EXPECT_EQ(emit(n), "i: 3\ns: text\ne: \"\"\nlist:\n  - 1.5\n");
  // A quoted number keeps its string type through to_yaml / from_yaml.
  YAML::Node p = parse("q: '12'\n", "t");
  EXPECT_EQ(p["q"].Tag(), "!");
  EXPECT_EQ(emit(p), "q: \"12\"\n");
}

// ---------------------------------------------------------------------------- sweeps

TEST(ConfigSweep, CartesianProductFirstAxisSlowest) {
  auto runs = expand_sweep({"optim.lr=1e-3,3e-4", "model=cnn_small,cnn_large", "seed=1"});
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(runs[0], (std::vector<std::string>{"optim.lr=1e-3", "model=cnn_small", "seed=1"}));
  EXPECT_EQ(runs[1], (std::vector<std::string>{"optim.lr=1e-3", "model=cnn_large", "seed=1"}));
  EXPECT_EQ(runs[2], (std::vector<std::string>{"optim.lr=3e-4", "model=cnn_small", "seed=1"}));
  EXPECT_EQ(runs[3], (std::vector<std::string>{"optim.lr=3e-4", "model=cnn_large", "seed=1"}));
}

TEST(ConfigSweep, CommasInsideValuesDoNotSplit) {
  auto runs = expand_sweep({"a=[1,2],[3]", "b='x,y'", "c={k: 1, j: 2}", "d=${env:X,1}", "e=p\\,q"});
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0], (std::vector<std::string>{"a=[1,2]", "b='x,y'", "c={k: 1, j: 2}", "d=${env:X,1}", "e=p\\,q"}));
  EXPECT_EQ(runs[1][0], "a=[3]");
}

TEST(ConfigSweep, KeepsThePrefixAndTheTexts) {
  auto runs = expand_sweep({"+trainer.tag='a b', c", "++x=1,2"});
  ASSERT_EQ(runs.size(), 4u);
  EXPECT_EQ(runs[0], (std::vector<std::string>{"+trainer.tag='a b'", "++x=1"}));
  EXPECT_EQ(runs[3], (std::vector<std::string>{"+trainer.tag=c", "++x=2"}));
  EXPECT_EQ(expand_sweep({}).size(), 1u);
  EXPECT_EQ(expand_sweep({"a=1"}), (std::vector<std::vector<std::string>>{{"a=1"}}));
}

TEST(ConfigSweep, Errors) {
  EXPECT_EQ(config_error([] { expand_sweep({"a=[1,2"}); }),
            "invalid override 'a=[1,2' at column 7: missing ']' to close the list opened at column 3");
  std::vector<std::string> big;
  for (int i = 0; i < 6; ++i) big.push_back("k" + std::to_string(i) + "=0,1,2,3,4,5,6,7,8,9");
  EXPECT_EQ(config_error([&] { expand_sweep(big); }), "sweep expands to more than 100000 runs");
}

}  // namespace
}  // namespace retort::config
