// The agenda's toolbar shows the chosen day, view, professional or service as soon as it changes (the "Show" button
// does the same without script). One open quick-action menu at a time.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("agenda-filters");
  if (form) {
    form.addEventListener("change", (event) => {
      if (event.target.matches("select, input[type=date]") && (event.target.type !== "date" || event.target.value)) {
        form.requestSubmit();
      }
    });
  }
  document.querySelectorAll(".agenda-appt__actions").forEach((menu) => {
    menu.addEventListener("toggle", () => {
      if (!menu.open) return;
      document.querySelectorAll(".agenda-appt__actions[open]").forEach((other) => {
        if (other !== menu) other.open = false;
      });
    });
  });
});
