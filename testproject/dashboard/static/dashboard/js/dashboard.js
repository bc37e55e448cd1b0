// Dashboard page script, an ES module that reuses the shop's money helpers.
import { formatMoney } from "../../shop/js/money.js";

const REGIONS_URL = new URL("../data/regions.json", import.meta.url);

async function loadRegions() {
  const response = await fetch(REGIONS_URL);
  return response.ok ? response.json() : [];
}

export async function renderRevenue(table) {
  const regions = await loadRegions();
  for (const region of regions) {
    const row = table.insertRow();
    row.insertCell().textContent = region.name;
    row.insertCell().textContent = formatMoney(region.revenueCents);
  }
}

const table = document.querySelector("#revenue");
if (table) {
  renderRevenue(table);
}
