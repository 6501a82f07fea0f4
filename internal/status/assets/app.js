"use strict";
// Renders api/status and follows api/events (server-sent events). Every
// URL is relative: Home Assistant's ingress serves this page under its own path.
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
// dur is a number of seconds in words: "5 s", "3 min", "2 h".
const dur = (s) => s < 60 ? s + " s" : s < 3600 ? Math.floor(s / 60) + " min" : Math.floor(s / 3600) + " h";
const secondsSince = (t) => Math.max(0, Math.floor((Date.now() - new Date(t).getTime()) / 1000));
const ago = (t) => t ? dur(secondsSince(t)) + " ago" : "";
// since is a time that the once-a-second tick keeps current ("for 5 min").
const since = (t) => `<span class="since" data-t="${esc(t)}">for ${esc(dur(secondsSince(t)))}</span>`;
const voteBadge = (n) => {
  const cls = n.vote === "ACK" ? "ok" : n.vote === "NACK" ? "bad" : "wait";
  return `<span class="badge ${cls}">${esc(n.vote_text || n.vote)}</span>`;
};
// stateWord is the state in the badge: the engine's word, without "_".
const stateWord = (s) => String(s || "unknown").replace(/_/g, " ");
const nodeList = (ids) => ids.length ? (ids.length === 1 ? "node " : "nodes ") + ids.join(", ") : "none";

function renderNode(n) {
  return `
      <div class="node">
        <div class="head"><span>Node ${n.id}</span>${voteBadge(n)}</div>
        <dl>
          <dt>address</dt><dd>${esc(n.address)}</dd>
          <dt>connection</dt><dd>${esc(n.tls)}</dd>
          <dt>sees</dt><dd>${esc(nodeList(n.membership))}</dd>
          ${n.vote_since ? `<dt>${n.vote === "ACK" ? "has had the vote" : "without the vote"}</dt><dd>${since(n.vote_since)}</dd>` : ""}
        </dl>
        <details><summary>details</summary><dl>
          <dt>membership</dt><dd>${esc(n.membership_change || n.ring)} (ring id ${esc(n.ring)})</dd>
          <dt>configured</dt><dd>${esc(nodeList(n.config))}</dd>
          <dt>heuristics</dt><dd>${esc(n.heuristics_text || n.heuristics)}</dd>
        </dl></details>
      </div>`;
}

function renderCluster(c) {
  const state = /^[a-z_]+$/.test(c.state || "") ? c.state : "unknown";
  return `<article class="card cluster state-${state}" data-state="${state}">
      <h2><span class="name">${esc(c.name)}</span> <span class="badge state">${esc(stateWord(state))}</span></h2>
      <p class="state-title">${esc(c.state_title || stateWord(state))}</p>
      <p class="reason muted">${esc(c.state_reason || "")}${c.gone_since ? ", " + since(c.gone_since) : ""}</p>
      <div class="nodes">${c.nodes.map(renderNode).join("")}</div>
      <details><summary>how qnetd decides for this cluster</summary>
        <p class="muted">${esc(c.algorithm)}${c.kap ? " (keeps the active partition on a tie)" : ""} · tie-breaker: ${esc(c.tie_breaker)}</p>
      </details></article>`;
}

function render(st) {
  fresh();
  $("server").textContent = `listening on ${st.server.address} · TLS ${st.server.tls} · ${st.server.connected_clients} connection(s)`;
  // Rebuilding the cards would close a <details> the user opened: only a
  // change replaces them.
  const gone = st.gone || [];
  const clusters = (st.clusters.length ? "" : `<article class="card">No cluster is connected${gone.length ? "" : " yet"}.</article>`) +
    st.clusters.concat(gone).map(renderCluster).join("");
  if (clusters !== shown.clusters) $("clusters").innerHTML = shown.clusters = clusters;
  $("history").innerHTML = st.history.slice().reverse().map((e) =>
    `<li><time datetime="${esc(e.time)}">${new Date(e.time).toLocaleTimeString()}</time><strong>${esc(e.cluster)}</strong>: ${esc(e.text)}</li>`
  ).join("") || `<li class="muted">Nothing was decided in the last hour.</li>`;
  renderPairing(st.pairing);
}
const shown = { clusters: null };

// The footer says how long ago the page last heard from the add-on (a
// status or an "alive" event, the latter every aliveMs), and when that is
// longer than two intervals, that the add-on does not answer.
let lastHeard = 0, aliveMs = 5000;
function fresh() { lastHeard = Date.now(); tick(); }
function tick() {
  const el = $("generated");
  for (const s of document.querySelectorAll(".since")) s.textContent = "for " + dur(secondsSince(s.dataset.t));
  if (!lastHeard) { el.textContent = "waiting for the add-on…"; return; }
  const s = Math.floor((Date.now() - lastHeard) / 1000);
  const stale = Date.now() - lastHeard > 2 * aliveMs + 1000;
  document.body.classList.toggle("stale", stale);
  $("live").classList.toggle("off", stale);
  el.textContent = stale ? `not updated for ${dur(s)}: the add-on does not answer` : `updated ${dur(s)} ago`;
}
setInterval(tick, 1000);

