// An event's page: details, its start in its own time zone and the viewer's, the
// map, "remind me", and an .ics file.

import { api } from "../api.js";
import { flash, session } from "../app.js";
import { busy, field, formValues, h, replace, showErrors } from "../dom.js";
import { icsFile } from "../ics.js";
import { createMap, eventMarker } from "../map.js";
import { formatIn, viewerZone } from "../time.js";

export const REMIND_CHOICES = [
  ["60", "1 hour before"],
  ["1440", "1 day before"],
  ["at", "At a time I choose"],
];

export function emailsOf(user) {
  return [user.email, ...(user.secondary_emails || [])];
}

function startLines(event) {
  const lines = [h("dt", {}, "Starts"),
    h("dd", {}, h("time", { datetime: event.starts_at }, formatIn(event.starts_at, event.timezone)),
      ` (${event.timezone})`)];
  if (event.timezone !== viewerZone) {
    lines.push(h("dt", {}, "Your time"),
      h("dd", {}, formatIn(event.starts_at, viewerZone), ` (${viewerZone})`));
  }
  if (event.ends_at) {
    lines.push(h("dt", {}, "Ends"), h("dd", {}, formatIn(event.ends_at, event.timezone)));
  }
  return lines;
}

function download(event) {
  const blob = new Blob([icsFile([event])], { type: "text/calendar" });
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: `event-${event.id}.ics` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function remindForm(event) {
  if (!session.user) {
    return h("p", {}, h("a", { href: `#/signin?next=${encodeURIComponent(`/events/${event.id}`)}` }, "Sign in"),
      " to get a reminder by email.");
  }
  if (event.status === "cancelled") return h("p", {}, "This event is cancelled: no reminders.");
  const emails = emailsOf(session.user).map((e) => [e, e]);
  const at = field("remind_at", "Remind me at (your time)", { kind: "datetime-local", step: "1" });
  at.hidden = true;
  const when = field("when", "When", { kind: "select", options: REMIND_CHOICES, value: "60" });
  when.querySelector("select").addEventListener("change", (e) => { at.hidden = e.target.value !== "at"; });
  const form = h("form", { class: "remind", novalidate: true },
    when, at,
    field("email", "Send to", { kind: "select", options: emails, value: session.user.email }),
    field("message", "Note for the email (optional)", { kind: "textarea", rows: "2", maxlength: "2000" }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Remind me")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const values = formValues(form);
    const body = { event_id: event.id, email: values.email };
    if (values.when === "at") {
      body.remind_at = values.remind_at ? new Date(values.remind_at).toISOString() : "";
    } else {
      body.before_minutes = Number(values.when);
    }
    if (values.message.trim()) body.message = values.message;
    await busy(form, async () => {
      try {
        const reminder = await api.post("/notifications", body);
        form.reset();
        at.hidden = true;
        flash(`Reminder set for ${formatIn(reminder.remind_at, viewerZone)}, to ${reminder.email}.`);
      } catch (error) {
        if (values.when !== "at" && error.details.before_minutes) {
          error.details.when = error.details.before_minutes;
          delete error.details.before_minutes;
        }
        showErrors(form, error);
      }
    });
  });
  return form;
}

export async function render(main, [eventId]) {
  let event;
  try {
    event = await api.get(`/events/${encodeURIComponent(eventId)}`, { auth: false });
  } catch (error) {
    if (error.status !== 404) throw error;
    replace(main, h("h1", {}, "No such event"), h("p", {}, h("a", { href: "#/" }, "Back to discover")));
    return;
  }
  const details = h("dl", { class: "details" }, startLines(event),
    event.place ? [h("dt", {}, "Place"), h("dd", {}, event.place.name,
      event.place.address ? [h("br"), event.place.address] : null)] : null,
    event.organizer ? [h("dt", {}, "Organizer"), h("dd", {}, event.organizer)] : null,
    h("dt", {}, "Topics"), h("dd", {}, h("ul", { class: "topics" }, event.topics.map((t) => h("li", {}, t)))));
  const mapBox = event.place ? h("div", { class: "map event-map" }) : null;
  const admin = session.user?.role === "admin"
    ? h("p", {}, h("a", { class: "button secondary", href: `#/events/${encodeURIComponent(event.id)}/edit` }, "Edit event"))
    : null;
  replace(main,
    h("article", { class: "event-page" },
      h("h1", {}, event.title),
      event.status === "cancelled" ? h("p", { class: "badge cancelled" }, "Cancelled") : null,
      details,
      event.description ? h("p", { class: "description" }, event.description) : null,
      event.series_id ? h("p", { class: "series" }, "Part of a series: ",
        h("a", { href: `#/?series_id=${encodeURIComponent(event.series_id)}` }, "all its occurrences")) : null,
      mapBox,
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => download(event) }, "Add to calendar (.ics)")),
      admin,
      h("section", { "aria-labelledby": "remind-heading" },
        h("h2", { id: "remind-heading" }, "Remind me"), remindForm(event))));
  if (mapBox) {
    const map = await createMap(mapBox, { label: `Map: ${event.place.name}`, center: [event.place.lat, event.place.lng], zoom: 13 });
    eventMarker(event, { highlight: true }).addTo(map);
  }
}
