#pragma once
// Text corpora as plain strings. Free of LibTorch so that the SentencePiece tool
// (tools/tokenize), which must not link LibTorch, shares it.
#include <string>

namespace blockopt::data {

// The whole corpus text. "kjv": the King James Bible, one verse per line (references
// stripped), read through the `bible` program of Debian's bible-kjv / bible-kjv-text.
// Throws std::runtime_error naming the apt command when the packages are missing.
std::string read_corpus(const std::string& name);

// Fraction of a corpus (its start) used for training; the rest is validation.
constexpr double kTrainFraction = 0.9;

}  // namespace blockopt::data
