// Sign up and sign in. The token goes to sessionStorage (api.js says why).

import { api } from "../api.js";
import { flash, go, session } from "../app.js";
import { busy, field, formValues, h, replace, showErrors } from "../dom.js";

function nextPath(query) {
  const next = query.get("next") || "/";
  return next.startsWith("/") ? next : "/";
}

// {username | email, password} -> a session; the login field takes either.
export async function logIn(login, password) {
  const credentials = login.includes("@") ? { email: login, password } : { username: login, password };
  const answer = await api.post("/auth/token", credentials, { auth: false });
  return session.signIn(answer.access_token);
}

export const signIn = {
  async render(main, _params, query) {
    const form = h("form", { class: "narrow", novalidate: true },
      field("login", "Username or email", { autocomplete: "username", required: true }),
      field("password", "Password", { kind: "password", autocomplete: "current-password", required: true }),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Sign in")));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const { login, password } = formValues(form);
      await busy(form, async () => {
        try {
          await logIn(login.trim(), password);
          flash(`Signed in as ${session.user.username}.`);
          go(nextPath(query));
        } catch (error) {
          if (error.details.username || error.details.email) {
            error.details.login = [...(error.details.username || []), ...(error.details.email || [])];
            delete error.details.username;
            delete error.details.email;
          }
          showErrors(form, error);
        }
      });
    });
    replace(main, h("h1", {}, "Sign in"), form,
      h("p", {}, "No account yet? ", h("a", { href: "#/signup" }, "Sign up")));
  },
};

export const signUp = {
  async render(main, _params, query) {
    const form = h("form", { class: "narrow", novalidate: true },
      field("username", "Username", {
        autocomplete: "username", required: true, hint: "3 to 30 of a-z, 0-9, _ . -",
      }),
      field("email", "Email", { kind: "email", autocomplete: "email", required: true }),
      field("password", "Password", {
        kind: "password", autocomplete: "new-password", required: true, hint: "At least 8 characters",
      }),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Create account")));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const values = formValues(form);
      await busy(form, async () => {
        try {
          await api.post("/users", values, { auth: false });
          await logIn(values.username, values.password);
          flash(`Welcome, ${session.user.username}. Your account is ready.`);
          go(nextPath(query));
        } catch (error) {
          showErrors(form, error);
        }
      });
    });
    replace(main, h("h1", {}, "Sign up"), form,
      h("p", {}, "Have an account? ", h("a", { href: "#/signin" }, "Sign in")));
  },
};
