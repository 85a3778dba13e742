// My reminders: status, edit, snooze, delete.

import { api, query } from "../api.js";
import { flash, requireUser, session } from "../app.js";
import { busy, confirmButton, field, formValues, h, replace, showErrors } from "../dom.js";
import { formatLocal, isoToWall, viewerZone } from "../time.js";
import { emailsOf } from "./event.js";

const SNOOZES = [["10", "10 minutes"], ["60", "1 hour"], ["1440", "1 day"], ["10080", "1 week"]];
const titles = new Map(); // event id -> its title (or a note that it is gone)

async function titleOf(eventId) {
  if (!titles.has(eventId)) {
    titles.set(eventId, api.get(`/events/${encodeURIComponent(eventId)}`, { auth: false })
      .then((e) => e.title, () => "(an event that no longer exists)"));
  }
  return titles.get(eventId);
}

function editForm(reminder, done) {
  const emails = emailsOf(session.user);
  if (!emails.includes(reminder.email)) emails.push(reminder.email);
  const form = h("form", { class: "edit-reminder", novalidate: true },
    field("remind_at", `Remind at (your time, ${viewerZone})`, {
      kind: "datetime-local", value: isoToWall(reminder.remind_at, viewerZone), required: true,
    }),
    field("email", "Send to", { kind: "select", options: emails.map((e) => [e, e]), value: reminder.email }),
    field("subject", "Subject", { value: reminder.subject, maxlength: "200" }),
    field("message", "Note", { kind: "textarea", rows: "2", value: reminder.message || "" }),
    h("div", { class: "actions" },
      h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", class: "secondary", onclick: () => done(null) }, "Close")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const values = formValues(form);
    const changes = { email: values.email, subject: values.subject, message: values.message || null };
    if (values.remind_at !== isoToWall(reminder.remind_at, viewerZone)) { // a new time: absolute from now on
      changes.remind_at = values.remind_at ? new Date(values.remind_at).toISOString() : "";
    }
    await busy(form, async () => {
      try {
        done(await api.patch(`/notifications/${encodeURIComponent(reminder.id)}`, changes));
      } catch (error) {
        showErrors(form, error);
      }
    });
  });
  return form;
}

function reminderItem(reminder, refresh) {
  const item = h("li", { class: "reminder", dataset: { id: reminder.id, status: reminder.status } });
  const title = h("a", { href: `#/events/${encodeURIComponent(reminder.event_id)}` }, "…");
  titleOf(reminder.event_id).then((text) => { title.textContent = text; });
  const panel = h("div", { class: "panel" });
  const snooze = h("form", { class: "snooze inline", novalidate: true },
    field("minutes", "Snooze for", { kind: "select", options: SNOOZES, value: "60" }),
    h("button", { type: "submit", class: "secondary" }, "Snooze"));
  snooze.addEventListener("submit", async (e) => {
    e.preventDefault();
    await busy(snooze, async () => {
      try {
        const changed = await api.post(`/notifications/${encodeURIComponent(reminder.id)}/snooze`,
          { minutes: Number(formValues(snooze).minutes) });
        flash(`Snoozed: now at ${formatLocal(changed.remind_at)}.`);
        refresh();
      } catch (error) {
        showErrors(snooze, error);
      }
    });
  });
  const editable = reminder.status === "scheduled";
  const edit = h("button", {
    type: "button", class: "secondary", hidden: !editable,
    onclick: () => replace(panel, editForm(reminder, (changed) => {
      panel.replaceChildren();
      if (changed) { flash("Reminder saved."); refresh(); } else edit.focus();
    })),
  }, "Edit");
  const remove = confirmButton("Delete", "Yes, delete it", async () => {
    await api.delete(`/notifications/${encodeURIComponent(reminder.id)}`);
    flash("Reminder deleted.");
    refresh();
  });
  const canSnooze = reminder.status === "scheduled" || reminder.status === "sent";
  replace(item,
    h("h2", {}, title),
    h("p", {}, h("span", { class: `badge ${reminder.status}` }, reminder.status), " ",
      h("time", { datetime: reminder.remind_at }, formatLocal(reminder.remind_at)), ` to ${reminder.email}`),
    reminder.sent_at ? h("p", { class: "hint" }, `Sent ${formatLocal(reminder.sent_at)}`) : null,
    reminder.message ? h("p", { class: "note" }, reminder.message) : null,
    h("div", { class: "actions" }, canSnooze ? snooze : null, edit, remove),
    panel);
  return item;
}

export async function render(main) {
  if (!requireUser()) return;
  const filter = field("status", "Show", {
    kind: "select", value: "",
    options: [["", "All"], ["scheduled", "Scheduled"], ["sent", "Sent"], ["failed", "Failed"], ["cancelled", "Cancelled"]],
  });
  const list = h("ul", { class: "reminder-list", "aria-label": "Reminders" });
  const status = h("p", { role: "status" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "More reminders");
  let cursor = null;

  async function load(first) {
    const params = { status: filter.querySelector("select").value, limit: 50, cursor: first ? null : cursor };
    const page = await api.get(`/notifications${query(params)}`);
    if (first) list.replaceChildren();
    for (const reminder of page.items) list.append(reminderItem(reminder, () => load(true)));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    status.textContent = list.children.length ? "" : "No reminders yet: find an event and press “Remind me”.";
  }
  filter.querySelector("select").addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));
  replace(main, h("h1", {}, "My reminders"), h("form", { class: "inline", onsubmit: (e) => e.preventDefault() }, filter),
    status, list, more);
  await load(true);
}
