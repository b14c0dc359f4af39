/* Baton pages: refresh the parts of a page marked data-poll-url (progress, inbox, the duty screen) every few
   seconds, put the overdue count in the tab's title ("(1) 超时 · …", from data-overdue-title), and fill a location
   field from the device's position.
   Served from 'self' (the Content-Security-Policy allows no inline script). */
(function () {
  "use strict";

  var baseTitle = document.title;

  /* The tab's title carries the overdue count while something is overdue (the duty screen's banner says it). */
  function markTitle() {
    var banner = document.querySelector("[data-overdue-title]");
    document.title = banner ? banner.getAttribute("data-overdue-title") + " · " + baseTitle : baseTitle;
  }

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
          markTitle();
          again(delay);
        })
        .catch(function () { again(delay * 2); });
    }

    again(delay);
  }

  /* A location field's "use my position" button: fills latitude and longitude from the device
     (navigator.geolocation). Without script or a position the button stays hidden and the fields are typed. */
  function locate(button) {
    if (!navigator.geolocation) { return; }
    var name = button.getAttribute("data-locate");
    var lat = document.getElementById(name + "_lat");
    var lon = document.getElementById(name + "_lon");
    var status = document.getElementById(name + "_locate_status");
    if (!lat || !lon) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      button.disabled = true;
      if (status) { status.textContent = "…"; }
      navigator.geolocation.getCurrentPosition(function (position) {
        lat.value = position.coords.latitude.toFixed(6);
        lon.value = position.coords.longitude.toFixed(6);
        lat.dispatchEvent(new Event("change")); // the field's picker map (baton-map.js) follows
        if (status) { status.textContent = "±" + Math.round(position.coords.accuracy) + " m"; }
        button.disabled = false;
      }, function (error) {
        if (status) { status.textContent = error.message || String(error.code); }
        button.disabled = false;
      }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    baseTitle = document.title;
    markTitle();
    var found = document.querySelectorAll("[data-poll-url]");
    for (var i = 0; i < found.length; i++) { poll(found[i]); }
    var buttons = document.querySelectorAll("[data-locate]");
    for (var j = 0; j < buttons.length; j++) { locate(buttons[j]); }
  });
})();
