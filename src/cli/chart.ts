import sharp from 'sharp';
import type { PrPoint } from '../knn/index.js';

/**
 * Draws the eval figure (confusion matrix beside the precision-recall curve) as SVG and lets
 * sharp (librsvg) render it to PNG: no plotting dependency for one picture.
 */
export async function renderEvalChart(options: {
  title: string;
  labels: string[];
  counts: number[][];
  curve: PrPoint[];
  operatingPoint: { precision: number; recall: number; threshold: number };
}): Promise<Buffer> {
  const { labels, counts, curve, operatingPoint } = options;
  const cell = Math.max(28, Math.min(60, Math.floor(420 / Math.max(1, labels.length))));
  const left = 120, top = 70;
  const matrixSize = cell * labels.length;
  const plotX = left + Math.max(matrixSize, 320) + 90, plotSize = 360;
  const width = plotX + plotSize + 40;
  const height = Math.max(top + matrixSize + 120, top + plotSize + 80);
  const rowMax = counts.map((row) => Math.max(1, row.reduce((a, b) => a + b, 0)));
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

  const parts: string[] = [];
  parts.push(`<rect width="100%" height="100%" fill="white"/>`);
  parts.push(`<text x="20" y="30" font-size="18" font-family="sans-serif">${esc(options.title)}</text>`);
  parts.push(`<text x="${left}" y="${top - 28}" font-size="13" font-family="sans-serif">Confusion matrix (rows: true, columns: predicted)</text>`);
  labels.forEach((label, i) => {
    parts.push(`<text x="${left - 6}" y="${top + i * cell + cell / 2 + 4}" font-size="11" text-anchor="end" font-family="sans-serif">${esc(label)}</text>`);
    parts.push(
      `<text x="${left + i * cell + cell / 2}" y="${top + matrixSize + 14}" font-size="11" text-anchor="end" font-family="sans-serif" transform="rotate(-45 ${left + i * cell + cell / 2} ${top + matrixSize + 14})">${esc(label)}</text>`,
    );
    counts[i]!.forEach((count, j) => {
      const shade = Math.round(255 - (200 * count) / rowMax[i]!);
      parts.push(`<rect x="${left + j * cell}" y="${top + i * cell}" width="${cell}" height="${cell}" fill="rgb(${shade},${shade},255)" stroke="#ccc"/>`);
      parts.push(
        `<text x="${left + j * cell + cell / 2}" y="${top + i * cell + cell / 2 + 4}" font-size="11" text-anchor="middle" font-family="sans-serif">${count}</text>`,
      );
    });
  });

  const px = (recall: number) => plotX + recall * plotSize;
  const py = (precision: number) => top + (1 - precision) * plotSize;
  parts.push(`<text x="${plotX}" y="${top - 28}" font-size="13" font-family="sans-serif">Precision-recall, anomaly vs good</text>`);
  parts.push(`<rect x="${plotX}" y="${top}" width="${plotSize}" height="${plotSize}" fill="none" stroke="black"/>`);
  for (const t of [0, 0.25, 0.5, 0.75, 1]) {
    parts.push(`<text x="${px(t)}" y="${top + plotSize + 16}" font-size="10" text-anchor="middle" font-family="sans-serif">${t}</text>`);
    parts.push(`<text x="${plotX - 6}" y="${py(t) + 4}" font-size="10" text-anchor="end" font-family="sans-serif">${t}</text>`);
  }
  parts.push(`<text x="${plotX + plotSize / 2}" y="${top + plotSize + 34}" font-size="12" text-anchor="middle" font-family="sans-serif">recall</text>`);
  parts.push(
    `<text x="${plotX - 36}" y="${top + plotSize / 2}" font-size="12" text-anchor="middle" font-family="sans-serif" transform="rotate(-90 ${plotX - 36} ${top + plotSize / 2})">precision</text>`,
  );
  if (curve.length > 0) {
    const points = curve.map((p) => `${px(p.recall).toFixed(1)},${py(p.precision).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${points}" fill="none" stroke="#1f5fbf" stroke-width="2"/>`);
  }
  parts.push(`<circle cx="${px(operatingPoint.recall)}" cy="${py(operatingPoint.precision)}" r="5" fill="#d0342c"/>`);
  parts.push(
    `<text x="${px(operatingPoint.recall) - 8}" y="${py(operatingPoint.precision) + 18}" font-size="11" text-anchor="end" font-family="sans-serif">threshold ${operatingPoint.threshold}</text>`,
  );

  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join('')}</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}

