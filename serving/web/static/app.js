// Retain CX workspace: small progressive enhancements only; every page works without script.
(function () {
  "use strict";
  // "/" focuses the customer search, as in most list tools.
  document.addEventListener("keydown", function (e) {
    var search = document.getElementById("search");
    if (e.key === "/" && search && document.activeElement !== search &&
        !/^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName)) {
      e.preventDefault();
      search.focus();
    }
  });
  // The resolution code is needed only when the case is being closed.
  var to = document.getElementById("to");
  var code = document.getElementById("resolution-code");
  if (to && code) {
    var closing = ["resolved", "unreachable", "declined"];
    var sync = function () {
      var needed = closing.indexOf(to.value) >= 0;
      code.required = needed;
      code.disabled = !needed;
    };
    to.addEventListener("change", sync);
    sync();
  }
})();
