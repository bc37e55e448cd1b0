/* Tiny polyfills for old browsers; a classic (non-module) script. */
(function () {
  "use strict";

  if (!Element.prototype.matches) {
    Element.prototype.matches =
      Element.prototype.msMatchesSelector ||
      Element.prototype.webkitMatchesSelector;
  }

  if (!Element.prototype.closest) {
    Element.prototype.closest = function (selector) {
      var node = this;
      while (node && node.nodeType === 1) {
        if (node.matches(selector)) {
          return node;
        }
        node = node.parentElement;
      }
      return null;
    };
  }
})();
