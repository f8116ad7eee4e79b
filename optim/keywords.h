#pragma once
// The one table of parameter-name keywords. Adam-mini's partitions, the matrix optimizers'
// routing and the Hessian probe's per_head partition all classify parameters through it, so
// they split a model the same way. Matching is by substring, ignoring case.
#include <string>
#include <vector>

namespace blockopt::optim {

// True when `name` contains one of `keywords`, ignoring case.
bool name_contains_any(const std::string& name, const std::vector<std::string>& keywords);

namespace keywords {
// Attention query/key projections, split per head: LLaMA / Hugging Face (q_proj, k_proj),
// Meta LLaMA and blockopt's GPT (wq, wk), diffusers (to_q, to_k), c_q / c_k, BERT (query, key).
extern const std::vector<std::string> query_key;
// Embeddings and the output head: the matrix optimizers give them to the AdamW fallback
// (Muon's convention). nanoGPT: wte, wpe, lm_head.
extern const std::vector<std::string> embedding_or_head;
// NOTE: Adam-mini v1.1.1's own lists, reproduced verbatim (its pitfalls included: no to_q,
// and unlisted matrices get one block) by the "v111" rule, so that it matches the reference.
extern const std::vector<std::string> v111_query_key;
extern const std::vector<std::string> v111_per_element;
extern const std::vector<std::string> v111_per_row;
extern const std::vector<std::string> v111_no_decay;
}  // namespace keywords

bool is_query_or_key(const std::string& name);
bool is_embedding_or_head(const std::string& name);

}  // namespace blockopt::optim
