/* The live monitor's charts of the last hour (throughput and queue depth), drawn with the
 * vendored uPlot from each snapshot's "history". Colours come from the admin's CSS variables,
 * so the charts follow its light and dark themes (redrawn when the theme changes). */
(function () {
  "use strict";

  if (typeof window.uPlot !== "function") {
    return; // the chart library did not load: the figures and tables still work
  }
  var charts = {};
  var last = null;

  function cssVar(name, fallback) {
    var value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return value || fallback;
  }

  function palette() {
    return {
      fg: cssVar("--body-fg", "#333"),
      grid: cssVar("--hairline-color", "#e8e8e8"),
      ok: "#2e9e5b",
      bad: "#d9534f",
      ready: "#3b82c4",
      delayed: "#c98a1b",
      running: "#7b5cc4",
    };
  }

  function width(node) {
    return Math.max(280, Math.floor(node.getBoundingClientRect().width || 420));
  }

  function options(node, series, colors) {
    var axis = { stroke: colors.fg, grid: { stroke: colors.grid, width: 1 }, ticks: { stroke: colors.grid } };
    return {
      width: width(node),
      height: 180,
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } } },
      axes: [axis, Object.assign({}, axis, { size: 50 })],
      series: [{}].concat(series),
    };
  }

  function specs(colors) {
    return {
      throughput: {
        keys: ["succeeded", "failed"],
        series: [
          { label: "succeeded/s", stroke: colors.ok, width: 2, fill: colors.ok + "22" },
          { label: "failed/s", stroke: colors.bad, width: 2 },
        ],
      },
      depth: {
        keys: ["ready", "delayed", "running"],
        series: [
          { label: "ready", stroke: colors.ready, width: 2, points: { show: true, size: 4 } },
          { label: "delayed", stroke: colors.delayed, width: 2, points: { show: true, size: 4 } },
          { label: "running", stroke: colors.running, width: 2, points: { show: true, size: 4 } },
        ],
      },
    };
  }

  function dataOf(history, keys) {
    return [history.t].concat(keys.map(function (key) { return history[key]; }));
  }

  function drawn(node, history, keys) {
    // What the page reports it drew (tests and curious users): points and the latest values.
    node.dataset.points = String(history.t.length);
    node.dataset.sum = String(history[keys[0]].reduce(function (a, b) { return a + (b || 0); }, 0));
    node.dataset.latest = keys.map(function (key) {
      var values = history[key];
      return key + "=" + values[values.length - 1];
    }).join(" ");
  }

  function build(history) {
    var colors = palette();
    var all = specs(colors);
    Object.keys(all).forEach(function (name) {
      var node = document.getElementById("repid-chart-" + name);
      if (!node) {
        return;
      }
      if (charts[name]) {
        charts[name].destroy();
      }
      node.replaceChildren();
      var spec = all[name];
      charts[name] = new window.uPlot(options(node, spec.series, colors), dataOf(history, spec.keys), node);
      charts[name].repidKeys = spec.keys;
      drawn(node, history, spec.keys);
    });
  }

  function update(history) {
    if (!history || !history.t) {
      return;
    }
    last = history;
    if (!charts.throughput) {
      build(history);
      return;
    }
    Object.keys(charts).forEach(function (name) {
      var chart = charts[name];
      chart.setData(dataOf(history, chart.repidKeys));
      drawn(document.getElementById("repid-chart-" + name), history, chart.repidKeys);
    });
  }

  function redraw() {
    if (last) {
      build(last); // new colours: build() replaces each chart
    }
  }

  // The admin's theme toggle sets data-theme on <html>; the system setting changes media.
  new MutationObserver(redraw).observe(document.documentElement, { attributes: true, attributeFilter: ["data-theme"] });
  if (window.matchMedia) {
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redraw);
  }
  window.addEventListener("resize", function () {
    Object.keys(charts).forEach(function (name) {
      var node = document.getElementById("repid-chart-" + name);
      charts[name].setSize({ width: width(node), height: 180 });
    });
  });

  window.repidCharts = { update: update };
})();
