// Loaded on demand by main.js the first time a chart is requested.
import { clamp } from "../util/numbers.js";

export function drawChart(canvas, values = [3, 7, 4, 9, 6]) {
  if (!canvas) {
    return;
  }
  const ctx = canvas.getContext("2d");
  const max = Math.max(...values);
  const barWidth = canvas.width / values.length;
  values.forEach((value, i) => {
    const height = clamp((value / max) * canvas.height, 1, canvas.height);
    ctx.fillStyle = "#3465a4";
    ctx.fillRect(i * barWidth + 2, canvas.height - height, barWidth - 4, height);
  });
}
