// Small progressive enhancements; every page works without them.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  // Actions ask before they are sent (the server still checks role, CSRF and state).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // Editing a dead letter's payload ticks "replay edited" (when the role allows it).
  for (const area of document.querySelectorAll("textarea[data-original]")) {
    const original = area.value;
    area.addEventListener("input", () => {
      const box = area.form.querySelector("input[name=edited]");
      if (box && !box.disabled) box.checked = area.value !== original;
    });
  }
  for (const link of document.querySelectorAll("a[data-back]")) {
    link.addEventListener("click", (event) => { event.preventDefault(); history.back(); });
  }
  // Filters submit on change of the status select.
  const status = document.querySelector("#filters select[name=status]");
  if (status) status.addEventListener("change", () => status.form.submit());
});
