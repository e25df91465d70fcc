"use strict";
// The channel's settings, filled in by the gateway as a JSON data block (not a script).
const SETTINGS = JSON.parse(document.getElementById("settings").textContent);
const log = document.getElementById("log");
const statusEl = document.getElementById("status");
const shown = new Map();

function randomId() {
  if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, b => b.toString(16).padStart(2, "0")).join("");
}

// The visitor's key stays in this browser; the gateway derives the contact from it.
const storageKey = "concierge.webchat." + SETTINGS.channel + ".key";
let key = localStorage.getItem(storageKey);
if (!key) { key = randomId(); localStorage.setItem(storageKey, key); }
// The live stream reads the key from a cookie scoped to it (EventSource cannot send headers).
// Framed by another site (a shop's page among the channel's embed_origins), a SameSite=Strict
// cookie is not sent: over HTTPS the cookie is then SameSite=None, partitioned by the site
// that frames it; over plain HTTP no such cookie can be set, and the key goes in the URL.
let framed = false;
try { framed = window.top !== window.self; } catch (e) { framed = true; }
const secure = location.protocol === "https:";
document.cookie = "concierge_chat_" + SETTINGS.channel + "=" + encodeURIComponent(key) +
  "; Path=/chat/" + SETTINGS.channel + "/; Max-Age=31536000; " +
  (framed && secure ? "SameSite=None; Secure; Partitioned" : "SameSite=Strict" + (secure ? "; Secure" : ""));

function render(msg) {
  let el = shown.get(msg.id);
  if (!el) {
    el = document.createElement("div");
    shown.set(msg.id, el);
    log.appendChild(el);
  }
  el.className = "msg " + (msg.direction === "in" ? "in" : "out") + (msg.pending ? " pending" : "") + (msg.failed ? " failed" : "");
  el.textContent = "";
  if (msg.direction === "out" && msg.author === "concierge" && msg.name) {
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = msg.name;
    el.appendChild(who);
  }
  el.appendChild(document.createTextNode(msg.text));
  if (msg.choices && msg.choices.length) {
    const box = document.createElement("div");
    box.className = "choices";
    for (const choice of msg.choices) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = choice.title;
      b.onclick = () => send({ choice: choice }, choice.title);
      box.appendChild(b);
    }
    el.appendChild(box);
  }
  log.scrollTop = log.scrollHeight;
}

async function post(body) {
  // A retried POST repeats the same id: the gateway keeps one copy.
  for (let attempt = 0; attempt < 8; attempt++) {
    try {
      const res = await fetch("/webhooks/" + encodeURIComponent(SETTINGS.channel), {
        method: "POST",
        headers: { "content-type": "application/json", "x-webchat-key": key },
        body: JSON.stringify(body),
      });
      if (res.ok) return true;
      if (res.status < 500 && res.status !== 408 && res.status !== 429) return false;
    } catch (e) { /* network: retry */ }
    await new Promise(r => setTimeout(r, Math.min(8000, 500 * 2 ** attempt)));
  }
  return false;
}

async function send(extra, text) {
  const msg = { id: randomId(), direction: "in", author: "customer", text: text, pending: true };
  render(msg);
  const ok = await post(Object.assign({ id: msg.id }, extra));
  msg.pending = false;
  msg.failed = !ok;
  render(msg);
}

document.getElementById("form").addEventListener("submit", e => {
  e.preventDefault();
  const box = document.getElementById("text");
  const text = box.value.trim();
  if (!text) return;
  box.value = "";
  send({ text: text }, text);
});
document.getElementById("text").addEventListener("keydown", e => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); document.getElementById("form").requestSubmit(); }
});

if (SETTINGS.greeting) render({ id: "greeting", direction: "out", author: "bot", text: SETTINGS.greeting });

// EventSource reconnects by itself and sends Last-Event-ID, so nothing is missed.
const stream = new EventSource("/chat/" + encodeURIComponent(SETTINGS.channel) + "/events" +
  (framed && !secure ? "?key=" + encodeURIComponent(key) : ""));
stream.addEventListener("message", e => {
  try { render(JSON.parse(e.data)); } catch (err) { console.warn("bad event", err); }
});
stream.onopen = () => { statusEl.textContent = "online"; };
stream.onerror = () => { statusEl.textContent = "reconnecting…"; };
