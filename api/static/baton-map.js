/* Baton's maps (一张图), with Leaflet served from Baton's own static files (/static/vendor/leaflet/, installed from
   its npm package at build time): never a CDN, and nothing from the network at run time but Baton's own API and,
   where the city set one (BATON_MAP_TILE_URL), its tile server.

   - [data-map="layers"] (the /map page): the district boundaries (or the city's tiles) under the layers of
     GET /api/map/layers, each a toggle in Leaflet's layer control; a popup says what a feature is.
   - [data-picker] (pages/_location.html: a task form's location field, the office's open-incident form, the duty
     desk's event record sheet): a small map under the place; a click puts the point in the form's latitude and
     longitude inputs (ids in data-lat and data-lon, else the picker's name + "_lat" and "_lon"), which stay as
     they are (typed, or filled by "use my position"). Without script the map's box stays hidden and the inputs
     work as before.
   Served from 'self'; every text shown is set as text, never as markup (but the layer control's names, escaped). */
(function () {
  "use strict";

  var CITY_CENTRE = [30.25, 120.17]; // Hangzhou, the demo city: only while the boundaries are not there
  var NARROW = 600;

  function text(value, lang) {
    if (value === null || value === undefined) { return ""; }
    if (typeof value === "object") { return value[lang] || value.zh || value.en || ""; }
    return String(value);
  }

  function escapeHtml(value) {
    return String(value).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }[c];
    });
  }

  function element(tag, className, content) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (content !== undefined && content !== null) { node.textContent = content; }
    return node;
  }

  function json(url) {
    return fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(url + ": " + response.status); }
        return response.json();
      });
  }

  /* The base layer: the city's own tiles when set, else its district boundaries (drawn, no tiles). Calls
     `done(bounds)` with the city's extent when it is known. */
  function base(map, el, done) {
    var tiles = el.getAttribute("data-tiles");
    var lang = el.getAttribute("data-lang") || "zh";
    if (tiles) {
      L.tileLayer(tiles, { attribution: el.getAttribute("data-attribution") || "", maxZoom: 19 }).addTo(map);
      done(null);
      return;
    }
    json(el.getAttribute("data-boundaries-url") || "/api/map/boundaries").then(function (data) {
      var layer = L.geoJSON(data, {
        interactive: true,
        style: function () {
          return { color: "#7a8794", weight: 1, fillColor: "#eef1f4", fillOpacity: 0.7, className: "map-boundary" };
        },
        onEachFeature: function (feature, item) {
          var p = feature.properties || {};
          item.bindTooltip(lang === "en" ? (p.name_en || p.name) : p.name, { sticky: true });
        }
      }).addTo(map);
      layer.bringToBack();
      done(layer.getBounds());
    }).catch(function () { done(null); });
  }

  function newMap(el, options) {
    var map = L.map(el, Object.assign({ zoomControl: true, attributionControl: !!el.getAttribute("data-tiles"),
                                        zoomSnap: 0.5 }, options || {}));
    map.setView(CITY_CENTRE, 9);
    return map;
  }

  /* -- the /map page ---------------------------------------------------------------------------------------- */

  function colourOf(layer, feature) {
    var colours = { blue: "#1e63d6", yellow: "#e0b400", orange: "#f07800", red: "#d62020" };
    var own = feature.properties && feature.properties.colour;
    return colours[own] || own || layer.colour || "#555555";
  }

  function row(list, label, value) {
    if (value === null || value === undefined || value === "") { return; }
    list.appendChild(element("dt", null, label));
    list.appendChild(element("dd", null, value));
  }

  function popup(el, layer, feature) {
    var p = feature.properties || {};
    var lang = el.getAttribute("data-lang") || "zh";
    var words = JSON.parse(el.getAttribute("data-words") || "{}");
    var label = function (name) { return el.getAttribute("data-label-" + name) || name; };
    var box = element("div", "map-popup");
    box.setAttribute("data-layer", layer.key);
    var list = element("dl", "map-popup-facts");
    var link = null;
    var own = null;
    if (layer.key === "incidents") {
      box.appendChild(element("strong", null, p.code + " · " + p.title));
      row(list, label("level"), (words.levels || {})[p.level] || p.level);
      row(list, label("stage"), (words.stages || {})[p.stage] || p.stage);
      row(list, label("place"), p.place);
      if (p.drill) { row(list, label("drill"), "✓"); }
      link = p.id;
    } else if (layer.key === "warning_areas") {
      box.appendChild(element("strong", null, text(p.headline, lang) || p.code));
      row(list, label("place"), text(p.area, lang));
      row(list, label("expires"), text(p.expires, lang)); // in the city's time, worded by Baton as every popup's
      if (p.exercise) { row(list, label("exercise"), "✓"); }
      link = p.incident_id;
    } else if (layer.key === "task_locations") {
      box.appendChild(element("strong", null, text(p.label, lang) + (p.place ? "：" + p.place : "")));
      row(list, label("department"), text(p.department_name, lang));
      box.appendChild(element("div", "map-popup-sub", p.code + " · " + text(p.title, lang)));
      link = p.incident_id;
    } else {
      // A layer another domain registered: its `name` (or `title`), then its `rows` of [label, value], and a link
      // to its own page (`url`, a path on this site) or to its incident.
      box.appendChild(element("strong", null, text(p.name || p.title || layer.title, lang)));
      (p.rows || []).forEach(function (pair) { row(list, text(pair[0], lang), text(pair[1], lang)); });
      if (p.incident_id) { link = p.incident_id; }
      if (typeof p.url === "string" && /^\/(?![\/\\])/.test(p.url)) { own = p.url; }
    }
    if (list.childNodes.length) { box.appendChild(list); }
    var pattern = el.getAttribute("data-incident-url");
    if (own) {
      var to = element("a", "map-popup-link", label("open") + " →");
      to.href = own;
      box.appendChild(to);
    } else if (link && pattern) {
      var a = element("a", "map-popup-link", label("open") + " →");
      a.href = pattern.replace("{id}", encodeURIComponent(link));
      box.appendChild(a);
    }
    return box;
  }

  function layersMap(el) {
    var status = document.getElementById("map-status");
    var lang = el.getAttribute("data-lang") || "zh";
    el.hidden = false;
    if (status) { status.textContent = status.getAttribute("data-loading") || ""; }
    var map = newMap(el);
    var city = null;
    var found = L.latLngBounds([]);
    var counts = {};
    var pending = 2;

    function fit() {
      pending -= 1;
      if (pending > 0) { return; }
      // The first view is set at once, not animated: "loaded" then means drawn where it stays (a zoom still
      // animating had the warning area measured at 20 px wide by the browser test on a loaded machine).
      if (found.isValid()) {
        map.fitBounds(found, { padding: [30, 30], maxZoom: 13, animate: false });
      } else if (city) {
        map.fitBounds(city, { animate: false });
      }
      el.setAttribute("data-loaded", "1");
    }

    base(map, el, function (bounds) { city = bounds; fit(); });

    json(el.getAttribute("data-layers-url") || "/api/map/layers").then(function (data) {
      var overlays = {};
      var summary = [];
      (data.layers || []).forEach(function (layer) {
        var cls = "map-f map-layer-" + layer.key;
        var group = L.geoJSON(layer.data, {
          pointToLayer: function (feature, latlng) {
            var colour = colourOf(layer, feature);
            if (feature.properties && feature.properties.radius_m) {
              return L.circle(latlng, { radius: feature.properties.radius_m, color: colour, weight: 2,
                                        fillOpacity: 0.2, className: cls });
            }
            return L.circleMarker(latlng, { radius: 8, color: "#ffffff", weight: 2, fillColor: colour,
                                            fillOpacity: 0.95, className: cls });
          },
          style: function (feature) {
            // Points keep what pointToLayer gave them (Leaflet applies this to every vector layer).
            if (feature.geometry && feature.geometry.type === "Point") { return {}; }
            return { color: colourOf(layer, feature), weight: 2, fillOpacity: 0.2, className: cls };
          },
          onEachFeature: function (feature, item) {
            item.bindPopup(function () { return popup(el, layer, feature); });
          }
        });
        var n = (layer.data.features || []).length;
        counts[layer.key] = n;
        group.eachLayer(function (item) {
          var radius = item.feature && item.feature.properties && item.feature.properties.radius_m;
          found.extend(radius ? item.getLatLng().toBounds(radius * 2)
                              : (item.getLatLng ? item.getLatLng() : item.getBounds()));
        });
        if (layer.shown !== false) { group.addTo(map); }
        var title = text(layer.title, lang);
        overlays["<span class=\"map-swatch map-swatch-" + escapeHtml(layer.key) + "\" data-colour=\"" +
                 escapeHtml(layer.colour) + "\"></span>" + escapeHtml(title) + " <span class=\"map-count\">(" + n +
                 ")</span>"] = group;
        summary.push(title + " " + n);
      });
      var control = L.control.layers(null, overlays, { collapsed: window.innerWidth < NARROW }).addTo(map);
      var swatches = control.getContainer().querySelectorAll(".map-swatch");
      for (var i = 0; i < swatches.length; i++) {
        swatches[i].style.backgroundColor = swatches[i].getAttribute("data-colour");
      }
      L.control.scale({ imperial: false }).addTo(map);
      el.setAttribute("data-counts", JSON.stringify(counts));
      if (status) { status.textContent = summary.join(" · "); }
      fit();
    }).catch(function () {
      if (status) { status.textContent = status.getAttribute("data-failed") || ""; }
      el.setAttribute("data-loaded", "failed");
    });
  }

  /* -- a location field's picker ----------------------------------------------------------------------------- */

  function picker(el) {
    var name = el.getAttribute("data-picker");
    var lat = document.getElementById(el.getAttribute("data-lat") || name + "_lat");
    var lon = document.getElementById(el.getAttribute("data-lon") || name + "_lon");
    if (!lat || !lon) { return; }
    var box = document.getElementById(name + "_pick");
    if (box) { box.hidden = false; }
    el.hidden = false;
    var hint = document.getElementById(name + "_pick_hint");
    if (hint) { hint.hidden = false; }
    var map = newMap(el, { scrollWheelZoom: false });
    var marker = null;

    function typed() {
      var a = parseFloat(lat.value), b = parseFloat(lon.value);
      return isFinite(a) && isFinite(b) && Math.abs(a) <= 90 && Math.abs(b) <= 180 ? L.latLng(a, b) : null;
    }

    function put(latlng) {
      if (!marker) {
        marker = L.circleMarker(latlng, { radius: 8, color: "#ffffff", weight: 2, fillColor: "#d62020",
                                          fillOpacity: 0.95, className: "map-pick" }).addTo(map);
      } else {
        marker.setLatLng(latlng);
      }
    }

    map.on("click", function (event) {
      var point = event.latlng.wrap();
      lat.value = point.lat.toFixed(6);
      lon.value = point.lng.toFixed(6);
      put(point);
      el.setAttribute("data-picked", lat.value + "," + lon.value);
    });

    function follow() {
      var point = typed();
      if (point) { put(point); map.setView(point, Math.max(map.getZoom(), 14)); }
    }
    lat.addEventListener("change", follow);
    lon.addEventListener("change", follow);

    // Where to look first: the point typed, else the incident's place (`data-near`), else the whole city.
    var near = (el.getAttribute("data-near") || "").split(",").map(parseFloat);
    base(map, el, function (bounds) {
      var point = typed();
      if (point) {
        put(point);
        map.setView(point, 14);
      } else if (near.length === 2 && isFinite(near[0]) && isFinite(near[1])) {
        map.setView(near, 13);
      } else if (bounds) {
        map.fitBounds(bounds, { animate: false });
      }
      el.setAttribute("data-loaded", "1");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (typeof L === "undefined") { return; } // Leaflet not installed: the page works without its map
    var maps = document.querySelectorAll("[data-map=\"layers\"]");
    for (var i = 0; i < maps.length; i++) { layersMap(maps[i]); }
    var pickers = document.querySelectorAll("[data-picker]");
    for (var j = 0; j < pickers.length; j++) { picker(pickers[j]); }
  });
})();
