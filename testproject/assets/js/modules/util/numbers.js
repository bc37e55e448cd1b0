export function clamp(value, low, high) {
  return Math.min(Math.max(value, low), high);
}

export function round(value, digits = 0) {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
