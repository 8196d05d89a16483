// Copyable command lines (bot/hub/modules.py): a read-only field selects its whole text when
// focused, and a "Copy" button beside it puts the text on the clipboard. Without JavaScript the
// field is still there to select by hand.
document.querySelectorAll("input.copy").forEach(function (field) {
  field.addEventListener("focus", function () { field.select(); });
  if (!navigator.clipboard) { return; }
  var button = document.createElement("button");
  button.type = "button";
  button.textContent = "Copy";
  button.setAttribute("aria-label", "Copy: " + field.value);
  button.addEventListener("click", function () {
    navigator.clipboard.writeText(field.value).then(function () { button.textContent = "Copied"; });
  });
  field.insertAdjacentElement("afterend", button);
});
