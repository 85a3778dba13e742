// Discover: upcoming events as a list and on a map, filtered by topics, words,
// dates and a place with a radius; more as the reader scrolls (next_cursor).

import { api, query } from "../api.js";
import { flash, session } from "../app.js";
import { busy, clearErrors, field, formValues, h, replace, showErrors } from "../dom.js";
import { createMap, eventMarker } from "../map.js";
import { dayStartIso, formatLocal } from "../time.js";

const PAGE_SIZE = 20;
const FILTERS = ["topic", "q", "from", "to", "near", "radius_km"];
let measured = false;

// The form's values -> GET /events parameters.
export function searchParams(values) {
  const topics = (values.topic || "").split(",").map((t) => t.trim()).filter(Boolean);
  return {
    topic: topics.length ? topics.join(",") : undefined,
    q: values.q?.trim() || undefined,
    from: dayStartIso(values.from) || undefined,
    to: dayStartIso(values.to, 1) || undefined, // the "to" day is included
    near: values.near?.replace(/\s+/g, "") || undefined,
    radius_km: values.near && values.radius_km ? values.radius_km : undefined,
    limit: PAGE_SIZE,
  };
}

// The form's values -> a saved search's query (POST /saved-searches): the same filters;
// the "to" day becomes "the next N days" (a saved search looks ahead from each new event).
export function savedQuery(values) {
  const { topic, q, near, radius_km: radius } = searchParams(values);
  const saved = {};
  if (topic) saved.topic = topic.split(",");
  if (q) saved.q = q;
  if (near) {
    saved.near = near;
    if (radius) saved.radius_km = Number(radius);
  }
  const end = dayStartIso(values.to, 1);
  if (end) {
    const days = Math.ceil((new Date(end) - Date.now()) / 86400000);
    saved.within_days = Math.min(365, Math.max(1, days));
  }
  return saved;
}

// "Save this search": signed-in readers get alerts of new events matching the filters.
function saveSearchForm(filters) {
  const form = h("form", { class: "inline save-search", novalidate: true, "aria-label": "Save this search" },
    field("name", "Name of the saved search", { required: true, autocomplete: "off" }),
    field("frequency", "Alerts", { kind: "select", options: [["instant", "At once, per new event"], ["daily", "One email a day"]] }),
    h("button", { type: "submit" }, "Save this search"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const { name, frequency } = formValues(form);
    await busy(form, async () => {
      try {
        const saved = await api.post("/saved-searches", { name, frequency, query: savedQuery(formValues(filters)) });
        form.reset();
        clearErrors(form);
        flash(`Saved "${saved.name}": new events that match will be emailed to ${saved.email}. See My account.`);
      } catch (error) {
        showErrors(form, error);
      }
    });
  });
  return h("section", { class: "save-search-box", "aria-labelledby": "save-search-heading" },
    h("h2", { id: "save-search-heading" }, "Get alerts of new events like these"), form);
}

function parseNear(text) {
  const [lat, lng] = (text || "").split(",").map(Number);
  return Number.isFinite(lat) && Number.isFinite(lng) && text.includes(",") ? [lat, lng] : null;
}

export function eventSummary(event) {
  const where = event.place ? event.place.name : "No place given";
  const distance = event.distance_km !== undefined ? ` · ${event.distance_km.toFixed(1)} km away` : "";
  return h("article", { class: "event-card" },
    h("h2", {}, h("a", { href: `#/events/${encodeURIComponent(event.id)}` }, event.title)),
    h("p", { class: "when" }, h("time", { datetime: event.starts_at }, formatLocal(event.starts_at))),
    h("p", { class: "where" }, where + distance),
    event.status === "cancelled" ? h("p", { class: "badge cancelled" }, "Cancelled") : null,
    h("ul", { class: "topics", "aria-label": "Topics" }, event.topics.map((t) => h("li", {}, t))));
}

