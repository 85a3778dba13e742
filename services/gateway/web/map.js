// Leaflet (vendored, window.L once loadLeaflet() has run). Tiles come from the
// server's MAP_TILE_URL when it is set; otherwise the map is a plain surface with a
// grid every 10 degrees, the markers and the search circle (no outside requests).

import { h } from "./dom.js";

const tileUrl = document.querySelector('meta[name="eventpost-map-tiles"]')?.content || "";

export function hasTiles() {
  return Boolean(tileUrl);
}

let leaflet = null;

// Leaflet is loaded when the first map is drawn, not by index.html: the list of
// events need not wait for 144 KB of script to be parsed and run.
export function loadLeaflet() {
  leaflet = leaflet || new Promise((resolve, reject) => {
    const script = h("script", { src: "/web/vendor/leaflet/leaflet.js" });
    script.addEventListener("load", () => resolve(window.L));
    script.addEventListener("error", () => { leaflet = null; reject(new Error("The map could not be loaded.")); });
    document.head.append(script);
  });
  return leaflet;
}

// A map in `container` (a promise); `label` names it for screen readers.
export async function createMap(container, { label, center = [20, 0], zoom = 2 } = {}) {
  const L = await loadLeaflet();
  container.setAttribute("role", "region");
  container.setAttribute("aria-label", label || "Map");
  const map = L.map(container, { center, zoom, worldCopyJump: true });
  if (tileUrl) {
    L.tileLayer(tileUrl, {
      maxZoom: 19,
      attribution: "Map data © OpenStreetMap contributors",
    }).addTo(map);
  } else {
    container.classList.add("plain-map");
    const grid = L.layerGroup().addTo(map);
    const style = { color: "#9aa7b4", weight: 1, interactive: false };
    for (let lat = -80; lat <= 80; lat += 10) grid.addLayer(L.polyline([[lat, -540], [lat, 540]], style));
    for (let lng = -540; lng <= 540; lng += 10) grid.addLayer(L.polyline([[-85, lng], [85, lng]], style));
  }
  L.control.scale({ imperial: false }).addTo(map);
  return map;
}

// A marker for an event; its popup links to the event's page (text, not HTML).
export function eventMarker(event, { highlight = false } = {}) {
  const L = window.L;
  const marker = L.circleMarker([event.place.lat, event.place.lng], {
    radius: highlight ? 9 : 7, color: "#0b3d91", weight: 2,
    fillColor: highlight ? "#d9480f" : "#1c7ed6", fillOpacity: 0.9,
    bubblingMouseEvents: false,
  });
  const popup = h("div", {},
    h("a", { href: `#/events/${encodeURIComponent(event.id)}` }, event.title),
    h("br"), event.place.name || "");
  marker.bindPopup(popup);
  marker.bindTooltip(h("span", {}, event.title)); // an element: Leaflet puts strings in as HTML
  return marker;
}
