// The admin's event editor: create, edit, cancel and delete an event, with each
// validation message beside its field. Times are typed in the event's time zone.

import { api } from "../api.js";
import { flash, go, requireUser, session } from "../app.js";
import { busy, clearErrors, confirmButton, field, formValues, h, replace, showErrors } from "../dom.js";
import { createMap } from "../map.js";
import { isoToWall, movedBy, viewerZone, wallToIso, zones } from "../time.js";

// "Repeats" on a new event: the RRULE presets of API.md's subset, with a count.
export const REPEATS = [["", "Does not repeat"], ["DAILY", "Daily"], ["WEEKLY", "Weekly"],
  ["MONTHLY", "Monthly (same day of the month)"]];

// The form's values -> the API's writable fields. Empty text is sent as typed, so
// the server names what is missing; an empty place (no name, no coordinates) is null.
// A new event that repeats gets a `recurrence` (the count as typed: the server checks it).
export function eventBody(values) {
  const zone = values.timezone.trim() || "UTC";
  const number = (text) => (text.trim() === "" ? text : Number(text));
  const hasPlace = [values.place_name, values.place_lat, values.place_lng, values.place_address]
    .some((v) => v.trim());
  return {
    title: values.title,
    description: values.description,
    topics: values.topics.split(",").map((t) => t.trim()).filter(Boolean),
    starts_at: wallToIso(values.starts_at, zone),
    ends_at: values.ends_at ? wallToIso(values.ends_at, zone) : null,
    timezone: zone,
    place: hasPlace ? {
      name: values.place_name, address: values.place_address.trim() || null,
      lat: number(values.place_lat), lng: number(values.place_lng),
    } : null,
    organizer: values.organizer.trim() || null,
    ...(values.repeats ? { recurrence: `FREQ=${values.repeats};COUNT=${values.count.trim()}` } : {}),
  };
}

// API field names -> this form's (place.lat is typed in place_lat).
function formDetails(details) {
  const renamed = {};
  for (const [name, messages] of Object.entries(details)) {
    const key = name.startsWith("place.") ? `place_${name.slice(6)}` : name === "recurrence" ? "repeats" : name;
    renamed[key] = [...(renamed[key] || []), ...messages];
  }
  return renamed;
}

function repeatsFields() {
  const count = field("count", "How many times", { kind: "number", value: "4", min: "1", max: "500", hint: "1 to 500 occurrences, the first included" });
  count.hidden = true;
  const repeats = field("repeats", "Repeats", { kind: "select", options: REPEATS, value: "" });
  repeats.querySelector("select").addEventListener("change", (e) => { count.hidden = !e.target.value; });
  return h("fieldset", {}, h("legend", {}, "Repeats (optional)"), repeats, count);
}

// Editing one occurrence changes that one only (API.md); the other button applies the
// same edits to the whole series: say so.
function seriesNote(event) {
  if (!event.series_id) return null;
  return h("p", { class: "hint" }, "This is one occurrence of a series: \u201cSave changes\u201d applies to it only, \u201cSave for the whole series\u201d makes the same changes to every occurrence that has not started.");
}

// The fields of `body` that differ from `before` (both eventBody values).
function changedFields(before, body) {
  return Object.fromEntries(Object.entries(body)
    .filter(([name, value]) => JSON.stringify(value) !== JSON.stringify(before[name])));
}

// PATCH /series/{id}'s body for the edits made to one occurrence (`changed`, from the
// form's `values`): its `starts_at`/`ends_at` are the series' next occurrence's, so a
// move of this one becomes the same wall-clock move of the next one, which every
// occurrence then follows, and a new end keeps this one's new duration.
async function seriesChanges(event, changed, values) {
  if (!("starts_at" in changed) && !changed.ends_at) return changed;
  if (!changed.starts_at && "starts_at" in changed) return changed; // cleared: the server names it
  const { next } = await api.get(`/series/${encodeURIComponent(event.series_id)}`);
  if (!next || next.id === event.id) return changed;
  const zone = values.timezone.trim() || "UTC";
  const startsAt = movedBy(next.starts_at, isoToWall(event.starts_at, event.timezone), values.starts_at, event.timezone, zone);
  const moved = { ...changed };
  if ("starts_at" in changed) moved.starts_at = startsAt;
  if (changed.ends_at) moved.ends_at = movedBy(startsAt, values.starts_at, values.ends_at, zone);
  return moved;
}

