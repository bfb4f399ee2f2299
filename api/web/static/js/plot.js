// A small SVG line chart (loss terms, noise scale, PSNR against the step): a few hundred points at most,
// which SVG draws fast enough, so no chart library is vendored.

import { fmtNumber } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1f6fb2", "#c2410c", "#15803d", "#7e22ce", "#b91c1c", "#0f766e", "#a16207"];

function svg(tag, attrs = {}, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text !== undefined) n.textContent = text;
  return n;
}

// series: {name: [[x, y], ...]}; options: {title, xLabel, log, empty (the text without data)}
export function linePlot(container, series, { title = "", xLabel = "step", log = false, empty = "no data yet" } = {}) {
  const W = 480, H = 220, L = 58, R = 10, T = 24, B = 34;
  const names = Object.keys(series).filter((k) => series[k].length);
  const pts = names.flatMap((k) => series[k]).filter(([, y]) => Number.isFinite(y) && (!log || y > 0));
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "plot" });
  root.append(svg("title", {}, title), svg("text", { x: L, y: 15, class: "plot-title" }, title));
  if (!pts.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "plot-empty" }, empty));
    container.replaceChildren(root);
    return;
  }
  const ty = (y) => (log ? Math.log10(y) : y);
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = [Math.min(...pts.map((p) => ty(p[1]))), Math.max(...pts.map((p) => ty(p[1])))];
  if (x1 === x0) x1 = x0 + 1;
  if (y1 === y0) (y0 -= 0.5), (y1 += 0.5);
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (ty(y) - y0) / (y1 - y0)) * (H - T - B);
  root.append(svg("rect", { x: L, y: T, width: W - L - R, height: H - T - B, class: "plot-frame" }));
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4;
    const y = T + (1 - i / 4) * (H - T - B);
    root.append(svg("text", { x: L - 4, y: y + 4, "text-anchor": "end", class: "plot-tick" }, fmtNumber(log ? 10 ** v : v, 3)));
    const x = x0 + ((x1 - x0) * i) / 4;
    root.append(svg("text", { x: sx(x), y: H - B + 14, "text-anchor": "middle", class: "plot-tick" }, fmtNumber(Math.round(x))));
  }
  root.append(svg("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "plot-tick" }, xLabel));
  let legendX = W - R; // legend entries on the title line, right-aligned, so they never cover a curve
  names.forEach((name, i) => {
    const shown = series[name].filter(([, y]) => Number.isFinite(y) && (!log || y > 0));
    const d = shown.map(([x, y], j) => `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
    const color = COLORS[i % COLORS.length];
    root.append(svg("path", { d, fill: "none", stroke: color, "stroke-width": 1.8 }));
    // A short job may report only a point or two: a line of one point draws nothing, so mark them.
    if (shown.length < 20) {
      for (const [x, y] of shown) root.append(svg("circle", { cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 2.5, fill: color }));
    }
    root.append(svg("text", { x: legendX, y: 15, "text-anchor": "end", fill: color, class: "plot-legend" }, name));
    legendX -= 7 * name.length + 12;
  });
  container.replaceChildren(root);
}
