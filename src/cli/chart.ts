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
