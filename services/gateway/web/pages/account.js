// My account: emails (add, remove, make primary), email choices, password, delete the account.

import { api } from "../api.js";
import { flash, go, requireUser, session } from "../app.js";
import { busy, confirmButton, field, formValues, h, replace, showErrors } from "../dom.js";
import { logIn } from "./auth.js";

function emailSection(rerender) {
  const user = session.user;
  const act = async (work, message) => {
    try {
      await work();
      await session.refresh();
      flash(message);
    } catch (error) {
      flash(error.message, "error");
    }
    rerender();
  };
  const rows = [h("li", {}, h("span", { class: "email" }, user.email), " ", h("span", { class: "badge" }, "primary"))];
  for (const email of user.secondary_emails) {
    rows.push(h("li", {}, h("span", { class: "email" }, email), " ",
      h("button", {
        type: "button", class: "secondary", "aria-label": `Make ${email} the primary email`,
        onclick: () => act(() => api.patch("/users/me", { email }), `${email} is now your primary email.`),
      }, "Make primary"), " ",
      h("button", {
        type: "button", class: "secondary", "aria-label": `Remove ${email}`,
        onclick: () => act(() => api.delete(`/users/me/emails/${encodeURIComponent(email)}`), `${email} removed.`),
      }, "Remove")));
  }
  const add = h("form", { class: "inline", novalidate: true },
    field("email", "Add an email", { kind: "email", autocomplete: "email", required: true }),
    h("button", { type: "submit" }, "Add"));
  add.addEventListener("submit", async (e) => {
    e.preventDefault();
    const { email } = formValues(add);
    await busy(add, async () => {
      try {
        await api.post("/users/me/emails", { email });
        await session.refresh();
        flash(`${email} added.`);
        rerender();
      } catch (error) {
        showErrors(add, error);
      }
    });
  });
  return h("section", { "aria-labelledby": "emails-heading" },
    h("h2", { id: "emails-heading" }, "Emails"),
    h("p", { class: "hint" }, "Reminders can go to any of these. Making another email primary drops the old primary."),
    h("ul", { class: "emails" }, rows), add);
}

function passwordSection() {
  const form = h("form", { class: "narrow", novalidate: true },
    field("current_password", "Current password", { kind: "password", autocomplete: "current-password", required: true }),
    field("new_password", "New password", { kind: "password", autocomplete: "new-password", required: true, hint: "At least 8 characters" }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Change password")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const values = formValues(form);
    await busy(form, async () => {
      try {
        // every older token stops working: sign in again with the new password
        await api.post("/users/me/password", values, { keepSession: true });
        await logIn(session.user.username, values.new_password);
        form.reset();
        flash("Password changed. Other sessions are signed out.");
      } catch (error) {
        if (error.status === 401) error.details = { current_password: ["This is not your current password."] };
        showErrors(form, error);
      }
    });
  });
  return h("section", { "aria-labelledby": "password-heading" },
    h("h2", { id: "password-heading" }, "Password"), form);
}

function calendarSection() {
  const shown = h("div", { class: "feed-url" });
  const make = h("button", { type: "button", class: "secondary" }, "Make my calendar feed URL");
  make.addEventListener("click", async () => {
    make.disabled = true;
    try {
      const { url } = await api.post("/users/me/calendar");
      replace(shown, field("feed_url", "Your feed URL (keep it secret: it needs no password)", {
        value: url, readonly: true, onfocus: (e) => e.target.select(),
      }));
      make.textContent = "Make a new URL (the old one stops working)";
    } catch (error) {
      flash(error.message, "error");
    } finally {
      make.disabled = false;
    }
  });
  return h("section", { "aria-labelledby": "calendar-heading" },
    h("h2", { id: "calendar-heading" }, "Calendar feed"),
    h("p", { class: "hint" }, "Every event you have a reminder for, with an alarm per reminder, for your calendar app to subscribe to."),
    make, shown);
}

