// The repository's own rules, checked on its files: the floors of docs/ARCHITECTURE.md
// (a folder includes only its own and lower floors), nothing pointing outside the
// repository, and functions that fit on a screen.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const fs::path kRoot = RETORT_SOURCE_DIR;

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

/// folder -> floor, from the table of docs/ARCHITECTURE.md whose header is "| floor | folder |".
std::map<std::string, int> floors() {
  std::map<std::string, int> out;
  bool in_table = false;
  const std::regex row(R"(^\| (\d+) \| `([a-z_]+)` \|)");
  for (const auto& line : lines_of(read(kRoot / "docs" / "ARCHITECTURE.md"))) {
    if (line.rfind("| floor | folder |", 0) == 0) in_table = true;
    std::smatch m;
    if (in_table && std::regex_search(line, m, row)) out[m[2]] = std::stoi(m[1]);
    if (in_table && !out.empty() && line.rfind("|", 0) != 0) break;
  }
  return out;
}

/// Source files (.h, .cpp) under a product folder.
std::vector<fs::path> sources(const std::string& folder) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(kRoot / folder))
    if (e.is_regular_file() && (e.path().extension() == ".h" || e.path().extension() == ".cpp")) out.push_back(e.path());
  return out;
}

std::string where(const fs::path& file, size_t line) {
  return fs::relative(file, kRoot).string() + ":" + std::to_string(line + 1);
}

}  // namespace

TEST(House, EveryIncludeKeepsToTheFloorsOfArchitectureMd) {
  const auto table = floors();
  ASSERT_GE(table.size(), 10u) << "the floors table of docs/ARCHITECTURE.md was not found";
  const std::regex include(R"(^\s*#\s*include\s+"([a-z_]+)/)");
  std::vector<std::string> violations;
  size_t checked = 0;
  for (const auto& [folder, floor] : table) {
    ASSERT_TRUE(fs::is_directory(kRoot / folder)) << "docs/ARCHITECTURE.md lists " << folder << ", which is not a folder";
    for (const auto& file : sources(folder)) {
      const auto lines = lines_of(read(file));
      for (size_t i = 0; i < lines.size(); ++i) {
        std::smatch m;
        if (!std::regex_search(lines[i], m, include)) continue;
        const auto it = table.find(m[1]);
        if (it == table.end()) continue;  // not a product folder (tests/ helpers are not included here)
        ++checked;
        if (it->first != folder && it->second >= floor)
          violations.push_back(where(file, i) + ": " + folder + " (floor " + std::to_string(floor) + ") includes " +
                               it->first + "/ (floor " + std::to_string(it->second) + ")");
      }
    }
  }
  EXPECT_GT(checked, 100u);
  for (const auto& v : violations) ADD_FAILURE() << v;
}

// A clone has nothing beside the repository: no file may point into the folder the
// project's machines keep next to it.
TEST(House, NothingPointsOutsideTheRepository) {
  const std::string needle = std::string("..") + "/shared";
  std::vector<std::string> found;
  for (auto it = fs::recursive_directory_iterator(kRoot); it != fs::recursive_directory_iterator(); ++it) {
    const auto name = it->path().filename().string();
    if (it->is_directory() && (name == ".git" || name.rfind("build", 0) == 0 || name == ".gpu" || name == "outputs" ||
                               name == "multirun" || name == "node_modules")) {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file() || it->file_size() > (1 << 20)) continue;
    const auto lines = lines_of(read(it->path()));
    for (size_t i = 0; i < lines.size(); ++i)
      if (lines[i].find(needle) != std::string::npos) found.push_back(where(it->path(), i));
  }
  for (const auto& f : found) ADD_FAILURE() << f << " points outside the repository";
}

// Functions of the product folders fit on a screen: a body (from the line that opens it
// at the top level to its closing brace in column 0) of at most 80 lines.
TEST(House, FunctionsFitOnAScreen) {
  std::vector<std::string> long_ones;
  for (const auto& [folder, floor] : floors()) {
    for (const auto& file : sources(folder)) {
      if (file.extension() != ".cpp") continue;
      const auto lines = lines_of(read(file));
      for (size_t i = 0; i < lines.size(); ++i) {
        const auto& l = lines[i];
        const bool starts_definition = !l.empty() && !std::isspace(static_cast<unsigned char>(l[0])) && l[0] != '#' &&
                                       l[0] != '/' && l[0] != '}' && l.find('(') != std::string::npos &&
                                       l.back() != ';';
        if (!starts_definition) continue;
        size_t open = i;
        while (open < lines.size() && (lines[open].empty() || lines[open].back() != '{') &&
               lines[open].find(';') == std::string::npos)
          ++open;
        if (open >= lines.size() || lines[open].empty() || lines[open].back() != '{') continue;
        size_t close = open + 1;
        while (close < lines.size() && lines[close] != "}" && lines[close].rfind("};", 0) != 0) ++close;
        const size_t body = close - open - 1;
        if (body > 80) long_ones.push_back(where(file, i) + ": " + std::to_string(body) + " lines: " + l);
        i = close;
      }
    }
  }
  for (const auto& f : long_ones) ADD_FAILURE() << f;
}