// oneTimeCard is the pairing card's password part: the one-time password
// while it is valid, else what happened to it, and the button for a new one.
// pcs: for the pcs card when the SSH endpoint is off (pcs's password then).
function oneTimeCard(p, pcs) {
  const ot = p.one_time || { state: "none" };
  const until = (t) => new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  let text;
  switch (ot.state) {
    case "valid":
      text = pcs ? `<p>Give <code>pcs host auth</code> this one-time pairing password (<code>-p</code>, user <code>hacluster</code>):</p>`
        : `<p>When <code>pvecm</code> asks for root's password, enter this one-time pairing password:</p>`;
      text += `<pre class="secret" id="one-time-password">${esc(ot.password)}</pre>
        <p class="muted">Valid until ${esc(until(ot.expires))}; the first ${pcs ? "<code>pcs host auth</code>" : "node key it installs"} uses it up.</p>`;
      break;
    case "used":
      text = /^pcs token /.test(ot.used_by || "")
        ? `<p>The one-time pairing password was used ${esc(ago(ot.used_at))} by <code>pcs host auth</code> (${esc(ot.used_by)}).</p>`
        : `<p>The one-time pairing password was used ${esc(ago(ot.used_at))} to install the key ${esc(ot.used_by || "")}.</p>`;
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

// revokeArmed is the token whose Revoke button was clicked once: the
// second click revokes (re-renders keep it armed).
let revokeArmed = "";

// pcsCard is the pcs endpoint's card: the commands, the one-time password
// when the SSH endpoint is off, and the tokens with their Revoke buttons.
function pcsCard(p) {
  const c = p.pcs;
  const token = (t) => `<li>token <code>${esc(t.id)}</code>, made ${esc(ago(t.created))} from ${esc(t.addr)}${t.one_time ? " with the one-time password" : ""};
      ${t.clusters.length ? "owns " + t.clusters.map((n) => `<strong>${esc(n)}</strong>`).join(", ") : "owns no cluster yet"}
      <button type="button" class="revoke" data-id="${esc(t.id)}">${revokeArmed === t.id ? "Click again to revoke" : "Revoke"}</button></li>`;
  const tokens = c.problem ? `<p class="bad-text">${esc(c.problem)}</p>`
    : c.tokens.length ? `<ul class="tokens">${c.tokens.map(token).join("")}</ul>
      <p class="muted">Revoking a token refuses it from then on and frees the cluster names it owns for the next <code>pcs host auth</code>; the nodes keep their certificates and their vote.</p>`
    : `<p class="muted">No token yet.</p>`;
  return `<h2>Pair a RHEL cluster (pcs)</h2><article class="card" id="pcs">
    <p>On one cluster node, as root:</p><pre>${c.commands.map(esc).join("\n")}</pre>
    ${p.enabled ? `<p class="muted">The password (user <code>hacluster</code>) is the one-time pairing password above, or <code>pairing_password</code>.</p>` : oneTimeCard(p, true)}
    <h3>pcs tokens</h3>${tokens}<p id="pcs-error" class="bad-text"></p></article>`;
}

function renderPairing(p) {
  const pvecm = p.problem ? `<h2>Pair a Proxmox cluster</h2><article class="card warn"><p>${esc(p.problem)}</p></article>`
    : !p.enabled ? "" : `<h2>Pair a Proxmox cluster</h2><article class="card">
    <p>On one Proxmox node, as root:</p><pre>${esc(p.command)}</pre>
    ${p.ssh_config ? `<p>The pairing port is not 22: first add this to <code>/root/.ssh/config</code> on that node:</p><pre>${esc(p.ssh_config)}</pre>` : ""}
    <p>At the first contact SSH shows the host key; it must be one of:</p><pre>${p.fingerprints.map(esc).join("\n")}</pre>
    ${oneTimeCard(p)}</article>`;
  $("pairing").innerHTML = pvecm + (p.pcs ? pcsCard(p) : "");
  const b = $("new-one-time");
  if (b) b.onclick = newOneTime;
  for (const r of document.querySelectorAll("button.revoke")) r.onclick = () => revoke(r);
}

async function revoke(button) {
  const id = button.dataset.id;
  if (revokeArmed !== id) {
    revokeArmed = id;
    button.textContent = "Click again to revoke";
    return;
  }
  revokeArmed = "";
  button.disabled = true;
  try {
    const r = await fetch("api/pcs/revoke-token", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ id }) });
    if (!r.ok) throw new Error(await r.text());
    render(await r.json());
  } catch (e) {
    button.disabled = false;
    button.textContent = "Revoke";
    $("pcs-error").textContent = "Could not revoke it: " + e.message;
  }
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
  tick();
  connect();
}

// connect follows the event stream. EventSource reconnects by itself
// after a dropped connection, but gives up for good when an answer is
// not a stream (the ingress answers 502 while the add-on restarts): then
// a new one is made after a pause.
function connect() {
  const es = new EventSource("api/events");
  es.addEventListener("status", (ev) => render(JSON.parse(ev.data)));
  es.addEventListener("alive", (ev) => {
    const ms = Number(ev.data);
    if (ms > 0) aliveMs = ms;
    fresh();
  });
  es.onerror = () => {
    if (es.readyState !== EventSource.CLOSED) return;
    es.close();
    setTimeout(connect, Math.min(aliveMs, 5000));
  };
}
start();
