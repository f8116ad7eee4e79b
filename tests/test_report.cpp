#include <blockopt/experiments/detail/charts.h>
#include <blockopt/experiments/detail/heatmap.h>
#include <blockopt/experiments/report.h>
#include <blockopt/experiments/run.h>
#include <blockopt/experiments/sweep.h>

#include <gmock/gmock.h>
#include "common.h"

#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdlib>
#include <regex>
#include <sstream>

namespace ex = blockopt::experiments;
namespace charts = blockopt::experiments::detail::charts;
namespace fs = std::filesystem;
using blockopt::test::fresh_dir;
using ::testing::HasSubstr;

namespace {

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The DOM of `report` after its scripts ran in headless Chromium, and Chromium's console lines
// (every console message, error or not, is logged as ":CONSOLE").
struct Rendered {
  std::string dom;
  std::vector<std::string> console;
};

Rendered render(const fs::path& report) {
  const auto dir = report.parent_path();
  const auto dom = dir / "dom.html", log = dir / "chromium.log";
  const std::string command =
      "/usr/bin/chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
      "--disable-background-networking --disable-component-update --disable-sync "
      "--enable-logging=stderr --v=0 --window-size=1100,2000 --user-data-dir=" +
      (dir / "profile").string() + " --dump-dom file://" + report.string() + " > " + dom.string() +
      " 2> " + log.string();
  EXPECT_EQ(std::system(command.c_str()), 0) << ex::read_file(log);
  Rendered out{ex::read_file(dom), {}};
  std::istringstream lines(ex::read_file(log));
  for (std::string line; std::getline(lines, line);) {
    if (line.find(":CONSOLE") != std::string::npos) out.console.push_back(line);
  }
  return out;
}

// Every chart of the report was drawn (uPlot's plot area or the heatmap's canvas is there),
// none failed, and the page logged nothing to the console. Returns the number of charts.
size_t expect_every_chart_drawn(const fs::path& report) {
  const auto html = ex::read_file(report);
  const size_t charts = count(html, R"(<div class="chart">)");
  const auto rendered = render(report);
  EXPECT_THAT(rendered.console, ::testing::IsEmpty());
  // The counts charts.js leaves on <body> (not the whole DOM in a failure message).
  std::smatch body;
  EXPECT_TRUE(std::regex_search(rendered.dom, body, std::regex(R"re(<body data-charts="(\d+)" data-chart-errors="(\d+)")re")))
      << "charts.js did not finish";
  if (!body.empty()) {
    EXPECT_EQ(std::stoul(body[1]), charts);
    EXPECT_EQ(body[2], "0");
  }
  EXPECT_EQ(count(rendered.dom, R"(data-rendered="1")"), charts);
  const size_t heatmaps = count(html, R"("type":"heatmap")");
  EXPECT_EQ(count(rendered.dom, "class=\"u-over\""), charts - heatmaps);  // uPlot's plot areas
  EXPECT_GE(count(rendered.dom, "<canvas"), charts);
  EXPECT_EQ(count(html, "src=\"http"), 0u);  // offline: nothing is fetched
  return charts;
}

}  // namespace

