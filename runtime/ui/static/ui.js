// Channelkit dashboard: times in the reader's time zone, confirmations, the time zone
// offset of the filter form, and a banner while live updates fail. No framework: htmx
// does the requests; this file only formats and asks.
(function () {
  "use strict";
  var absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

  function relative(date) {
    var seconds = Math.round((Date.now() - date.getTime()) / 1000);
    if (seconds < 1) return "just now";
    if (seconds < 90) return seconds + " s ago";
    return Math.round(seconds / 60) + " min ago";
  }

  function formatTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (node) {
      var date = new Date(node.getAttribute("datetime"));
      if (isNaN(date.getTime())) return;
      node.title = date.toISOString();
      node.textContent = node.hasAttribute("data-relative") ? relative(date) : absolute.format(date);
    });
    root.querySelectorAll("input[data-timezone-offset]").forEach(function (input) {
      input.value = String(new Date().getTimezoneOffset());
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      return;
    }
    // Sent: its buttons wait for the answer (no second submission by a double click).
    form.querySelectorAll("button[type=submit]").forEach(function (button) {
      button.setAttribute("aria-busy", "true");
      window.setTimeout(function () { button.disabled = true; }, 0);
    });
  });

  // Live pages: the server names the channels whose jobs changed (GET /ui/live, from
  // the job events); the parts that listen for "live" (hx-trigger) refresh then.
  function followChanges() {
    var page = document.querySelector("[data-live]");
    if (!page || !window.EventSource || !window.htmx) return;
    var source = new EventSource(page.getAttribute("data-live"));
    source.addEventListener("change", function () { window.htmx.trigger(document.body, "live"); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    formatTimes(document);
    followChanges();
  });
  // Back to a page kept in the browser's cache: its buttons work again.
  window.addEventListener("pageshow", function () {
    document.querySelectorAll("button[aria-busy]").forEach(function (button) {
      button.removeAttribute("aria-busy");
      button.disabled = false;
    });
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    formatTimes(event.target);
    var banner = document.getElementById("live-problem");
    if (banner) banner.hidden = true;
  });

  function liveProblem(text) {
    var banner = document.getElementById("live-problem");
    if (!banner) return;
    banner.textContent = text;
    banner.hidden = false;
  }
  document.addEventListener("htmx:responseError", function (event) {
    var status = event.detail.xhr.status;
    liveProblem(status === 503
      ? "Live updates paused: Redis is unavailable. Retrying…"
      : "Live updates failed (HTTP " + status + "). Retrying…");
  });
  document.addEventListener("htmx:sendError", function () {
    liveProblem("Live updates paused: the server does not answer. Retrying…");
  });
})();