export async function render(main, params) {
  if (!requireUser()) return;
  if (session.user.role !== "admin") {
    replace(main, h("h1", {}, "Admins only"), h("p", {}, "This page needs an admin account."));
    return;
  }
  const eventId = params[0];
  const event = eventId ? await api.get(`/events/${encodeURIComponent(eventId)}`) : null;
  const zone = event?.timezone || viewerZone;
  const place = event?.place || {};
  const mapBox = h("div", { class: "map editor-map" });
  const form = h("form", { class: "editor", novalidate: true },
    field("title", "Title", { value: event?.title, required: true, maxlength: "120" }),
    field("description", "Description", { kind: "textarea", rows: "5", value: event?.description }),
    field("topics", "Topics", { value: event?.topics.join(", "), hint: "1 to 10, comma-separated", required: true }),
    field("timezone", "Time zone", { value: zone, list: "zones", autocomplete: "off", hint: "An IANA name, e.g. Europe/Berlin" }),
    h("datalist", { id: "zones" }, ["UTC", ...zones()].map((z) => h("option", { value: z }))),
    field("starts_at", "Starts (in the event's time zone)", {
      kind: "datetime-local", value: isoToWall(event?.starts_at, zone), required: true,
    }),
    field("ends_at", "Ends (optional)", { kind: "datetime-local", value: isoToWall(event?.ends_at, zone) }),
    h("fieldset", {}, h("legend", {}, "Place (optional)"),
      field("place_name", "Name", { value: place.name }),
      field("place_address", "Address", { value: place.address }),
      h("div", { class: "pair" },
        field("place_lat", "Latitude", { value: place.lat, inputmode: "decimal", hint: "-90 to 90" }),
        field("place_lng", "Longitude", { value: place.lng, inputmode: "decimal", hint: "-180 to 180" })),
      mapBox),
    field("organizer", "Organizer (optional)", { value: event?.organizer }),
    event ? seriesNote(event) : repeatsFields(),
    h("div", { class: "actions" }, h("button", { type: "submit" }, event ? "Save changes" : "Create event"),
      event?.series_id ? [" ", h("button", { type: "submit", class: "secondary", value: "series" }, "Save for the whole series")] : null));
  const before = eventBody(formValues(form));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors(form);
    const values = formValues(form);
    const body = eventBody(values);
    const wholeSeries = e.submitter?.value === "series";
    await busy(form, async () => {
      try {
        if (wholeSeries) {
          const changed = changedFields(before, body);
          if (!Object.keys(changed).length) {
            flash("Nothing to save: change a field first.");
            return;
          }
          await api.patch(`/series/${encodeURIComponent(event.series_id)}`, await seriesChanges(event, changed, values));
          flash("Series saved: every occurrence that has not started has the changes.");
          go(`/events/${encodeURIComponent(event.id)}`);
          return;
        }
        const saved = event
          ? await api.patch(`/events/${encodeURIComponent(event.id)}`, body)
          : await api.post("/events", body);
        flash(event ? "Event saved." : "Event created.");
        go(`/events/${encodeURIComponent(saved.id)}`);
      } catch (error) {
        error.details = formDetails(error.details || {});
        showErrors(form, error);
      }
    });
  });

  const lifecycle = event ? h("section", { "aria-labelledby": "lifecycle-heading" },
    h("h2", { id: "lifecycle-heading" }, "Cancel or delete"),
    h("p", { class: "hint" }, "Cancelling keeps the event, marked cancelled; its reminders are cancelled and their owners told. Deleting removes it."),
    h("div", { class: "actions" },
      event.status === "cancelled" ? h("span", { class: "badge cancelled" }, "Cancelled")
        : confirmButton("Cancel event", "Yes, cancel it", async () => {
          await api.patch(`/events/${encodeURIComponent(event.id)}`, { status: "cancelled" });
          flash("Event cancelled.");
          go(`/events/${encodeURIComponent(event.id)}`);
        }),
      " ",
      confirmButton("Delete event", "Yes, delete it", async () => {
        await api.delete(`/events/${encodeURIComponent(event.id)}`);
        flash("Event deleted.");
        go("/");
      }))) : null;

  // an occurrence: the series' upcoming occurrences go at once (DELETE /series/{id})
  const wholeSeries = event?.series_id ? h("section", { "aria-labelledby": "series-heading" },
    h("h2", { id: "series-heading" }, "The whole series"),
    h("p", { class: "hint" }, "Deletes every occurrence that has not started; each reminder's owner gets one email for the series."),
    h("div", { class: "actions" },
      confirmButton("Delete the series", "Yes, delete its upcoming occurrences", async () => {
        await api.delete(`/series/${encodeURIComponent(event.series_id)}`);
        flash("Series deleted: its upcoming occurrences are gone.");
        go("/");
      }))) : null;

  replace(main, h("h1", {}, event ? `Edit: ${event.title}` : "New event"), form, lifecycle, wholeSeries);

  // a click on the map fills the coordinates (they can be typed as well)
  const known = event?.place ? [event.place.lat, event.place.lng] : null;
  const map = await createMap(mapBox, { label: "Map: click to set the place's coordinates", center: known || [20, 0], zoom: known ? 13 : 2 });
  const pin = window.L.circleMarker(known || [0, 0], { radius: 8, color: "#0b3d91", fillColor: "#d9480f", fillOpacity: 0.9 });
  if (known) pin.addTo(map);
  map.on("click", (e) => {
    const lng = window.L.Util.wrapNum(e.latlng.lng, [-180, 180], true);
    form.elements.place_lat.value = e.latlng.lat.toFixed(5);
    form.elements.place_lng.value = lng.toFixed(5);
    pin.setLatLng(e.latlng).addTo(map);
  });
}
