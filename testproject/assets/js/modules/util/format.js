// Re-exports the number helpers and adds a couple of its own.
export { clamp, round } from "./numbers.js";
import { round } from "./numbers.js";

export function price(value, currency = "EUR") {
  return `${round(value, 2).toFixed(2)} ${currency}`;
}

export function percent(part, total) {
  return total ? `${round((100 * part) / total, 1)}%` : "n/a";
}
