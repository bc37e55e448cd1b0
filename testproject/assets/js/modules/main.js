// Entry point of the project's ES modules (loaded with type="module").
import { qs, qsa, on } from "./dom.js";
import * as format from "./util/format.js";

export { qs, qsa };

export function init(root = document) {
  for (const el of qsa("[data-price]", root)) {
    el.textContent = format.price(Number(el.dataset.price));
  }
  on(qs("#load-chart", root), "click", async () => {
    const { drawChart } = await import("./lazy/chart.js");
    drawChart(qs("#chart", root));
  });
}

init();
