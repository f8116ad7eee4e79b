#include <blockopt/data/corpus.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>

namespace blockopt::data {

namespace {

// NOTE: bible-kjv-text stores the text in the `bible` program's own compressed format
// (EC02), so the program is the decoder; `-f` turns pretty-printing off: "Ge1:1 text".
std::string read_kjv() {
  const char* program = "/usr/bin/bible";
  if (!std::filesystem::exists(program) || !std::filesystem::exists("/usr/lib/bible.data")) {
    throw std::runtime_error(
        "corpus kjv: the King James text is missing; install it with "
        "`apt-get install bible-kjv bible-kjv-text` (or run scripts/setup)");
  }
  const std::string command = std::string(program) + " -f Gen1:1-Rev22:21 < /dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command.c_str(), "r"), pclose);
  if (!pipe) throw std::runtime_error("corpus kjv: cannot run " + command);
  std::string raw;
  char buffer[1 << 16];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe.get())) > 0) raw.append(buffer, n);
  if (pclose(pipe.release()) != 0 || raw.empty()) {
    throw std::runtime_error("corpus kjv: `" + command + "` failed");
  }
  std::string text;
  text.reserve(raw.size());
  size_t line_start = 0;
  while (line_start < raw.size()) {
    auto line_end = raw.find('\n', line_start);
    if (line_end == std::string::npos) line_end = raw.size();
    const auto space = raw.find(' ', line_start);
    if (space != std::string::npos && space < line_end) {  // drop the "Ge1:1 " reference
      text.append(raw, space + 1, line_end - space - 1);
      text.push_back('\n');
    }
    line_start = line_end + 1;
  }
  return text;
}

}  // namespace

std::string read_corpus(const std::string& name) {
  if (name == "kjv") return read_kjv();
  throw std::invalid_argument("unknown corpus '" + name + "' (known: kjv)");
}

}  // namespace blockopt::data
