// handover admin console: a few lines of plain JavaScript, none needed to use the pages.
// 1. An error summary takes the focus, so that keyboard and screen-reader users hear what went wrong.
// 2. A region with data-refresh reloads itself from the server: every data-every seconds, or every 2 s while
//    it has data-pending (a request whose events are not processed yet).
// 3. A form with data-busy shows that the server is working once it is sent (a large preview or undo takes a
//    while): its buttons are marked busy, a second submit is ignored, and the text is announced in a status region.
// 4. Enter in the transfer form's user look-up runs the look-up (without it, Enter previews the transfer).
(function () {
  "use strict";
  var summary = document.querySelector("[data-error-summary]");
  if (summary) { summary.focus(); }

  function schedule(region) {
    var every = Number(region.getAttribute("data-every"));
    if (!every && !region.hasAttribute("data-pending")) { return; }
    window.setTimeout(function () { refresh(region); }, (every || 2) * 1000);
  }

  function refresh(region) {
    fetch(region.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        var replacement = region.id ? fresh.getElementById(region.id) : null;
        if (replacement) {
          region.replaceWith(replacement);
          schedule(replacement);
        } else if (region.getAttribute("data-every")) {
          region.innerHTML = fresh.body.innerHTML;
          schedule(region);
        }
      })
      .catch(function () { window.setTimeout(function () { refresh(region); }, 10000); });
  }

  document.querySelectorAll("[data-refresh]").forEach(schedule);

  document.querySelectorAll("form[data-busy]").forEach(function (form) {
    var status = document.createElement("p");
    status.className = "busy-status";
    status.setAttribute("role", "status");
    form.appendChild(status);
    form.addEventListener("submit", function (event) {
      if (form.getAttribute("aria-busy") === "true") { event.preventDefault(); return; }
      form.setAttribute("aria-busy", "true");
      form.querySelectorAll("button").forEach(function (button) { button.setAttribute("aria-disabled", "true"); });
      status.textContent = form.getAttribute("data-busy");
    });
  });
  window.addEventListener("pageshow", function (event) {  // back to a page kept in the history cache: ready again
    if (!event.persisted) { return; }
    document.querySelectorAll("form[aria-busy]").forEach(function (form) {
      form.removeAttribute("aria-busy");
      form.querySelectorAll("button").forEach(function (button) { button.removeAttribute("aria-disabled"); });
      form.querySelector(".busy-status").textContent = "";
    });
  });
  var lookup = document.getElementById("lookup"), find = document.getElementById("find");
  if (lookup && find) {
    lookup.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { event.preventDefault(); find.click(); }
    });
  }
}());
