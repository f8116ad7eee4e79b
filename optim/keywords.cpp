#include <blockopt/optim/keywords.h>

#include <algorithm>
#include <cctype>

namespace blockopt::optim {

namespace {
std::string to_lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}
}  // namespace

bool name_contains_any(const std::string& name, const std::vector<std::string>& keywords) {
  const auto lower = to_lower(name);
  return std::any_of(keywords.begin(), keywords.end(), [&](const std::string& keyword) {
    return lower.find(to_lower(keyword)) != std::string::npos;
  });
}

namespace keywords {
const std::vector<std::string> query_key = {"q_proj", "k_proj", "wq",  "wk",    "to_q",
                                            "to_k",   "c_q",    "c_k", "query", "key"};
const std::vector<std::string> embedding_or_head = {"embed", "emb", "wte", "wpe", "lm_head"};
const std::vector<std::string> v111_query_key = {"k_proj", "q_proj", "wq", "wk", "query", "key"};
const std::vector<std::string> v111_per_element = {"bias"};
const std::vector<std::string> v111_per_row = {
    "embed", "embd",  "wte", "lm_head",   "output",       "final_layer", "v_proj", "wv",
    "value", "o_proj", "wo", "attn.proj", "feed_forward", "linear",      "mlp"};
const std::vector<std::string> v111_no_decay = {"norm", "ln", "bias"};
}  // namespace keywords

bool is_query_or_key(const std::string& name) {
  return name_contains_any(name, keywords::query_key);
}

bool is_embedding_or_head(const std::string& name) {
  return name_contains_any(name, keywords::embedding_or_head);
}

}  // namespace blockopt::optim
