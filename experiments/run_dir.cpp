#include <blockopt/experiments/run_dir.h>

#include <fmt/format.h>
#include <unistd.h>

#include <sstream>
#include <stdexcept>

namespace blockopt::experiments {

void write_file_atomic(const fs::path& path, const std::string& content) {
  const fs::path tmp = path.string() + fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
    out << content;
    out.flush();
    if (!out) throw std::runtime_error("write failed: " + tmp.string());
  }
  fs::rename(tmp, path);
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

JsonlWriter::JsonlWriter(fs::path path) : path_(std::move(path)) {
  out_.open(path_, std::ios::app);
  if (!out_) throw std::runtime_error("cannot open " + path_.string());
}

std::vector<nlohmann::json> read_jsonl(const fs::path& path) {
  std::vector<nlohmann::json> records;
  if (!fs::exists(path)) return records;
  std::istringstream in(read_file(path));
  for (std::string line; std::getline(in, line);) {
    auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!record.is_discarded()) records.push_back(std::move(record));
  }
  return records;
}

void JsonlWriter::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
}

void JsonlWriter::truncate_after_step(int64_t step) {
  out_.close();
  std::string kept;
  for (const auto& record : read_jsonl(path_)) {  // drops a line cut short by a crash
    if (record.value("step", int64_t{0}) <= step) kept += record.dump() + '\n';
  }
  write_file_atomic(path_, kept);
  out_.open(path_, std::ios::app);
}

RunDirectory::RunDirectory(fs::path root) : root_(std::move(root)) {}

RunDirectory::State RunDirectory::claim(const std::string& resolved_yaml) {
  fs::create_directories(root_);
  if (fs::exists(config_path())) {
    if (read_file(config_path()) != resolved_yaml) {
      throw std::runtime_error(
          "run directory " + root_.string() +
          " already holds a different run (its config.resolved.yaml differs from this "
          "config); choose another --out or remove that directory");
    }
    if (fs::exists(summary_path())) {
      auto summary = nlohmann::json::parse(read_file(summary_path()), nullptr, false);
      if (!summary.is_discarded() && summary.value("status", "") == "completed") {
        return State::Complete;
      }
    }
    return fs::exists(checkpoint_path()) ? State::Resumable : State::Fresh;
  }
  write_file_atomic(config_path(), resolved_yaml);
  return State::Fresh;
}

}  // namespace blockopt::experiments
