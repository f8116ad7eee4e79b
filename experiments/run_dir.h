#pragma once
// The run directory: config.resolved.yaml, metrics.jsonl, summary.json, checkpoint.pt (and the
// one before it, checkpoint.prev.pt), hessian/. Every whole-file write is atomic and durable
// (temp file, fsync, rename, fsync of the directory).
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace blockopt::experiments {

namespace fs = std::filesystem;

// Renames the written file `from` to `to` so that it survives a crash or power loss: fsyncs
// the file before and its directory after the rename.
void durable_rename(const fs::path& from, const fs::path& to);
void write_file_atomic(const fs::path& path, const std::string& content);
std::string read_file(const fs::path& path);
// The JSON objects of a .jsonl file, in order; none when the file is missing. A line that does
// not parse (cut short by a crash) is skipped.
std::vector<nlohmann::json> read_jsonl(const fs::path& path);

// Appends one JSON object per line, flushed per line so a crash loses at most one line.
class JsonlWriter {
 public:
  explicit JsonlWriter(fs::path path);
  void write(const nlohmann::json& record);
  // Keeps only records whose "step" is <= `step` (used when resuming from a checkpoint).
  void truncate_after_step(int64_t step);
  // The same, done when the first record of this session is written: a resumed run rewrites
  // history from its checkpoint on, but a start that fails leaves the file as it was.
  void resume_after(int64_t step) { resume_step_ = step; }

 private:
  fs::path path_;
  std::ofstream out_;
  std::optional<int64_t> resume_step_;
};

// The previous good checkpoint kept beside `checkpoint`: checkpoint.pt -> checkpoint.prev.pt.
fs::path previous_checkpoint(const fs::path& checkpoint);

class RunDirectory {
 public:
  enum class State { Fresh, Resumable, Complete };

  explicit RunDirectory(fs::path root);
  ~RunDirectory();  // releases the directory's lock
  RunDirectory(const RunDirectory&) = delete;
  RunDirectory& operator=(const RunDirectory&) = delete;
  // Creates the directory, takes its lock (<root>/.run.lock, flock: while another process
  // runs in it, this one waits, saying so) and writes config.resolved.yaml. If the directory
  // already holds a run with a different resolved config, throws (naming both files) rather
  // than mixing runs.
  State claim(const std::string& resolved_yaml);

  const fs::path& root() const { return root_; }
  fs::path config_path() const { return root_ / "config.resolved.yaml"; }
  fs::path metrics_path() const { return root_ / "metrics.jsonl"; }
  fs::path summary_path() const { return root_ / "summary.json"; }
  fs::path checkpoint_path() const { return root_ / "checkpoint.pt"; }
  fs::path previous_checkpoint_path() const { return previous_checkpoint(checkpoint_path()); }
  fs::path hessian_dir() const { return root_ / "hessian"; }

 private:
  fs::path root_;
  int lock_fd_ = -1;  // held from claim() on
};

}  // namespace blockopt::experiments