/** One line of a line chart: a name and its values at x = 1, 2, ... */
export interface Series {
  name: string;
  values: number[];
}

/**
 * Line charts side by side (the drift experiment's F1 per window), values in [0, 1], as PNG
 * through sharp like the eval chart.
 */
export async function renderLineCharts(options: { title: string; xLabel: string; yLabel: string; panels: { title: string; series: Series[] }[] }): Promise<Buffer> {
  const colours = ['#444444', '#1f5fbf', '#2e9e44', '#d98c1f', '#d0342c', '#8e44ad', '#16a0a0'];
  const plotW = 420, plotH = 300, top = 70, left = 60, gap = 90, legendH = 20 * Math.max(...options.panels.map((p) => p.series.length));
  const width = left + options.panels.length * (plotW + gap);
  const height = top + plotH + 60 + legendH;
  const esc = (s: string) => s.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const parts: string[] = [`<rect width="100%" height="100%" fill="white"/>`, `<text x="20" y="30" font-size="18" font-family="sans-serif">${esc(options.title)}</text>`];
  options.panels.forEach((panel, p) => {
    const x0 = left + p * (plotW + gap);
    const n = Math.max(...panel.series.map((s) => s.values.length));
    const px = (i: number) => x0 + (n <= 1 ? 0 : (i * plotW) / (n - 1));
    const py = (v: number) => top + (1 - v) * plotH;
    parts.push(`<text x="${x0}" y="${top - 14}" font-size="13" font-family="sans-serif">${esc(panel.title)}</text>`);
    parts.push(`<rect x="${x0}" y="${top}" width="${plotW}" height="${plotH}" fill="none" stroke="black"/>`);
    for (const t of [0, 0.25, 0.5, 0.75, 1]) {
      parts.push(`<line x1="${x0}" x2="${x0 + plotW}" y1="${py(t)}" y2="${py(t)}" stroke="#eee"/>`);
      parts.push(`<text x="${x0 - 6}" y="${py(t) + 4}" font-size="10" text-anchor="end" font-family="sans-serif">${t}</text>`);
    }
    for (let i = 0; i < n; i++) parts.push(`<text x="${px(i)}" y="${top + plotH + 16}" font-size="10" text-anchor="middle" font-family="sans-serif">${i + 1}</text>`);
    parts.push(`<text x="${x0 + plotW / 2}" y="${top + plotH + 34}" font-size="12" text-anchor="middle" font-family="sans-serif">${esc(options.xLabel)}</text>`);
    parts.push(`<text x="${x0 - 40}" y="${top + plotH / 2}" font-size="12" text-anchor="middle" font-family="sans-serif" transform="rotate(-90 ${x0 - 40} ${top + plotH / 2})">${esc(options.yLabel)}</text>`);
    panel.series.forEach((s, i) => {
      const colour = colours[i % colours.length]!;
      parts.push(`<polyline points="${s.values.map((v, j) => `${px(j).toFixed(1)},${py(v).toFixed(1)}`).join(' ')}" fill="none" stroke="${colour}" stroke-width="2"/>`);
      const ly = top + plotH + 52 + i * 20;
      parts.push(`<line x1="${x0}" x2="${x0 + 24}" y1="${ly - 4}" y2="${ly - 4}" stroke="${colour}" stroke-width="3"/>`);
      parts.push(`<text x="${x0 + 30}" y="${ly}" font-size="12" font-family="sans-serif">${esc(s.name)}</text>`);
    });
  });
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${parts.join('')}</svg>`;
  return sharp(Buffer.from(svg)).png().toBuffer();
}
