// blockopt-tokenize: trains a SentencePiece BPE model on a corpus and writes nanoGPT-style
// token files for `data: {type: text, tokenizer: {type: sentencepiece, vocab: N}}`:
//   OUT/tokenizer.model  OUT/train.bin  OUT/val.bin (little-endian uint16)  OUT/meta.json
// NOTE: a separate process on purpose: libsentencepiece and LibTorch bundle clashing protobufs.
#include <blockopt/data/corpus.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

void check(const sentencepiece::util::Status& status, const std::string& what) {
  if (!status.ok()) throw std::runtime_error(what + ": " + status.ToString());
}

// Encodes every line of `text` and appends the ids as uint16 to `path`; returns the count.
int64_t write_tokens(const sentencepiece::SentencePieceProcessor& sp, const std::string& text,
                     const fs::path& path) {
  std::vector<uint16_t> tokens;
  std::vector<int> ids;
  size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    check(sp.Encode(std::string_view(text).substr(start, end - start), &ids), "encode");
    tokens.insert(tokens.end(), ids.begin(), ids.end());
    start = end + 1;
  }
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(tokens.data()),
            static_cast<std::streamsize>(tokens.size() * sizeof(uint16_t)));
  if (!out) throw std::runtime_error("cannot write " + path.string());
  return static_cast<int64_t>(tokens.size());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train a SentencePiece BPE tokenizer and write uint16 token files"};
  std::string corpus = "kjv";
  int vocab = 2000;
  std::string out_dir;
  app.add_option("--corpus", corpus, "corpus name (kjv)")->capture_default_str();
  app.add_option("--vocab", vocab, "vocabulary size")
      ->check(CLI::Range(64, 65536))
      ->capture_default_str();
  app.add_option("--out", out_dir, "output directory (default data/<corpus>-sp<vocab>)");
  CLI11_PARSE(app, argc, argv);
  if (out_dir.empty()) out_dir = "data/" + corpus + "-sp" + std::to_string(vocab);

  try {
    const auto text = blockopt::data::read_corpus(corpus);
    // Split at the line break after kTrainFraction of the text (the byte tokenizer's split).
    auto split = text.find('\n', static_cast<size_t>(blockopt::data::kTrainFraction *
                                                     static_cast<double>(text.size())));
    split = split == std::string::npos ? text.size() : split + 1;
    const auto train_text = text.substr(0, split);

    const fs::path dir(out_dir);
    fs::create_directories(dir);
    const auto corpus_file = dir / "train.txt";
    std::ofstream(corpus_file) << train_text;
    const auto prefix = (dir / "tokenizer").string();
    check(sentencepiece::SentencePieceTrainer::Train(
              "--input=" + corpus_file.string() + " --model_prefix=" + prefix +
              " --vocab_size=" + std::to_string(vocab) +
              " --model_type=bpe --character_coverage=1.0 --minloglevel=1"),
          "sentencepiece training");
    fs::remove(corpus_file);

    sentencepiece::SentencePieceProcessor sp;
    check(sp.Load(prefix + ".model"), "loading " + prefix + ".model");
    const auto train_tokens = write_tokens(sp, train_text, dir / "train.bin");
    const auto val_tokens = write_tokens(sp, text.substr(split), dir / "val.bin");
    const nlohmann::json meta = {{"vocab_size", sp.GetPieceSize()},
                                 {"tokenizer", "sentencepiece-bpe"},
                                 {"model", "tokenizer.model"},
                                 {"corpus", corpus},
                                 {"dtype", "uint16"},
                                 {"train_tokens", train_tokens},
                                 {"val_tokens", val_tokens}};
    std::ofstream(dir / "meta.json") << meta.dump(2) << '\n';
    std::cout << "blockopt-tokenize: " << corpus << " vocab " << sp.GetPieceSize() << ": "
              << train_tokens << " train, " << val_tokens << " val tokens in " << dir.string()
              << '\n';
  } catch (const std::exception& e) {
    std::cerr << "blockopt-tokenize: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
