// The EventPost web app: hash routes -> pages. Each page module exports
// `render(main, params, query)`; pages other than discover load when first visited.

import { api, setToken, token, whenUnauthorized } from "./api.js";
import { h, replace } from "./dom.js";
import * as discover from "./pages/discover.js";

export const session = {
  user: null, // the signed-in account (GET /users/me), or null
  async refresh() {
    this.user = token() ? await api.get("/users/me").catch(() => null) : null;
    if (!this.user) setToken(null);
    renderNav();
    return this.user;
  },
  async signIn(accessToken) {
    setToken(accessToken);
    return this.refresh();
  },
  signOut() {
    setToken(null);
    this.user = null;
    renderNav();
  },
};

const routes = [
  [/^\/$/, () => discover],
  [/^\/events\/([^/]+)$/, () => import("./pages/event.js")],
  [/^\/events\/([^/]+)\/edit$/, () => import("./pages/admin.js")],
  [/^\/admin\/new$/, () => import("./pages/admin.js")],
  [/^\/signin$/, () => import("./pages/auth.js").then((m) => m.signIn)],
  [/^\/signup$/, () => import("./pages/auth.js").then((m) => m.signUp)],
  [/^\/reminders$/, () => import("./pages/reminders.js")],
  [/^\/account$/, () => import("./pages/account.js")],
];

let flashKept = false;

// A message for the reader; it stays through the next navigation, then goes.
export function flash(message, kind = "info") {
  const box = document.getElementById("flash");
  flashKept = Boolean(message);
  replace(box, message ? h("p", { class: `flash ${kind}` }, message) : "");
}

export function go(path) {
  if (location.hash === `#${path}`) route();
  else location.hash = path;
}

function currentPath() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, search = ""] = raw.split("?");
  return [path, new URLSearchParams(search)];
}

function renderNav() {
  const nav = document.getElementById("nav");
  const [path] = currentPath();
  const link = (href, text) => h("li", {},
    h("a", { href: `#${href}`, "aria-current": path === href ? "page" : null }, text));
  const items = [link("/", "Discover")];
  if (session.user) {
    items.push(link("/reminders", "My reminders"), link("/account", "My account"));
    if (session.user.role === "admin") items.push(link("/admin/new", "New event"));
    items.push(h("li", {}, h("button", {
      type: "button", class: "link", onclick: () => { session.signOut(); flash("You are signed out."); go("/"); },
    }, "Sign out")));
  } else {
    items.push(link("/signin", "Sign in"), link("/signup", "Sign up"));
  }
  replace(nav, items);
}

let generation = 0;

async function route() {
  const mine = ++generation;
  const [path, query] = currentPath();
  const main = document.getElementById("main");
  if (!flashKept) flash("");
  flashKept = false;
  renderNav();
  const found = routes.find(([pattern]) => pattern.test(path));
  try {
    if (!found) {
      replace(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "Back to discover")));
      return;
    }
    const params = found[0].exec(path).slice(1).map(decodeURIComponent);
    const page = await found[1]();
    if (page !== discover) await ready; // discover needs no account: it does not wait
    if (mine !== generation) return; // the reader moved on meanwhile
    main.replaceChildren();
    await page.render(main, params, query);
  } catch (error) {
    console.warn(error);
    replace(main, h("h1", {}, "Something went wrong"), h("p", { role: "alert" }, error.message));
  }
}

// Called by pages when a route needs an account.
export function requireUser() {
  if (session.user) return true;
  flash("Please sign in first.");
  go(`/signin?next=${encodeURIComponent(location.hash.replace(/^#/, ""))}`);
  return false;
}

whenUnauthorized(() => {
  session.signOut();
  flash("Your session has ended; please sign in again.", "error");
  go("/signin");
});

let lastPath = null;
window.addEventListener("hashchange", () => {
  const [path] = currentPath();
  const moved = path !== lastPath;
  lastPath = path;
  route().then(() => {
    if (moved) { // a new page: tell screen readers by moving focus to its heading
      const heading = document.querySelector("#main h1");
      heading?.setAttribute("tabindex", "-1");
      heading?.focus({ preventScroll: true });
    }
  });
});

lastPath = currentPath()[0];
const ready = session.refresh().catch(() => null);
route();
