#pragma once
/// A UTF-8 text corpus for language models: one file, or a folder's text files back to back
/// in name order, split by bytes into training text and the validation text after it.
///   auto corpus = data::read_text_corpus("/usr/share/games/fortunes");   // last 10 %: validation
///   auto train_ids = tokenizer->encode(corpus.train());
///   auto val_ids = tokenizer->encode(corpus.validation());
///
/// Debian's `fortunes` folder holds, per collection, the text (`art`), its strfile index
/// (`art.dat`) and a link to the text (`art.u8`); only the text is read. The corpus is what
/// `cat` of the files in that order gives, so compressors can be measured on the same bytes.
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace retort::data {

struct TextCorpus {
  std::filesystem::path source;              ///< the file or folder read
  std::vector<std::filesystem::path> files;  ///< the files, in the order concatenated
  std::string text;                          ///< their bytes, back to back
  size_t validation_begin = 0;               ///< validation is text[validation_begin:]

  std::string_view train() const { return std::string_view(text).substr(0, validation_begin); }
  std::string_view validation() const { return std::string_view(text).substr(validation_begin); }
};

/// Reads `path`, a UTF-8 text file or a folder (corpus_files), and splits it:
/// validation_begin = validation_offset(text, validation_fraction).
/// ConfigError: validation_fraction outside [0, 1). DataError naming the path: missing; no
/// text (an empty file, a folder without text files); too short for both a training and a
/// validation part (validation_fraction 0: no validation part); a file that is not UTF-8
/// (with the file and the byte offset).
TextCorpus read_text_corpus(const std::filesystem::path& path, double validation_fraction = 0.1);

/// A folder's corpus files in name order (byte order of the names): its regular files
/// except `.dat` (strfile indexes), symbolic links (fortunes' `.u8` links repeat the text),
/// hidden files and subfolders (Debian's fortunes-off package puts the offensive collection
/// in a subfolder `off`: not read unless named). DataError naming a folder it cannot list.
std::vector<std::filesystem::path> corpus_files(const std::filesystem::path& folder);

/// Where the last `fraction` of the bytes starts, moved back to the start of the UTF-8
/// character it falls in: validation holds at least floor(size * fraction) bytes.
size_t validation_offset(std::string_view text, double fraction);

/// A whole file that must be UTF-8 text: DataError naming the file when it is missing or
/// unreadable, or naming the byte offset of the first ill-formed sequence.
std::string read_text_file(const std::filesystem::path& path);

}  // namespace retort::data
