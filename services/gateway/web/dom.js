// Building the page. Every text that comes from a user or the API goes in as a text
// node (textContent), never as HTML: there is no innerHTML with data in this app.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let uid = 0;

// A labelled form field with a place for its messages (aria-describedby).
// kind: an <input> type, "textarea" or "select" (options: [[value, text], ...]).
export function field(name, label, { kind = "text", value, options, hint, ...attrs } = {}) {
  const id = `f-${name.replace(/\W/g, "-")}-${++uid}`;
  const errorId = `${id}-error`;
  const describedBy = [errorId];
  let control;
  if (kind === "textarea") {
    control = h("textarea", { id, name, ...attrs });
    control.value = value ?? "";
  } else if (kind === "select") {
    control = h("select", { id, name, ...attrs },
      (options || []).map(([v, text]) => h("option", { value: v }, text)));
    if (value !== undefined) control.value = value;
  } else {
    control = h("input", { id, name, type: kind, ...attrs });
    if (value !== undefined && value !== null) control.value = value;
  }
  let hintEl = null;
  if (hint) {
    hintEl = h("p", { class: "hint", id: `${id}-hint` }, hint);
    describedBy.unshift(hintEl.id);
  }
  control.setAttribute("aria-describedby", describedBy.join(" "));
  return h("div", { class: "field", dataset: { field: name } },
    h("label", { for: id }, label), hintEl, control,
    h("p", { class: "error", id: errorId, dataset: { errorFor: name } }));
}

export function clearErrors(form) {
  for (const el of form.querySelectorAll("[data-error-for]")) el.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const summary = form.querySelector(".form-error");
  if (summary) summary.textContent = "";
}

// An API error shown on its form: each `details` message beside its field (a detail
// "place.lat" or "topics.2" goes to the field named so, or to its first part), the
// rest, and the error's message, in the form's summary line.
export function showErrors(form, error) {
  clearErrors(form);
  const leftOver = [];
  let first = null;
  for (const [name, messages] of Object.entries(error.details || {})) {
    const text = Array.isArray(messages) ? messages.join(" ") : String(messages);
    const slot = form.querySelector(`[data-error-for="${CSS.escape(name)}"]`)
      || form.querySelector(`[data-error-for="${CSS.escape(name.split(".")[0])}"]`);
    if (!slot) {
      leftOver.push(`${name}: ${text}`);
      continue;
    }
    slot.textContent = slot.textContent ? `${slot.textContent} ${text}` : text;
    const control = slot.parentElement.querySelector("input, select, textarea");
    if (control) {
      control.setAttribute("aria-invalid", "true");
      first = first || control;
    }
  }
  let summary = form.querySelector(".form-error");
  if (!summary) {
    summary = h("p", { class: "form-error", role: "alert" });
    form.prepend(summary);
  }
  summary.textContent = [error.message, ...leftOver].join(" ");
  (first || summary).focus?.();
}

export function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

// A button that asks once more before it acts, in the page (no dialog to dismiss).
export function confirmButton(label, confirmLabel, action, { danger = true } = {}) {
  const wrap = h("span", { class: "confirm" });
  const first = h("button", { type: "button", class: danger ? "danger" : "" }, label);
  const yes = h("button", { type: "button", class: danger ? "danger" : "" }, confirmLabel);
  const no = h("button", { type: "button", class: "secondary" }, "Keep");
  const ask = () => { replace(wrap, yes, " ", no); yes.focus(); };
  first.addEventListener("click", ask);
  no.addEventListener("click", () => { replace(wrap, first); first.focus(); });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    try { await action(); } finally { yes.disabled = false; }
  });
  wrap.append(first);
  return wrap;
}

// Disables a form's buttons while `work` runs.
export async function busy(form, work) {
  const buttons = [...form.querySelectorAll("button")];
  buttons.forEach((b) => { b.disabled = true; });
  try {
    return await work();
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}
