#include "data/text_corpus.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/fs.h"
#include "core/text.h"
#include "data/unicode.h"

namespace retort::data {

namespace fs = std::filesystem;

namespace {

bool is_corpus_file(const fs::directory_entry& entry) {
  const std::string name = entry.path().filename().string();
  std::error_code ec;
  return !entry.is_symlink(ec) && entry.is_regular_file(ec) && name[0] != '.' && entry.path().extension() != ".dat";
}

}  // namespace

std::string read_text_file(const fs::path& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw DataError("text file '" + path.string() + "' not found");
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error& e) {
    throw DataError(e.what());  // a corpus that cannot be read is bad input (exit 3)
  }
  const size_t bad = invalid_utf8_offset(text);
  if (bad != std::string::npos) {
    throw DataError("'" + path.string() + "' is not UTF-8 text: ill-formed UTF-8 at byte offset " +
                    std::to_string(bad));
  }
  return text;
}

std::vector<fs::path> corpus_files(const fs::path& folder) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec))
    if (is_corpus_file(*it)) files.push_back(it->path());
  if (ec) throw DataError("cannot list the text corpus folder '" + folder.string() + "': " + ec.message());
  std::sort(files.begin(), files.end(),
            [](const fs::path& a, const fs::path& b) { return a.filename().string() < b.filename().string(); });
  return files;
}

size_t validation_offset(std::string_view text, double fraction) {
  const auto validation = static_cast<size_t>(std::floor(static_cast<long double>(text.size()) * fraction));
  size_t begin = text.size() - std::min(validation, text.size());
  while (begin > 0 && begin < text.size() && (static_cast<unsigned char>(text[begin]) & 0xC0) == 0x80) --begin;
  return begin;
}

TextCorpus read_text_corpus(const fs::path& path, double validation_fraction) {
  if (!(validation_fraction >= 0 && validation_fraction < 1)) {
    throw ConfigError("the validation fraction of a text corpus must be in [0, 1), got " +
                      format_number(validation_fraction));
  }
  TextCorpus corpus;
  corpus.source = path;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw DataError("text corpus '" + path.string() + "' not found");
  corpus.files = fs::is_directory(path, ec) ? corpus_files(path) : std::vector<fs::path>{path};
  for (const auto& file : corpus.files) corpus.text += read_text_file(file);
  if (corpus.text.empty()) {
    throw DataError("text corpus '" + path.string() + "' is empty" +
                    (corpus.files.empty() ? ": no text files in the folder (.dat files, links, hidden files and "
                                            "subfolders are not read)"
                                          : ""));
  }
  corpus.validation_begin = validation_offset(corpus.text, validation_fraction);
  if (corpus.validation_begin == 0 || (validation_fraction > 0 && corpus.validation_begin == corpus.text.size())) {
    throw DataError("text corpus '" + path.string() + "' has " + std::to_string(corpus.text.size()) +
                    " bytes: too few to split " + format_number(validation_fraction * 100) +
                    " % of them off for validation");
  }
  return corpus;
}

}  // namespace retort::data