function emailChoicesSection() {
  const box = field("cancellation_notices", "Email me when an event I set reminders for is cancelled",
    { kind: "checkbox", disabled: true });
  const input = box.querySelector("input");
  api.get("/users/me/email-preferences").then((choices) => {
    input.checked = choices.cancellation_notices;
    input.disabled = false;
  }, (error) => flash(error.message, "error"));
  input.addEventListener("change", async () => {
    input.disabled = true;
    try {
      const choices = await api.patch("/users/me/email-preferences", { cancellation_notices: input.checked });
      input.checked = choices.cancellation_notices;
      flash(choices.cancellation_notices ? "You will be told when an event is cancelled." : "No more emails about cancelled events.");
    } catch (error) {
      input.checked = !input.checked;
      flash(error.message, "error");
    } finally {
      input.disabled = false;
    }
  });
  return h("section", { "aria-labelledby": "choices-heading" },
    h("h2", { id: "choices-heading" }, "Email notices"),
    h("p", { class: "hint" }, "Reminders of a cancelled event are cancelled either way."), box);
}

export function describeQuery(query) {
  const parts = [];
  if (query.topic) parts.push(`topics: ${query.topic.join(", ")}`);
  if (query.q) parts.push(`words: ${query.q}`);
  if (query.near) parts.push(`within ${query.radius_km} km of ${query.near}`);
  if (query.within_days) parts.push(`in the next ${query.within_days} days`);
  return parts.length ? parts.join(" · ") : "every new event";
}

function savedSearchesSection() {
  const list = h("ul", { class: "saved-searches", "aria-label": "Saved searches" });
  const status = h("p", { class: "hint", role: "status" }, "Loading…");
  const load = async () => {
    try {
      const { items } = await api.get("/saved-searches?limit=100");
      status.textContent = items.length ? "" : "No saved searches yet: save one from Discover.";
      replace(list, items.map((saved) => h("li", { class: "saved-search" },
        h("span", { class: "name" }, saved.name), " ",
        h("span", { class: "badge" }, saved.frequency), " ",
        h("span", { class: "query" }, describeQuery(saved.query)), " ",
        h("span", { class: "hint" }, `to ${saved.email}`), " ",
        h("button", {
          type: "button", class: "secondary", "aria-label": `Delete the saved search ${saved.name}`,
          onclick: async () => {
            try {
              await api.delete(`/saved-searches/${encodeURIComponent(saved.id)}`);
              flash(`"${saved.name}" deleted: no more alerts from it.`);
            } catch (error) {
              flash(error.message, "error");
            }
            load();
          },
        }, "Delete"))));
    } catch (error) {
      status.textContent = error.message;
    }
  };
  load();
  return h("section", { "aria-labelledby": "saved-heading" },
    h("h2", { id: "saved-heading" }, "Saved searches"),
    h("p", { class: "hint" }, "New events matching these are emailed to your primary email (at once, or once a day). Save a search from Discover."),
    status, list);
}

function deleteSection() {
  return h("section", { "aria-labelledby": "delete-heading" },
    h("h2", { id: "delete-heading" }, "Delete account"),
    h("p", {}, "Deletes the account and all its reminders. This cannot be undone."),
    confirmButton("Delete my account", "Yes, delete my account", async () => {
      try {
        await api.delete("/users/me");
      } catch (error) {
        flash(error.message, "error");
        return;
      }
      session.signOut();
      flash("Your account is deleted.");
      go("/");
    }));
}

export async function render(main) {
  if (!requireUser()) return;
  const rerender = () => render(main);
  const user = session.user;
  replace(main, h("h1", {}, "My account"),
    h("dl", { class: "details" },
      h("dt", {}, "Username"), h("dd", {}, user.username),
      h("dt", {}, "Role"), h("dd", {}, user.role),
      h("dt", {}, "Member since"), h("dd", {}, new Date(user.created_at).toLocaleDateString())),
    emailSection(rerender), emailChoicesSection(), passwordSection(), calendarSection(),
    savedSearchesSection(),
    deleteSection());
}
