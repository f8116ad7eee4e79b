#include <blockopt/experiments/detail/charts.h>
#include <blockopt/experiments/detail/report_assets.h>

#include <cmath>

namespace blockopt::experiments::detail::charts {

namespace {

const char* unit_name(Unit unit) {
  switch (unit) {
    case Unit::Seconds: return "seconds";
    case Unit::Bytes: return "bytes";
    case Unit::Plain: break;
  }
  return "";
}

nlohmann::json axis_json(const Axis& axis) {
  return {{"label", axis.label}, {"log", axis.log}, {"unit", unit_name(axis.unit)}};
}

// NaN and infinities are not JSON: null, which charts.js leaves out.
nlohmann::json values_json(const std::vector<double>& values) {
  auto out = nlohmann::json::array();
  for (double v : values) out.push_back(std::isfinite(v) ? nlohmann::json(v) : nlohmann::json());
  return out;
}

std::string chart(const nlohmann::json& spec) {
  // "</" would end the <script> element early; "<\/" is the same JSON string.
  std::string text = spec.dump();
  for (auto at = text.find("</"); at != std::string::npos; at = text.find("</", at + 3)) {
    text.replace(at, 2, "<\\/");
  }
  return R"(<div class="chart"></div><script type="application/json">)" + text + "</script>\n";
}

}  // namespace

std::string line_chart(const Axes& axes, const std::vector<Series>& series) {
  auto list = nlohmann::json::array();
  for (const auto& s : series) {
    if (s.x.empty()) continue;
    nlohmann::json item = {{"name", s.name}, {"x", values_json(s.x)}, {"y", values_json(s.y)},
                           {"markers", s.markers}};
    if (!s.lo.empty()) {
      item["lo"] = values_json(s.lo);
      item["hi"] = values_json(s.hi);
    }
    list.push_back(std::move(item));
  }
  if (list.empty()) return "";
  return chart({{"type", "line"}, {"title", axes.title}, {"x", axis_json(axes.x)},
                {"y", axis_json(axes.y)}, {"series", list}});
}

std::string heatmap(const nlohmann::json& spec) {
  auto with_type = spec;
  with_type["type"] = "heatmap";
  return chart(with_type);
}

std::string page_scripts() {
  return "<style>" + std::string(assets::uplot_css()) + "</style>\n<!-- uPlot, inlined:\n" +
         std::string(assets::uplot_license()) + "-->\n<script>" + std::string(assets::uplot_js()) +
         "</script>\n<script>" + std::string(assets::charts_js()) + "</script>\n";
}

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

}  // namespace blockopt::experiments::detail::charts
