/* Comment form behaviour for blog posts; a classic script that expects
   vendor/minilib/minilib.min.js to be loaded first. */
(function (minilib) {
  "use strict";

  minilib.ready(function () {
    var form = document.querySelector("#comment-form");
    if (!form) {
      return;
    }
    var counter = form.querySelector(".comment-length");
    var textarea = form.querySelector("textarea");
    textarea.addEventListener(
      "input",
      minilib.debounce(function () {
        counter.textContent = textarea.value.length + " / 2000";
      }, 150)
    );
  });
})(window.minilib);
