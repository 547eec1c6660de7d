// mailroom admin page: a Copy button beside each DNS value to publish. Progressive
// enhancement: without JavaScript the value still selects whole on one click (CSS
// user-select: all), and where the clipboard is refused the button selects it instead.
"use strict";
document.querySelectorAll("code.copy").forEach(function (code) {
  var button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.textContent = "Copy";
  button.setAttribute("aria-label", "Copy " + (code.getAttribute("data-name") || "the value"));
  var status = document.createElement("span");
  status.setAttribute("role", "status");
  status.className = "muted";
  function select() {
    var range = document.createRange();
    range.selectNodeContents(code);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    status.textContent = " Selected: press Ctrl+C (or Cmd+C) to copy.";
  }
  button.addEventListener("click", function () {
    if (!navigator.clipboard) {
      select();
      return;
    }
    navigator.clipboard.writeText(code.textContent).then(function () {
      status.textContent = " Copied.";
    }, select);
  });
  code.insertAdjacentElement("afterend", status);
  code.insertAdjacentElement("afterend", button);
});
