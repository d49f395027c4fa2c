// Who the browser is: the token form in the header and the identity the pages ask for.
import { api, saveToken, forgetToken } from "./api.js";
import { toast } from "./toast.js";

// me is the caller as /whoami last answered; pages read it to show operator controls.
export const me = { can_read: false, can_operate: false };

export async function whoami() {
  let got;
  try { got = await api("/whoami"); } catch (e) {
    got = { can_read: false, can_operate: false, error: e.message };
  }
  for (const k of Object.keys(me)) delete me[k];
  Object.assign(me, got);
  const b = document.getElementById("auth-button");
  b.textContent = me.authenticated ? `${me.name} · ${me.role}` : me.error ? "Token rejected" : "Token";
  b.title = me.authenticated ? "Signed in with a " + me.role + " token" : "Paste an API token";
}

export function showAuthPanel() { document.getElementById("auth-panel").hidden = false; }

// setupAuth wires the token form; onChange runs after a token is saved or forgotten.
export function setupAuth(onChange) {
  const panel = document.getElementById("auth-panel");
  const input = document.getElementById("token-input");
  document.getElementById("auth-button").addEventListener("click", () => { panel.hidden = !panel.hidden; if (!panel.hidden) input.focus(); });
  document.getElementById("auth-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = input.value.trim();
    if (v) saveToken(v);
    input.value = "";
    await whoami();
    if (me.error) { toast("Token rejected: " + me.error, true); return; }
    panel.hidden = true;
    toast(me.authenticated ? `Using token “${me.name}” (${me.role}).` : "No token saved.");
    onChange();
  });
  document.getElementById("token-clear").addEventListener("click", async () => {
    forgetToken();
    await whoami();
    toast("Token forgotten.");
    onChange();
  });
}
