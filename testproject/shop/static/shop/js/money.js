// Money helpers shared by the shop and the dashboard.
const formatters = new Map();

export function formatMoney(cents, currency = "EUR", locale = "en-IE") {
  const key = `${locale}:${currency}`;
  if (!formatters.has(key)) {
    formatters.set(key, new Intl.NumberFormat(locale, { style: "currency", currency }));
  }
  return formatters.get(key).format(cents / 100);
}

export function sum(items) {
  return items.reduce((total, item) => total + item.cents * item.quantity, 0);
}
