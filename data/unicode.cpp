#include "data/unicode.h"

#include <algorithm>
#include <array>
#include <cstdint>

namespace retort::data {

namespace {

CharClass search_table(char32_t cp) {
  const detail::CharRange* begin = detail::kCharRanges;
  const detail::CharRange* end = begin + detail::kCharRangeCount;
  // The first run starting after cp; the one before it is the only one that can hold cp.
  const auto* after =
      std::upper_bound(begin, end, cp, [](char32_t c, const detail::CharRange& r) { return c < r.first; });
  if (after == begin) return CharClass::kOther;
  const auto& run = *(after - 1);
  return cp <= run.last ? run.cls : CharClass::kOther;
}

// Nearly all text is ASCII: its classes come from a table built once from the same runs.
const std::array<CharClass, 128>& ascii_classes() {
  static const std::array<CharClass, 128> table = [] {
    std::array<CharClass, 128> t{};
    for (char32_t c = 0; c < 128; ++c) t[c] = search_table(c);
    return t;
  }();
  return table;
}

bool is_continuation(unsigned char b) { return (b & 0xC0) == 0x80; }

}  // namespace

CharClass char_class(char32_t cp) { return cp < 128 ? ascii_classes()[cp] : search_table(cp); }

size_t decode_utf8(std::string_view text, size_t at, char32_t& cp) {
  if (at >= text.size()) return 0;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data()) + at;
  const size_t left = text.size() - at;
  if (p[0] < 0x80) {
    cp = p[0];
    return 1;
  }
  size_t length;
  char32_t min;  // the smallest code point of this length: below it the form is overlong
  if ((p[0] & 0xE0) == 0xC0) {
    length = 2, min = 0x80, cp = p[0] & 0x1F;
  } else if ((p[0] & 0xF0) == 0xE0) {
    length = 3, min = 0x800, cp = p[0] & 0x0F;
  } else if ((p[0] & 0xF8) == 0xF0) {
    length = 4, min = 0x10000, cp = p[0] & 0x07;
  } else {
    return 0;
  }
  if (left < length) return 0;
  for (size_t i = 1; i < length; ++i) {
    if (!is_continuation(p[i])) return 0;
    cp = (cp << 6) | (p[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return length;
}

size_t invalid_utf8_offset(std::string_view text) {
  size_t at = 0;
  char32_t cp;
  while (at < text.size()) {
    // ASCII bytes need no decoding; take them eight at a time where possible.
    if (at + 8 <= text.size()) {
      uint64_t word;
      std::copy_n(text.data() + at, 8, reinterpret_cast<char*>(&word));
      if ((word & 0x8080808080808080ULL) == 0) {
        at += 8;
        continue;
      }
    }
    const size_t n = decode_utf8(text, at, cp);
    if (n == 0) return at;
    at += n;
  }
  return std::string_view::npos;
}

const char* unicode_version() { return detail::kUnicodeVersion; }

}  // namespace retort::data
