// The login form: trades a token for a session cookie, then goes to the dashboard.
const form = document.getElementById("login-form");
form.addEventListener("submit", async (e) => {
  e.preventDefault();
  const res = await fetch("/api/login", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify({token: document.getElementById("token").value})});
  if (res.ok) { location.href = "/#/live"; return; }
  document.getElementById("login-error").textContent = (await res.json()).error || "log in failed";
});
