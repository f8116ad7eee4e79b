#include <blockopt/experiments/run_dir.h>

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <system_error>
#include <stdexcept>

namespace blockopt::experiments {

namespace {

// fsync(2) of a file or directory: what was written to it (or renamed in it) is on disk.
void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw std::runtime_error(fmt::format("cannot open {} to sync it: {}", path.string(),
                                         std::strerror(errno)));
  }
  const int result = ::fsync(fd);
  const int error = errno;
  ::close(fd);
  if (result != 0) {
    throw std::runtime_error(
        fmt::format("cannot sync {}: {}", path.string(), std::strerror(error)));
  }
}

}  // namespace

void durable_rename(const fs::path& from, const fs::path& to) {
  fsync_path(from);  // the content first: a rename must never expose an unwritten file
  fs::rename(from, to);
  fsync_path(to.has_parent_path() ? to.parent_path() : fs::path("."));  // the rename itself
}

void write_file_atomic(const fs::path& path, const std::string& content) {
  const fs::path tmp = path.string() + fmt::format(".tmp{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
    out << content;
    out.flush();
    if (!out) throw std::runtime_error("write failed: " + tmp.string());
  }
  durable_rename(tmp, path);
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
  if (resume_step_) {
    truncate_after_step(*resume_step_);
    resume_step_.reset();
  }
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

fs::path previous_checkpoint(const fs::path& checkpoint) {
  return checkpoint.parent_path() /
         (checkpoint.stem().string() + ".prev" + checkpoint.extension().string());
}

RunDirectory::RunDirectory(fs::path root) : root_(std::move(root)) {}

RunDirectory::~RunDirectory() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

RunDirectory::State RunDirectory::claim(const std::string& resolved_yaml) {
  fs::create_directories(root_);
  // NOTE: two processes must never run in one directory (a sweep worker whose lease ran out
  // while its run went on, the same command started twice): the second waits for the first.
  const auto lock = root_ / ".run.lock";
  if (lock_fd_ < 0) lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd_ < 0) throw std::system_error(errno, std::generic_category(), "cannot open " + lock.string());
  if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    spdlog::warn("run directory {} is in use by another process; waiting for it to end",
                 root_.string());
    if (::flock(lock_fd_, LOCK_EX) != 0) {
      throw std::system_error(errno, std::generic_category(), "cannot lock " + lock.string());
    }
  }
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
    // NOTE: checkpoint.prev.pt alone counts: a crash while a new checkpoint is being
    // installed leaves only it (see Trainer::save_checkpoint), and a fresh start would
    // throw the run's progress and metrics away.
    return fs::exists(checkpoint_path()) || fs::exists(previous_checkpoint_path())
               ? State::Resumable
               : State::Fresh;
  }
  write_file_atomic(config_path(), resolved_yaml);
  return State::Fresh;
}

}  // namespace blockopt::experiments
