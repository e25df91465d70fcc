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
  if (msg.media) el.appendChild(mediaView(msg.media, msg.preview));
  if (msg.text) el.appendChild(document.createTextNode(msg.text));
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
  if (msg.products && msg.products.length) el.appendChild(productCards(msg.products));
  if (msg.link) {
    // A payment page opens in a new tab; the chat stays where it is.
    const a = document.createElement("a");
    a.className = "cta";
    a.href = msg.link.url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    a.textContent = msg.link.label;
    el.appendChild(a);
  }
  log.scrollTop = log.scrollHeight;
}

// Products as cards: picture, name, price, and "Add to cart" (posted as the card's choice).
function productCards(products) {
  const box = document.createElement("div");
  box.className = "products";
  for (const p of products) {
    const card = document.createElement("div");
    card.className = "product" + (p.available ? "" : " sold-out");
    if (p.image) {
      const img = document.createElement("img");
      img.src = p.image;
      img.alt = p.name;
      img.loading = "lazy";
      img.referrerPolicy = "no-referrer";
      card.appendChild(img);
    } else {
      const initial = document.createElement("div");
      initial.className = "initial";
      initial.setAttribute("aria-hidden", "true");
      initial.textContent = (p.name || "?").trim().charAt(0).toUpperCase();
      card.appendChild(initial);
    }
    const name = document.createElement("div");
    name.className = "name";
    name.textContent = p.name;
    card.appendChild(name);
    const price = document.createElement("div");
    price.className = "price";
    price.textContent = p.available ? (p.price || "") : ((p.price ? p.price + " · " : "") + "Sold out");
    card.appendChild(price);
    if (p.add) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = "Add to cart";
      b.setAttribute("aria-label", p.add.title);
      b.onclick = () => send({ choice: p.add }, p.add.title);
      card.appendChild(b);
    }
    box.appendChild(card);
  }
  return box;
}

// A file of the conversation, fetched with the visitor's cookie (or key, when framed over
// plain HTTP); the visitor's own file shows from its local copy until the page reloads.
const keyQuery = framed && !secure ? "key=" + encodeURIComponent(key) : "";
function mediaUrl(id, thumb) {
  const q = [thumb ? "variant=thumb" : "", keyQuery].filter(Boolean).join("&");
  return "/chat/" + encodeURIComponent(SETTINGS.channel) + "/media/" + encodeURIComponent(id) + (q ? "?" + q : "");
}
function mediaView(media, preview) {
  const box = document.createElement("div");
  box.className = "media";
  if (media.kind === "image" || media.kind === "sticker") {
    const img = document.createElement("img");
    img.src = preview || mediaUrl(media.id, true);
    img.alt = media.name || "A picture";
    img.loading = "lazy";
    if (media.width && media.height) { img.width = Math.min(240, media.width); img.style.aspectRatio = media.width + " / " + media.height; }
    img.onload = () => { log.scrollTop = log.scrollHeight; };
    const link = document.createElement("a");
    link.href = preview || mediaUrl(media.id, false);
    link.target = "_blank";
    link.rel = "noopener";
    link.appendChild(img);
    box.appendChild(link);
  } else if (media.kind === "audio" || media.kind === "video") {
    const player = document.createElement(media.kind);
    player.controls = true;
    player.preload = "metadata";
    player.src = preview || mediaUrl(media.id, false);
    box.appendChild(player);
  } else {
    const link = document.createElement("a");
    link.className = "file";
    link.href = preview || mediaUrl(media.id, false);
    link.download = media.name || "";
    link.textContent = (media.name || "Download the file") + (media.bytes ? " · " + size(media.bytes) : "");
    box.appendChild(link);
  }
  return box;
}
function size(n) { return !n ? "" : n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.ceil(n / 1024)) + " KB"; }

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

async function send(extra, text, file) {
  const msg = { id: randomId(), direction: "in", author: "customer", text: text, pending: true };
  if (file) {
    msg.preview = URL.createObjectURL(file);
    msg.media = { id: "", kind: kindOf(file.type), mime: file.type, name: file.name, bytes: file.size };
  }
  render(msg);
  let ok = true;
  if (file) {
    const kept = await upload(file);
    if (kept) extra.media = { id: kept.id, mime: kept.mime };
    else ok = false;
  }
  ok = ok && await post(Object.assign({ id: msg.id }, extra));
  msg.pending = false;
  msg.failed = !ok;
  render(msg);
}

// ---------- a file from the visitor ----------
const MAX_FILE = 16 * 1024 * 1024;
const fileInput = document.getElementById("file");
const chosen = document.getElementById("chosen");
let pendingFile = null;
function kindOf(mime) {
  const top = (mime || "").split("/")[0];
  return top === "image" || top === "audio" || top === "video" ? top : "document";
}
function choose(file) {
  pendingFile = file;
  chosen.textContent = "";
  chosen.hidden = !file;
  if (!file) return;
  const name = document.createElement("span");
  name.textContent = (file.name || "image") + " · " + size(file.size);
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "✕";
  remove.setAttribute("aria-label", "Remove the file");
  remove.onclick = () => choose(null);
  chosen.append(name, remove);
}
async function upload(file) {
  const path = "/chat/" + encodeURIComponent(SETTINGS.channel) + "/media?name=" + encodeURIComponent(file.name || "image");
  for (let attempt = 0; attempt < 4; attempt++) {
    try {
      const res = await fetch(path, { method: "POST", headers: { "x-webchat-key": key, "content-type": file.type || "application/octet-stream" }, body: file });
      if (res.ok) return await res.json();
      if (res.status < 500) {
        statusEl.textContent = res.status === 413 ? "that file is too large" : res.status === 415 ? "that kind of file cannot be sent" : "the file was not sent";
        return null;
      }
    } catch (e) { /* network: retry */ }
    await new Promise(r => setTimeout(r, 500 * 2 ** attempt));
  }
  return null;
}
document.getElementById("attach").addEventListener("click", () => fileInput.click());
fileInput.addEventListener("change", () => {
  const file = fileInput.files[0];
  fileInput.value = "";
  if (!file) return;
  if (file.size > MAX_FILE) { statusEl.textContent = "that file is too large (16 MB at most)"; return; }
  choose(file);
  document.getElementById("text").focus();
});

document.getElementById("form").addEventListener("submit", e => {
  e.preventDefault();
  const box = document.getElementById("text");
  const text = box.value.trim();
  const file = pendingFile;
  if (!text && !file) return;
  box.value = "";
  choose(null);
  // With a file, the words are its caption.
  send({ text: text }, text, file);
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
