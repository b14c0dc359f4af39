/* Baton pages: refresh the parts of a page marked data-poll-url (progress, inbox) every few seconds.
   Served from 'self' (the Content-Security-Policy allows no inline script). */
(function () {
  "use strict";

  function poll(el) {
    var url = el.getAttribute("data-poll-url");
    var seconds = parseInt(el.getAttribute("data-poll-seconds") || "5", 10);
    var delay = seconds * 1000;

    function again(ms) { window.setTimeout(tick, ms); }

    function tick() {
      if (document.hidden) { again(delay); return; }
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "text/html" } })
        .then(function (response) {
          // Anything but a fragment (the login page after the session ended, an error) stops the refresh.
          if (!response.ok || response.headers.get("X-Baton-Fragment") !== "1") {
            el.classList.add("poll-stopped");
            return null;
          }
          return response.text();
        })
        .then(function (html) {
          if (html === null) { return; }
          el.innerHTML = html;
          el.setAttribute("data-polled", String(Date.now()));
          again(delay);
        })
        .catch(function () { again(delay * 2); });
    }

    again(delay);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var found = document.querySelectorAll("[data-poll-url]");
    for (var i = 0; i < found.length; i++) { poll(found[i]); }
  });
})();
