// The dashboard shell: loads who we are, then shows the page named in the location hash.
import {loadSession, state} from "./api.js";
import {livePage} from "./live.js";
import {eventsPage, eventPage} from "./events.js";
import {activityPage} from "./activity.js";
import {playgroundPage} from "./playground.js";
import {settingsPage} from "./settings.js";

const PAGES = {live: livePage, events: eventsPage, event: eventPage, activity: activityPage,
               playground: playgroundPage, settings: settingsPage};
let cleanup = null;

function route() {
  const [name, arg] = (location.hash.replace(/^#\/?/, "") || "live").split("/");
  const page = PAGES[name] || livePage;
  if (cleanup) { cleanup(); cleanup = null; }
  const main = document.getElementById("main");
  main.replaceChildren();
  main.dataset.page = name;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.page === name ||
    (name === "event" && a.dataset.page === "events"));
  cleanup = page(main, arg ? decodeURIComponent(arg) : undefined) || null;
}

async function start() {
  const session = await loadSession();
  if (!session) return;
  const who = document.getElementById("whoami");
  who.textContent = session.role;
  if (session.login_required) {
    const out = document.createElement("button");
    out.className = "secondary"; out.textContent = "log out"; out.id = "logout";
    out.addEventListener("click", async () => {
      await fetch("/api/logout", {method: "POST", headers: {"Content-Type": "application/json",
                                                            "X-CSRF-Token": state.session.csrf}});
      location.href = "/login";
    });
    who.append(" ", out);
  }
  window.addEventListener("hashchange", route);
  route();
}

start();