export async function render(main, _params, urlQuery) {
  const initial = Object.fromEntries(FILTERS.map((name) => [name, urlQuery.get(name) || ""]));
  // from an event's page: one series' occurrences (kept until "all events")
  const seriesId = urlQuery.get("series_id") || undefined;
  if (!initial.radius_km) initial.radius_km = "10";

  const form = h("form", { class: "filters", role: "search", "aria-label": "Find events", novalidate: true },
    field("topic", "Topics", { value: initial.topic, hint: "Comma-separated, e.g. jazz, food", autocomplete: "off" }),
    field("q", "Words", { value: initial.q, kind: "search" }),
    field("from", "From", { kind: "date", value: initial.from }),
    field("to", "To", { kind: "date", value: initial.to }),
    field("near", "Near (latitude, longitude)", {
      value: initial.near, hint: "Use your location, or click on the map", inputmode: "decimal",
      autocomplete: "off",
    }),
    field("radius_km", "Radius (km)", { kind: "number", value: initial.radius_km, min: "1", max: "500", step: "any" }),
    h("div", { class: "actions" },
      h("button", { type: "submit" }, "Search"),
      h("button", { type: "button", class: "secondary", onclick: useLocation }, "Use my location"),
      h("button", { type: "button", class: "secondary", onclick: clearPlace }, "Clear place")));

  const status = h("p", { class: "result-status", role: "status", "aria-live": "polite" });
  const list = h("ol", { class: "event-list", "aria-label": "Events" });
  const more = h("button", { type: "button", class: "secondary more", hidden: true }, "More events");
  const feed = h("a", { class: "feed", href: "/events.ics" }, "These results as a calendar (.ics)");
  const mapBox = h("div", { class: "map discover-map" });
  replace(main,
    h("h1", {}, seriesId ? "Occurrences of a series" : "Discover events"),
    seriesId ? h("p", { class: "series" }, "Only this series' occurrences. ", h("a", { href: "#/" }, "All events")) : null,
    form,
    session.user ? saveSearchForm(form) : null,
    h("div", { class: "discover" },
      h("section", { class: "results", "aria-label": "Results" }, status, h("p", { class: "feed-line" }, feed), list, more),
      h("section", { class: "map-column", "aria-label": "Map of the results" }, mapBox)));

  // the map comes when Leaflet has loaded; the list does not wait for it
  let map = null;
  let markers = null;
  let area = null;
  const mapReady = createMap(mapBox, { label: "Map of the events found; click to search near a point" })
    .then((created) => {
      const L = window.L;
      map = created;
      markers = L.layerGroup().addTo(map);
      area = L.layerGroup().addTo(map);
      map.on("click", (e) => {
        form.elements.near.value = `${e.latlng.lat.toFixed(4)},${L.Util.wrapNum(e.latlng.lng, [-180, 180], true).toFixed(4)}`;
        search();
      });
      drawMarkers();
      placeMap();
    });

  let cursor = null;
  let params = null;
  let loading = false;
  let placed = []; // the events found that have a place

  function drawMarkers() {
    if (!map) return;
    markers.clearLayers();
    for (const event of placed) markers.addLayer(eventMarker(event));
  }

  async function load(first) {
    if (loading) return;
    loading = true;
    more.disabled = true;
    try {
      const page = await api.get(`/events${query(first ? params : { ...params, cursor })}`, { auth: false });
      if (first) {
        list.replaceChildren();
        placed = [];
      }
      for (const event of page.items) {
        list.append(h("li", {}, eventSummary(event)));
        if (event.place) placed.push(event);
      }
      drawMarkers();
      cursor = page.next_cursor;
      const { limit: _pageSize, ...filters } = params; // the server's feed: same search, <= 500
      feed.href = `/events.ics${query(filters)}`;
      more.hidden = !cursor;
      const count = list.children.length;
      status.textContent = count ? `${count} event${count === 1 ? "" : "s"}${cursor ? ", more below" : ""}.`
        : "No upcoming events match.";
      if (first) placeMap();
      if (!measured) { // the first page is usable: loadtests/web_first_page.py reads this
        measured = true;
        performance.mark("discover-list-rendered");
      }
    } catch (error) {
      if (error.status === 422) showErrors(form, error);
      else status.textContent = error.message;
    } finally {
      loading = false;
      more.disabled = false;
    }
  }

  function placeMap() {
    if (!map) return;
    const L = window.L;
    const bounds = placed.map((event) => [event.place.lat, event.place.lng]);
    area.clearLayers();
    const near = parseNear(params.near);
    if (near) {
      const circle = L.circle(near, { radius: Number(params.radius_km || 10) * 1000, interactive: false, color: "#d9480f", fill: false });
      area.addLayer(circle);
      map.fitBounds(circle.getBounds(), { maxZoom: 14 });
    } else if (bounds.length) {
      map.fitBounds(bounds, { maxZoom: 12, padding: [20, 20] });
    }
  }

  function search() {
    clearErrors(form);
    const values = formValues(form);
    params = { ...searchParams(values), series_id: seriesId };
    const shown = Object.fromEntries([...FILTERS.map((name) => [name, values[name]]), ["series_id", seriesId]].filter(([, v]) => v));
    if (shown.radius_km === "10" && !shown.near) delete shown.radius_km;
    history.replaceState(null, "", `#/${query(shown)}`);
    load(true);
  }

  function useLocation() {
    if (!navigator.geolocation) {
      status.textContent = "This browser cannot tell where you are; click on the map instead.";
      return;
    }
    status.textContent = "Finding where you are…";
    navigator.geolocation.getCurrentPosition(
      (position) => {
        form.elements.near.value = `${position.coords.latitude.toFixed(4)},${position.coords.longitude.toFixed(4)}`;
        search();
      },
      () => { status.textContent = "Your location is not available; click on the map instead."; },
      { timeout: 10000 });
  }

  function clearPlace() {
    form.elements.near.value = "";
    search();
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); search(); });
  more.addEventListener("click", () => load(false));
  // more as the reader scrolls: the "More events" button loads itself when it shows
  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && cursor && !loading) load(false);
  });
  observer.observe(more);

  params = { ...searchParams(initial), series_id: seriesId };
  await load(true);
  await mapReady;
}
