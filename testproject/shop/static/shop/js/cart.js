// The shopping cart widget, an ES module.
import { formatMoney, sum } from "./money.js";

export class Cart {
  constructor(element) {
    this.element = element;
    this.items = [];
  }

  add(item) {
    const existing = this.items.find((i) => i.sku === item.sku);
    if (existing) {
      existing.quantity += 1;
    } else {
      this.items.push({ ...item, quantity: 1 });
    }
    this.render();
  }

  render() {
    this.element.querySelector(".cart-total").textContent = formatMoney(sum(this.items));
    this.element.dataset.count = String(this.items.length);
  }
}

export default Cart;