// A run with telemetry and Hessian probes, and a two-optimizer sweep: every chart of their
// reports renders in headless Chromium without a console message.
TEST(ReportTest, EveryChartRendersInHeadlessChromium) {
  BLOCKOPT_REQUIRE_INSTALLED("/usr/bin/chromium", "chromium");
  const auto dir = fresh_dir("report_render");
  const std::string workload = R"(
data: {type: gaussian, samples: 128, dim: 8, classes: 4, batch: 32}
model: {type: mlp, hidden: [12], bias: false}
train: {steps: 20, eval_every: 10, log_every: 5}
telemetry: {every: 10}
)";
  ex::RunRequest request;
  request.out_dir = (dir / "run").string();
  const auto run = YAML::Load("name: r\noptimizer: {name: adamw, lr: 0.01}\n" + workload + R"(
probes:
  - {type: full_hessian, steps: [0, 20]}
  - {type: block_norms, steps: [0, 20], partition: per_row}
  - {type: lanczos, steps: [0, 20], top_k: 2, lanczos_steps: 8}
)");
  ASSERT_EQ(ex::run_experiment(run, request).result.status, ex::TrainResult::Status::Completed);
  const size_t run_charts = expect_every_chart_drawn(ex::write_report(dir / "run"));
  // Loss against steps and seconds, 12 telemetry panels, probe quantities, and heatmaps (one
  // group each of H, its block norms and the per_row block norms).
  EXPECT_GE(run_charts, 2u + 12u + 3u + 3u);
  // Sizes and times in human units, not 1.866e+08.
  const auto run_html = ex::read_file(dir / "run" / "report.html");
  EXPECT_TRUE(std::regex_search(run_html, std::regex(R"(<td>peak_rss_bytes</td><td>\d+(\.\d+)? MiB</td>)")));
  EXPECT_TRUE(std::regex_search(run_html, std::regex(R"(<td>wall_time</td><td>\d+(\.\d+)? s</td>)")));
  // The cursor over the first visible heatmap names the tensors and index ranges of its cell;
  // over the first line chart, the legend shows the values there.
  const auto hover = dir / "run" / "hover.html";
  auto page = ex::read_file(dir / "run" / "report.html");
  page.replace(page.rfind("</body>"), 7, R"(<script>
const move = (el, fx, fy) => { const b = el.getBoundingClientRect();
  el.dispatchEvent(new MouseEvent("mousemove", {clientX: b.left + fx * b.width, clientY: b.top + fy * b.height, bubbles: true})); };
move([...document.querySelectorAll(".chart canvas")].find((c) => !c.closest(".uplot") && c.getBoundingClientRect().width > 0), 0.9, 0.1);
move(document.querySelector(".u-over"), 0.5, 0.5);
</script></body>)");
  ex::write_file_atomic(hover, page);
  const auto hovered = render(hover);
  EXPECT_THAT(hovered.console, ::testing::IsEmpty());
  EXPECT_TRUE(std::regex_search(hovered.dom, std::regex(R"re(heatmap-tip">row \S+ \[\d+(–\d+)?\], column \S+ \[\d+(–\d+)?\]: log10)re")));
  EXPECT_TRUE(std::regex_search(hovered.dom, std::regex(R"re(u-value">\d+</td>.*?u-value">\d\.\d+</td>)re")));

  const auto sweep = YAML::Load("name: s\n" + workload + R"(
sweep:
  optimizers: [{name: adamw, lr: 0.01}, {name: muon, lr: 0.02, fallback: {lr: 0.01}}]
  seeds: [0, 1]
  lr_multipliers: [0.5, 1]
  target_loss: 1.3
)");
  const auto outcome = ex::run_sweep(ex::plan_sweep(sweep, "s"), dir / "sweep", BLOCKOPT_CLI_PATH);
  ASSERT_EQ(outcome.failed + outcome.diverged, 0);
  // Train and eval loss against steps and seconds, lr sensitivity, 12 telemetry panels.
  EXPECT_EQ(expect_every_chart_drawn(ex::write_report(dir / "sweep")), 4u + 1u + 12u);
}

// A chart's spec is JSON inside a <script> element: "</" cannot end it early, and NaN (not
// JSON) becomes null; a chart without points is left out.
TEST(ReportTest, ChartSpecIsSafeJson) {
  const auto html = charts::line_chart({"a </script> title", {"x"}, {"y", true}},
                                       {{"s", {1.0, 2.0}, {0.5, std::nan("")}, {}, {}, false}});
  const auto begin = html.find(R"(<script type="application/json">)");
  ASSERT_NE(begin, std::string::npos);
  EXPECT_EQ(count(html, "</script>"), 1u);
  const auto json_begin = begin + std::string(R"(<script type="application/json">)").size();
  const auto spec = nlohmann::json::parse(html.substr(json_begin, html.rfind("</script>") - json_begin));
  EXPECT_EQ(spec["title"], "a </script> title");
  EXPECT_EQ(spec["y"]["log"], true);
  EXPECT_TRUE(spec["series"][0]["y"][1].is_null());
  EXPECT_EQ(charts::line_chart({"empty", {"x"}, {"y"}}, {{"s", {}, {}, {}, {}, false}}), "");
}

// A 5 x 5 matrix in cells of 3 (at most 2 per side): each cell holds log10 of the largest
// |entry| of its square (the last row and column of cells are partial), an all-zero cell null.
TEST(ReportTest, HeatmapSpecMaxPoolsLogMagnitudes) {
  auto m = torch::zeros({5, 5}, torch::kDouble);
  m[0][1] = -100.0;  // cell (0, 0)
  m[2][2] = 10.0;
  m[1][4] = 0.01;    // cell (0, 1)
  m[4][0] = -1e-3;   // cell (1, 0); cell (1, 1) stays 0
  const auto spec = ex::detail::heatmap_spec(m, {{"w1", 0, 3}, {"w2", 3, 5}}, "t", "log10 |H|", 2);
  EXPECT_EQ(spec["rows"], 2);
  EXPECT_EQ(spec["cols"], 2);
  EXPECT_EQ(spec["cell"], 3);
  EXPECT_EQ(spec["size"], 5);
  EXPECT_EQ(spec["values"], nlohmann::json::parse("[2.0, -2.0, -3.0, null]"));
  EXPECT_DOUBLE_EQ(spec["max"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(spec["min"].get<double>(), -4.0);
  EXPECT_EQ(spec["tensors"][1]["name"], "w2");
  EXPECT_EQ(spec["tensors"][1]["begin"], 3);
}
