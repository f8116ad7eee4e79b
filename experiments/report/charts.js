// The charts of report.html (experiments/report.cpp, detail/charts.h). Every chart div
// (class "chart") is followed by a script element of type application/json holding its spec:
//   {type: "line", title, x: {label, log, unit}, y: {label, log, unit},
//    series: [{name, x, y, lo?, hi?, markers?}]}              drawn with uPlot;
//   {type: "heatmap", title, label, rows, cols, cell, size, values, min, max,
//    tensors: [{name, begin, end}]}                           drawn on a canvas.
// body gets data-charts (how many rendered) and data-chart-errors; a chart that fails shows
// its error in place of the plot (the report test counts both).
(function () {
  "use strict";

  const palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                   "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

  // Up to 4 significant digits; an exponent outside [1e-3, 1e5).
  function plain(v) {
    if (v == null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a === 0) return "0";
    if (a < 1e-3 || a >= 1e5) return v.toExponential(2).replace(/\.?0+e/, "e").replace("e+", "e");
    return String(+v.toPrecision(4));
  }
  function seconds(v) {
    if (v == null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    if (a === 0) return "0 s";
    if (a < 1) return plain(v * 1e3) + " ms";
    if (a < 120) return plain(v) + " s";
    if (a < 7200) return plain(v / 60) + " min";
    return plain(v / 3600) + " h";
  }
  function bytes(v) {
    if (v == null || !isFinite(v)) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let u = 0;
    while (Math.abs(v) >= 1024 && u < units.length - 1) { v /= 1024; ++u; }
    return plain(+v.toPrecision(3)) + " " + units[u];
  }
  const formats = {"": plain, seconds: seconds, bytes: bytes};
  const format = (unit) => formats[unit || ""] || plain;

  // Tick labels: every split on a linear axis; on a log axis the powers of ten, and also
  // 2 x and 5 x them when the axis spans under two decades.
  function ticks(axis) {
    const f = format(axis.unit);
    if (!axis.log) return (u, splits) => splits.map(f);
    return (u, splits) => {
      const finite = splits.filter((v) => v > 0);
      const decades = finite.length ? Math.log10(finite[finite.length - 1] / finite[0]) : 0;
      return splits.map((v) => {
        const mantissa = +(v / Math.pow(10, Math.floor(Math.log10(v) + 1e-9))).toPrecision(3);
        return mantissa === 1 || (decades < 2 && (mantissa === 2 || mantissa === 5)) ? f(v) : "";
      });
    };
  }

  function lineChart(el, spec) {
    // One table per series: x, y and the band's lo and hi; uPlot.join aligns them on the union
    // of their x values (null where a series has no point).
    const usable = (v, log) => (v == null || !isFinite(v) || (log && v <= 0) ? null : v);
    const tables = [], series = [{label: spec.x.label, value: (u, v) => format(spec.x.unit)(v)}];
    const bands = [], bandEdges = [];  // the band edges' series stay out of the legend
    // On a log axis a band edge at or below 0 (a wide interval) is drawn a decade below the
    // smallest positive value: off the bottom of the data, not a hole in the band.
    const positives = spec.series.flatMap((s) => [].concat(s.y, s.lo || [], s.hi || []))
                                 .filter((v) => v != null && isFinite(v) && v > 0);
    const floor = positives.length ? positives.reduce((a, b) => Math.min(a, b)) / 10 : null;
    const bandValue = (v) => (spec.y.log && v != null && isFinite(v) && v <= 0 ? floor : usable(v, spec.y.log));
    spec.series.forEach((s, i) => {
      const colour = palette[i % palette.length];
      const keep = s.x.map((x, k) => usable(x, spec.x.log) !== null);
      const column = (values) => values.filter((_, k) => keep[k]).map((v) => usable(v, spec.y.log));
      const table = [s.x.filter((_, k) => keep[k]), column(s.y)];
      const value = (u, v) => format(spec.y.unit)(v);
      const line = {label: s.name, stroke: colour, width: 1.5, value: value, spanGaps: true};
      if (s.markers) {
        line.paths = () => null;
        line.points = {show: true, size: 7, fill: colour};
      }
      series.push(line);
      if (s.lo && s.hi && s.lo.length === s.x.length) {
        const edgeColumn = (values) => values.filter((_, k) => keep[k]).map(bandValue);
        table.push(edgeColumn(s.lo), edgeColumn(s.hi));
        const edge = {stroke: colour + "66", width: 0.5, value: value, spanGaps: true,
                      points: {show: false}};
        series.push(Object.assign({label: s.name + " (low)"}, edge),
                    Object.assign({label: s.name + " (high)"}, edge));
        const low = series.length - 2;
        bands.push({series: [low + 1, low], fill: colour + "22"});
        bandEdges.push(low, low + 1);
      }
      tables.push(table);
    });
    if (tables.length === 0) throw new Error("no series");
    const data = uPlot.join(tables);
    const width = Math.max(320, Math.min(el.clientWidth || 900, 960));
    // A flat linear series (a fraction that stays 0) gets a range around its value, not
    // uPlot's default [0, 100].
    const flat = (u, min, max) => (min === max ? [min === 0 ? 0 : min - Math.abs(min) / 2, min === 0 ? 1 : max + Math.abs(max) / 2]
                                              : uPlot.rangeNum(min, max, 0.1, true));
    const scale = (axis) => (axis.log ? {distr: 3, log: 10} : {});
    const axis = (a) => ({label: a.label, values: ticks(a), size: 60});
    const options = {
      title: spec.title, width: width, height: 280,
      scales: {x: Object.assign({time: false}, scale(spec.x)), y: spec.y.log ? scale(spec.y) : {range: flat}},
      axes: [axis(spec.x), axis(spec.y)],
      series: series, bands: bands,
      cursor: {drag: {x: true, y: true, uni: 40}},  // drag to zoom, double-click to reset
    };
    const plot = new uPlot(options, data, el);
    const rows = plot.root.querySelectorAll(".u-legend .u-series");
    bandEdges.forEach((i) => { if (rows[i]) rows[i].style.display = "none"; });
  }

  // viridis at 5 stops, interpolated linearly; t in [0, 1].
  const viridis = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  function colour(t) {
    const x = Math.min(Math.max(t, 0), 1) * (viridis.length - 1), i = Math.min(Math.floor(x), viridis.length - 2);
    const f = x - i, a = viridis[i], b = viridis[i + 1];
    return "rgb(" + a.map((c, k) => Math.round(c + f * (b[k] - c))).join(",") + ")";
  }

  // A (rows, cols) grid of log10 |value| (null for 0) whose cells each cover `cell` x `cell`
  // entries of a (size, size) matrix, with the parameter tensors' [begin, end) ranges of it.
  function heatmap(el, spec) {
    const side = Math.max(240, Math.min(480, 4 * Math.max(spec.rows, spec.cols)));
    const cw = side / spec.cols, ch = side / spec.rows, margin = 4;
    const title = document.createElement("div");
    title.className = "u-title";
    title.textContent = spec.title;
    const canvas = document.createElement("canvas");
    canvas.width = side + 2 * margin;
    canvas.height = side + 2 * margin;
    const ctx = canvas.getContext("2d");
    const span = spec.max > spec.min ? spec.max - spec.min : 1;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (let r = 0; r < spec.rows; ++r) {
      for (let c = 0; c < spec.cols; ++c) {
        const v = spec.values[r * spec.cols + c];
        ctx.fillStyle = v == null ? "#000" : colour((v - spec.min) / span);
        ctx.fillRect(margin + c * cw, margin + r * ch, Math.ceil(cw), Math.ceil(ch));
      }
    }
    // Tensor boundaries, in matrix index units scaled to the canvas.
    const px = side / spec.size;
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 1;
    spec.tensors.slice(1).forEach((t) => {
      const at = margin + t.begin * px;
      ctx.beginPath();
      ctx.moveTo(at, margin); ctx.lineTo(at, margin + side);
      ctx.moveTo(margin, at); ctx.lineTo(margin + side, at);
      ctx.stroke();
    });
    const tensorAt = (index) => spec.tensors.find((t) => index >= t.begin && index < t.end);
    const describe = (cellIndex) => {
      const first = cellIndex * spec.cell, last = Math.min(first + spec.cell, spec.size) - 1;
      const t = tensorAt(first);
      const local = (i) => i - (t ? t.begin : 0);
      const range = first === last ? String(local(first)) : local(first) + "–" + local(last);
      return (t ? t.name : "?") + " [" + range + "]";
    };
    const tip = document.createElement("div");
    tip.className = "heatmap-tip";
    tip.textContent = "hover a cell";
    canvas.addEventListener("mousemove", (e) => {
      const box = canvas.getBoundingClientRect();
      const c = Math.floor((e.clientX - box.left - margin) / cw), r = Math.floor((e.clientY - box.top - margin) / ch);
      if (r < 0 || c < 0 || r >= spec.rows || c >= spec.cols) return;
      const v = spec.values[r * spec.cols + c];
      tip.textContent = "row " + describe(r) + ", column " + describe(c) + ": " + spec.label + " = " +
                        (v == null ? "0 (log -inf)" : plain(v) + " (" + plain(Math.pow(10, v)) + ")");
    });
    const bar = document.createElement("div");
    bar.className = "heatmap-scale";
    bar.innerHTML = "<span></span><i></i><span></span>";
    bar.children[0].textContent = spec.label + " " + plain(spec.min);
    bar.children[1].style.background = "linear-gradient(to right," + [0, 0.25, 0.5, 0.75, 1].map(colour).join(",") + ")";
    bar.children[2].textContent = plain(spec.max);
    const names = document.createElement("div");
    names.className = "heatmap-tensors";
    names.textContent = "tensors (white lines): " + spec.tensors.map((t) => t.name).join(", ");
    el.append(title, canvas, bar, tip, names);
  }

  function render() {
    let rendered = 0, failed = 0;
    document.querySelectorAll("div.chart").forEach((el) => {
      try {
        const spec = JSON.parse(el.nextElementSibling.textContent);
        (spec.type === "heatmap" ? heatmap : lineChart)(el, spec);
        el.dataset.rendered = "1";
        ++rendered;
      } catch (error) {
        el.dataset.error = String(error);
        el.textContent = "chart not drawn: " + error;
        console.error("chart not drawn:", error);
        ++failed;
      }
    });
    document.body.dataset.charts = rendered;
    document.body.dataset.chartErrors = failed;
  }
  render();
})();
