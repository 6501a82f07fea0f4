"use strict";
// Renders api/status and follows api/events (server-sent events). Every
// URL is relative: Home Assistant's ingress serves this page under its own path.
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const ago = (t) => {
  if (!t) return "";
  const s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  return Math.round(s / 3600) + " h ago";
};
const voteBadge = (v) => {
  const cls = v === "ACK" ? "ok" : v === "NACK" ? "bad" : "wait";
  const word = v === "ACK" ? "has the vote" : v === "NACK" ? "no vote" : v;
  return `<span class="badge ${cls}">${esc(word)}</span>`;
};

function render(st) {
  $("server").textContent = `listening on ${st.server.address} · TLS ${st.server.tls} · ${st.server.connected_clients} connection(s)`;
  $("generated").textContent = "updated " + new Date(st.generated).toLocaleTimeString();
  const clusters = st.clusters.map((c) => {
    const nodes = c.nodes.map((n) => `
      <div class="node">
        <div class="head"><span>Node ${n.id}</span>${voteBadge(n.vote)}</div>
        <dl>
          <dt>address</dt><dd>${esc(n.address)}</dd>
          <dt>connection</dt><dd>${esc(n.tls)}</dd>
          <dt>ring</dt><dd>${esc(n.ring)}</dd>
          <dt>sees</dt><dd>${n.membership.length ? "nodes " + n.membership.join(", ") : "—"}</dd>
          <dt>heuristics</dt><dd>${esc(n.heuristics)}</dd>
          <dt>vote since</dt><dd>${n.vote_since ? ago(n.vote_since) : "—"}</dd>
        </dl>
      </div>`).join("");
    const state = c.has_vote ? `<span class="badge ok">quorate with the qdevice vote</span>` : `<span class="badge bad">nobody has the vote</span>`;
    return `<article class="card"><h2>${esc(c.name)} ${state}</h2>
      <div class="muted">${esc(c.algorithm)}${c.kap ? " (KAP tie-breaker)" : ""} · tie-breaker: ${esc(c.tie_breaker)}</div>
      <div class="nodes">${nodes}</div></article>`;
  }).join("");
  $("clusters").innerHTML = clusters || `<article class="card">No cluster is connected yet.</article>`;
  $("history").innerHTML = st.history.slice().reverse().map((e) =>
    `<li><time datetime="${esc(e.time)}">${new Date(e.time).toLocaleTimeString()}</time><strong>${esc(e.cluster)}</strong>: ${esc(e.text)}</li>`
  ).join("") || `<li class="muted">Nothing was decided in the last hour.</li>`;
  renderPairing(st.pairing);
}

// oneTimeCard is the pairing card's password part: the one-time password
// while it is valid, else what happened to it, and the button for a new one.
function oneTimeCard(p) {
  const ot = p.one_time || { state: "none" };
  const until = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  let text;
  switch (ot.state) {
    case "valid":
      text = `<p>When <code>pvecm</code> asks for root's password, enter this one-time pairing password:</p>
        <pre class="secret" id="one-time-password">${esc(ot.password)}</pre>
        <p class="muted">Valid until ${esc(until(ot.expires))}; the first node key it installs uses it up.</p>`;
      break;
    case "used":
      text = `<p>The one-time pairing password was used ${esc(ago(ot.used_at))} to install the key ${esc(ot.used_by || "")}.</p>`;
      break;
    case "expired":
      text = `<p>The one-time pairing password expired at ${esc(until(ot.expires))} without being used.</p>`;
      break;
    default:
      text = `<p>No one-time pairing password was made.</p>`;
  }
  if (p.password_option) text += `<p class="muted">The password of the option <code>pairing_password</code> works as well.</p>`;
  const again = ot.state === "valid" ? "Make a new one (the one above stops working)" : "Make a one-time pairing password";
  return text + `<p><button type="button" id="new-one-time">${again}</button> <span id="one-time-error" class="bad-text"></span></p>`;
}

function renderPairing(p) {
  $("pairing").innerHTML = p.problem ? `<h2>Pair a Proxmox cluster</h2><article class="card warn"><p>${esc(p.problem)}</p></article>`
    : !p.enabled ? "" : `<h2>Pair a Proxmox cluster</h2><article class="card">
    <p>On one Proxmox node, as root:</p><pre>${esc(p.command)}</pre>
    ${p.ssh_config ? `<p>The pairing port is not 22: first add this to <code>/root/.ssh/config</code> on that node:</p><pre>${esc(p.ssh_config)}</pre>` : ""}
    <p>At the first contact SSH shows the host key; it must be one of:</p><pre>${p.fingerprints.map(esc).join("\n")}</pre>
    ${oneTimeCard(p)}</article>`;
  const b = $("new-one-time");
  if (b) b.onclick = newOneTime;
}

async function newOneTime() {
  $("new-one-time").disabled = true;
  try {
    const r = await fetch("api/pairing/one-time-password", { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    if (!r.ok) throw new Error(await r.text());
    render(await r.json());
  } catch (e) {
    const b = $("new-one-time");
    if (b) b.disabled = false;
    $("one-time-error").textContent = "Could not make one: " + e.message;
  }
}

async function start() {
  try {
    const r = await fetch("api/status", { cache: "no-store" });
    if (r.ok) render(await r.json());
  } catch (e) { /* the event stream below retries */ }
  const es = new EventSource("api/events");
  es.addEventListener("status", (ev) => { $("live").classList.remove("off"); render(JSON.parse(ev.data)); });
  es.onerror = () => $("live").classList.add("off");
}
start();
