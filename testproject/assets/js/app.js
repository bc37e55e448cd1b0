/* testproject app bundle (built from src/app/*.js; do not edit) */
(function () {
"use strict";
function setupMenu(toggle, menu) {
  toggle.addEventListener("click", function () {
    var open = menu.getAttribute("aria-hidden") !== "false";
    menu.setAttribute("aria-hidden", open ? "false" : "true");
    toggle.setAttribute("aria-expanded", open ? "true" : "false");
  });
}
function dismissNotices(root) {
  var buttons = root.querySelectorAll("[data-dismiss]");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].addEventListener("click", function (event) {
      event.currentTarget.closest(".notice").remove();
    });
  }
}
document.addEventListener("DOMContentLoaded", function () {
  var toggle = document.querySelector("#menu-toggle");
  var menu = document.querySelector("#menu");
  if (toggle && menu) {
    setupMenu(toggle, menu);
  }
  dismissNotices(document);
});
})();
//# sourceMappingURL=app.js.map
