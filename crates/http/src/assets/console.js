"use strict";
(() => {
const TOKEN_KEY = "concierge_token";
const TITLE = "Concierge console";
const $ = (id) => document.getElementById(id);
const E = {};
for (const id of ["signin", "sign-in-form", "token", "sign-in", "sign-in-error", "app", "me", "role", "status-toggle", "sign-out",
  "connection", "notify", "health", "health-panel", "health-list", "health-close", "help-open", "help", "help-close", "filter", "queue", "queue-status", "empty", "thread", "thread-title",
  "thread-state", "thread-meta", "thread-sub", "thread-hint", "claim", "release", "resolve", "transfer", "release-box", "release-note",
  "release-go", "transfer-box", "transfer-target", "transfer-go", "history", "brief", "reply-form", "reply", "choices", "send", "attach", "attach-file", "attachment",
  "note-form", "note", "add-note", "toast"]) E[id] = $(id);

let token = null, me = null, signedIn = false;
let queue = [], clockOffset = 0;
let openId = null, current = null, cursorId = null;
let busy = false, scrollToEnd = false, historyKey = "", briefKey = "", lastSuggestions = [];
const drafts = new Map();
let pending = null, pendingPreview = null; // the file waiting to go with the reply
let unread = 0, askedPermission = false;
let streamGen = 0, streamCtl = null, lastEventId = "", live = false, lastChunkAt = 0;
let queueTimer = 0, threadTimer = 0, threadSeq = 0, tickTimer = 0, pollTimer = 0, healthTimer = 0;

// ---------- helpers ----------
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  if (attrs) for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) e.append(kid instanceof Node ? kid : String(kid));
  return e;
}
const pad = (n) => String(n).padStart(2, "0");
const hhmm = (ms) => { const d = new Date(ms); return pad(d.getHours()) + ":" + pad(d.getMinutes()); };
const serverNow = () => Date.now() + clockOffset;
function fmtDur(ms) {
  const s = Math.max(0, Math.floor(ms / 1000)), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? h + ":" + pad(m) : pad(m)) + ":" + pad(s % 60);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const convPath = (id) => "/api/v1/conversations/" + encodeURIComponent(id);
const contactName = (c) => (c && c.contact && (c.contact.name || c.contact.phone || c.contact.id)) || (c && c.conversation) || "Unknown";
function isTextField(t) {
  if (!t || !t.tagName) return false;
  if (t.isContentEditable || t.tagName === "TEXTAREA" || t.tagName === "SELECT") return true;
  return t.tagName === "INPUT" && !["button", "submit", "checkbox", "radio", "reset"].includes(t.type);
}

class ApiError extends Error { constructor(status, message) { super(message); this.status = status; } }
async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + token, Accept: "application/json" };
  const opts = { method, headers, cache: "no-store" };
  if (body !== undefined) { headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
  let res;
  try { res = await fetch(path, opts); } catch (_) { throw new ApiError(0, "The server cannot be reached."); }
  const raw = await res.text().catch(() => "");
  let data = null;
  if (raw) { try { data = JSON.parse(raw); } catch (_) { data = null; } }
  if (res.status === 401) { if (signedIn) signOut("Your session has ended. Sign in again."); throw new ApiError(401, "This token is not valid."); }
  if (!res.ok) {
    const msg = res.status === 403 ? "This action is not allowed (outside your teams)."
      : (data && data.error) || "Request failed (" + res.status + ").";
    throw new ApiError(res.status, msg);
  }
  return data;
}

// ---------- toasts & notifications ----------
function toast(title, body, opts = {}) {
  const kind = opts.kind || "info";
  const t = el("div", { class: "toast " + kind + (opts.conversation ? " link" : ""), role: kind === "error" ? "alert" : null },
    el("strong", null, title), body ? el("div", { class: "body" }, body) : null);
  const close = () => t.remove();
  t.append(el("button", { class: "x", type: "button", "aria-label": "Dismiss", onclick: (ev) => { ev.stopPropagation(); close(); } }, "×"));
  if (opts.conversation) t.addEventListener("click", () => { close(); clearUnread(); openConversation(opts.conversation); });
  E.toast.append(t);
  while (E.toast.children.length > 5) E.toast.firstElementChild.remove();
  setTimeout(close, opts.timeout || (kind === "ok" ? 2500 : kind === "alert" ? 10000 : 6000));
}
const showError = (e) => { if (e && e.status !== 401) toast(e.message || String(e), "", { kind: "error" }); };
const updateTitle = () => { document.title = (unread ? "(" + unread + ") " : "") + TITLE; };
function clearUnread() { if (unread) { unread = 0; updateTitle(); } }
function notify(title, body, conversation) {
  unread++; updateTitle();
  toast(title, body, { kind: "alert", conversation });
  if ("Notification" in window && Notification.permission === "granted") {
    try {
      const n = new Notification(title, { body: body || "", tag: conversation || undefined });
      n.onclick = () => { window.focus(); n.close(); if (conversation) openConversation(conversation); };
    } catch (_) { /* some browsers only allow notifications from a service worker */ }
  }
}
function updateNotifyButton() { E.notify.hidden = !("Notification" in window) || Notification.permission !== "default"; }
function askPermission(force) {
  if ((askedPermission && force !== true) || !signedIn || !("Notification" in window) || Notification.permission !== "default") return;
  askedPermission = true;
  try { Promise.resolve(Notification.requestPermission()).then(updateNotifyButton, updateNotifyButton); } catch (_) { /* ignore */ }
}

// ---------- sign-in ----------
async function signIn(t, fromStorage) {
  token = t; E["sign-in-error"].textContent = ""; E["sign-in"].disabled = true;
  try {
    me = await api("GET", "/api/v1/me");
  } catch (e) {
    token = null;
    if (e.status === 401) { sessionStorage.removeItem(TOKEN_KEY); E["sign-in-error"].textContent = "This token is not valid."; }
    else E["sign-in-error"].textContent = e.message;
    E.signin.hidden = false; E["sign-in"].disabled = false; E.token.focus();
    return;
  }
  E["sign-in"].disabled = false;
  sessionStorage.setItem(TOKEN_KEY, t);
  signedIn = true;
  if (!fromStorage) { try { me = await api("POST", "/api/v1/me/status", { status: "online" }) || me; } catch (e) { showError(e); } }
  E.token.value = "";
  E.signin.hidden = true; E.app.hidden = false;
  E.me.textContent = me.name;
  E.role.textContent = me.role === "admin" ? "admin" : (me.teams || []).join(", ");
  renderStatus(); updateNotifyButton(); updateTitle();
  refreshQueue();
  refreshChannels();
  streamLoop();
  tickTimer = setInterval(tick, 1000);
  pollTimer = setInterval(() => { if (!live) { refreshQueue(); refreshThread(); } }, 15000);
  healthTimer = setInterval(refreshChannels, 60000);
  const hash = decodeURIComponent(location.hash.slice(1));
  if (hash) openConversation(hash);
}
function signOut(message) {
  signedIn = false; token = null; me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  forgetMedia();
  streamGen++; if (streamCtl) streamCtl.abort();
  clearInterval(tickTimer); clearInterval(pollTimer); clearInterval(healthTimer); clearTimeout(queueTimer); clearTimeout(threadTimer);
  queue = []; openId = null; current = null; cursorId = null; drafts.clear(); unread = 0; updateTitle();
  E.queue.replaceChildren(); E.reply.value = ""; E.note.value = ""; E.filter.value = "";
  E.thread.hidden = true; E.empty.hidden = false; E.app.hidden = true; E.signin.hidden = false;
  setConnection(false);
  history.replaceState(null, "", location.pathname + location.search);
  E["sign-in-error"].textContent = message || "";
  E.token.focus();
}
function renderStatus() {
  const s = me && me.status === "online" ? "online" : "away";
  E["status-toggle"].dataset.status = s;
  E["status-toggle"].textContent = s === "online" ? "Online" : "Away";
  E["status-toggle"].setAttribute("aria-pressed", String(s === "online"));
  E["status-toggle"].title = s === "online" ? "You receive offers. Click to go away." : "You are away. Click to go online.";
}
async function toggleStatus() {
  const next = me.status === "online" ? "away" : "online";
  E["status-toggle"].disabled = true;
  try { me = await api("POST", "/api/v1/me/status", { status: next }) || Object.assign(me, { status: next }); renderStatus(); }
  catch (e) { showError(e); }
  finally { E["status-toggle"].disabled = false; }
}

// ---------- queue ----------
function scheduleQueueRefresh() { clearTimeout(queueTimer); queueTimer = setTimeout(refreshQueue, 150); }
async function refreshQueue() {
  if (!signedIn) return;
  try {
    const d = await api("GET", "/api/v1/queue");
    if (!signedIn) return;
    if (typeof d.now === "number") clockOffset = d.now - Date.now();
    queue = d.items || [];
    E["queue-status"].hidden = true;
    renderQueue();
  } catch (e) {
    if (e.status === 401) return;
    E["queue-status"].textContent = "Could not load the queue: " + e.message;
    E["queue-status"].hidden = false;
  }
}
function matches(it, f) {
  const c = it.contact || {};
  return [c.name, c.phone, c.id, it.conversation, it.owner, it.last_message && it.last_message.text, it.handoff && it.handoff.reason, it.handoff && it.handoff.team]
    .some((v) => v && String(v).toLowerCase().includes(f));
}
const offeredToMe = (it) => it.state === "queued" && me && it.offered_to === me.name;
function slaEl(sla) {
  if (!sla || (sla.state === "ok" && sla.due_at == null)) return null;
  const s = el("span", { class: "sla", "data-due": sla.due_at == null ? "" : sla.due_at, "data-sla": sla.state });
  updateSla(s, serverNow());
  return s;
}
function updateSla(s, now) {
  const state = s.dataset.sla, due = s.dataset.due === "" ? null : Number(s.dataset.due);
  let text, cls = "sla";
  if (state === "met") { text = "SLA met"; cls += " met"; }
  else if (state === "breached" || (due != null && due - now <= 0)) { text = "SLA breached" + (due != null ? " +" + fmtDur(now - due) : ""); cls += " breached"; }
  else { text = "SLA " + fmtDur(due - now); if (due - now < 120000) cls += " warn"; }
  if (s.textContent !== text) s.textContent = text;
  if (s.className !== cls) s.className = cls;
  s.title = due != null ? "Due at " + hhmm(due) : "";
}
const timerEl = (since, label) => since ? el("span", { class: "timer", "data-since": since, title: label + " since " + hhmm(since) }, fmtDur(serverNow() - since)) : null;
const prioEl = (h) => h && h.priority && h.priority !== "normal" ? el("span", { class: "prio " + h.priority }, h.priority) : null;

function queueItem(it) {
  const offered = offeredToMe(it), h = it.handoff;
  const sub = [it.channel_kind || it.channel, h && h.team, it.state === "human" ? "→ " + (it.owner === me.name ? "you" : it.owner) : null].filter(Boolean).join(" · ");
  const li = el("li", {
    class: "queue-item" + (offered ? " offered" : "") + (it.conversation === openId ? " active" : "") + (it.conversation === cursorId ? " cursor" : ""),
    "data-conversation": it.conversation, "data-state": it.state, tabindex: "-1", "aria-current": it.conversation === openId ? "true" : null,
  },
    el("div", { class: "qi-row" }, el("span", { class: "qi-name" }, contactName(it)), prioEl(h), timerEl(it.waiting_since, "Waiting")),
    el("div", { class: "qi-row" }, el("span", { class: "qi-sub" }, sub), offered ? el("span", { class: "chip" }, "Offered to you") : null,
      offered ? el("button", { class: "btn primary accept", type: "button", "aria-label": "Accept " + contactName(it),
        onclick: (ev) => { ev.stopPropagation(); claimAndOpen(it.conversation); } }, "Accept") : null,
      it.state !== "human" || it.owner === me.name ? slaEl(it.sla) : null),
    it.last_message ? el("div", { class: "qi-last", title: hhmm(it.last_message.at) }, it.last_message.text) : (h ? el("div", { class: "qi-last" }, h.reason) : null));
  li.addEventListener("click", () => openConversation(it.conversation));
  return li;
}
function renderQueue() {
  if (!me) return;
  const f = E.filter.value.trim().toLowerCase();
  const groups = { mine: [], waiting: [], others: [] };
  for (const it of queue) {
    if (f && !matches(it, f)) continue;
    if (it.state === "human") (it.owner === me.name ? groups.mine : groups.others).push(it);
    else groups.waiting.push(it);
  }
  groups.waiting = groups.waiting.filter(offeredToMe).concat(groups.waiting.filter((i) => !offeredToMe(i)));
  const frag = document.createDocumentFragment();
  for (const [key, label, emptyText] of [["mine", "Mine", "You have no threads."], ["waiting", "Waiting", f ? "No match." : "Nobody is waiting."], ["others", "Others' threads", null]]) {
    const list = groups[key];
    if (!list.length && !emptyText) continue;
    frag.append(el("h2", null, el("span", null, label), el("span", null, String(list.length))));
    frag.append(list.length ? el("ul", { "aria-label": label }, list.map(queueItem)) : el("p", { class: "empty" }, emptyText));
  }
  E.queue.replaceChildren(frag);
}
function queueItems() { return Array.from(E.queue.querySelectorAll(".queue-item")); }
function setCursor(id, scroll = true) {
  cursorId = id;
  for (const li of queueItems()) {
    const on = li.dataset.conversation === id;
    li.classList.toggle("cursor", on);
    if (on && scroll) li.scrollIntoView({ block: "nearest" });
  }
}
function moveCursor(d) {
  const items = queueItems();
  if (!items.length) return;
  let i = items.findIndex((x) => x.dataset.conversation === cursorId);
  if (i < 0) i = items.findIndex((x) => x.dataset.conversation === openId);
  i = i < 0 ? (d > 0 ? 0 : items.length - 1) : Math.max(0, Math.min(items.length - 1, i + d));
  setCursor(items[i].dataset.conversation);
}
function tick() {
  const now = serverNow();
  for (const t of document.querySelectorAll("[data-since]")) { const v = fmtDur(now - Number(t.dataset.since)); if (t.textContent !== v) t.textContent = v; }
  for (const s of document.querySelectorAll(".sla[data-sla]")) updateSla(s, now);
  if (live && Date.now() - lastChunkAt > 90000 && streamCtl) streamCtl.abort(); // stalled stream: reconnect
}

// ---------- thread ----------
function openConversation(id) {
  if (!id || !signedIn) return;
  if (id !== openId) {
    openId = id; current = null; historyKey = ""; briefKey = ""; scrollToEnd = true;
    E.reply.value = drafts.get(id) || ""; E.choices.value = ""; E.note.value = "";
    setPending(null);
    closePickers();
    E.history.replaceChildren(el("p", { class: "muted" }, "Loading…"));
    E.brief.replaceChildren();
    const q = queue.find((i) => i.conversation === id);
    E["thread-title"].textContent = q ? contactName(q) : id;
    E["thread-state"].textContent = ""; E["thread-meta"].replaceChildren(); E["thread-sub"].textContent = ""; E["thread-hint"].textContent = "";
    E.thread.hidden = false; E.empty.hidden = true;
    history.replaceState(null, "", "#" + encodeURIComponent(id));
    applyPerms();
  }
  for (const li of queueItems()) {
    const on = li.dataset.conversation === id;
    li.classList.toggle("active", on);
    if (on) li.setAttribute("aria-current", "true"); else li.removeAttribute("aria-current");
  }
  setCursor(id);
  return refreshThread();
}
function closeThread() {
  openId = null; current = null;
  E.thread.hidden = true; E.empty.hidden = false;
  history.replaceState(null, "", location.pathname + location.search);
  renderQueue();
}
function scheduleThreadRefresh() { clearTimeout(threadTimer); threadTimer = setTimeout(refreshThread, 150); }
async function refreshThread() {
  const id = openId, seq = ++threadSeq;
  if (!id || !signedIn) return;
  try {
    const d = await api("GET", convPath(id));
    if (id === openId && seq === threadSeq) renderThread(d);
  } catch (e) {
    if (id !== openId || seq !== threadSeq) return;
    if (e.status === 404) { toast("This conversation no longer exists.", "", { kind: "error" }); closeThread(); }
    else if (e.status === 403) { toast(e.message, "", { kind: "error" }); if (!current) closeThread(); }
    else showError(e);
  }
}
function perms(c) {
  const st = c ? c.state : null, name = me ? me.name : "";
  const mine = st === "human" && c.owner === name, other = st === "human" && !!c.owner && c.owner !== name;
  const admin = me && me.role === "admin", closed = st === "closed", offered = st === "queued" && c.offered_to === name;
  let hint;
  if (!c) hint = "";
  else if (closed) hint = "This thread is resolved.";
  else if (mine) hint = "You own this thread. Release it to hand it back to the bot.";
  else if (other) hint = "Owned by " + c.owner + " — you can read it and add internal notes; replying is disabled.";
  else if (offered) hint = "Offered to you — accept it, or just reply to take it.";
  else if (st === "queued") hint = "Waiting for a concierge — replying claims it for you.";
  else if (st === "bot") hint = "The bot is handling this thread. Claim it to take over.";
  const reason = closed ? "The thread is resolved" : other ? "Owned by " + c.owner : "";
  return {
    hint, mine, other, offered,
    claim: !!c && !closed && !mine && !other, claimWhy: mine ? "You already own this thread" : reason,
    release: !!c && (mine || (admin && st === "human")), releaseWhy: closed ? reason : other ? reason : "Only the owner can release it",
    resolve: !!c && !closed && (mine || st === "queued" || st === "bot" || admin), resolveWhy: reason,
    transfer: !!c && !closed && (mine || st === "queued" || admin), transferWhy: reason || "Claim it first",
    reply: !!c && !closed && !other && st !== "bot", replyWhy: reason || (st === "bot" ? "The bot is handling this thread — claim it to reply" : ""),
  };
}
function applyPerms() {
  const p = perms(current);
  const set = (btn, ok, why, base) => { btn.disabled = busy || !ok; btn.title = ok ? base : why || ""; };
  set(E.claim, p.claim, p.claimWhy, "Claim this thread (c)");
  E.claim.firstChild.nodeValue = p.offered ? "Accept" : "Claim";
  set(E.release, p.release, p.releaseWhy, "Release to the bot (e)");
  set(E.resolve, p.resolve, p.resolveWhy, "Resolve (x)");
  set(E.transfer, p.transfer, p.transferWhy, "Transfer to a team or a concierge (t)");
  set(E.send, p.reply, p.replyWhy, "Send (Ctrl+Enter)");
  E.reply.disabled = !p.reply; E.choices.disabled = !p.reply || !!pending; E.attach.disabled = busy || !p.reply;
  E.reply.placeholder = p.reply ? "Reply to the customer…  (Ctrl+Enter to send)" : (p.replyWhy || "Replying is not possible") + ".";
  E["release-go"].disabled = busy || !p.release; E["transfer-go"].disabled = busy || !p.transfer;
  E.note.disabled = !current; E["add-note"].disabled = busy || !current;
  for (const b of E.brief.querySelectorAll("button.suggestion")) b.disabled = !p.reply;
  E["thread-hint"].textContent = p.hint;
}
function renderThread(d) {
  const c = d.conversation;
  current = c;
  E["thread-title"].textContent = contactName(c);
  const st = E["thread-state"];
  st.dataset.state = c.state;
  st.textContent = c.state + (c.state === "human" && c.owner ? " · " + c.owner + (c.owner === me.name ? " (you)" : "") : "")
    + (c.state === "queued" && c.offered_to ? " · offered to " + (c.offered_to === me.name ? "you" : c.offered_to) : "");
  const held = c.state === "queued" || c.state === "human";
  E["thread-meta"].replaceChildren(...[prioEl(c.handoff), held ? timerEl(c.waiting_since, "Waiting") : null, held ? slaEl(c.sla) : null].filter(Boolean));
  const ct = c.contact || {};
  E["thread-sub"].textContent = [ct.name && ct.phone ? ct.phone : null, !ct.phone && ct.id !== contactName(c) ? ct.id : null, c.channel_kind || c.channel,
    c.handoff ? "team " + c.handoff.team : null, c.handoff && c.handoff.requested_by ? "handed over by " + c.handoff.requested_by : null, c.conversation].filter(Boolean).join(" · ");
  renderHistory(d.messages || [], d.notes || [], c);
  renderBrief(d.brief, c, d.messages || [], d.consent);
  applyPerms();
}
function statusMark(s) {
  return { pending: ["◷", "Pending"], sent: ["✓", "Sent"], delivered: ["✓✓", "Delivered"], read: ["✓✓ read", "Read"], failed: ["⚠ failed", "Delivery failed"] }[s] || null;
}
function renderHistory(messages, notes, c) {
  const key = JSON.stringify([messages, notes, c.contact]);
  if (key === historyKey) { if (scrollToEnd) { E.history.scrollTop = E.history.scrollHeight; scrollToEnd = false; } return; }
  historyKey = key;
  const h = E.history, atEnd = h.scrollHeight - h.scrollTop - h.clientHeight < 60, prevTop = h.scrollTop;
  const entries = messages.map((m) => ({ at: m.at, m })).concat(notes.map((n, i) => ({ at: n.at, n, i })));
  entries.sort((a, b) => a.at - b.at);
  const frag = document.createDocumentFragment();
  let day = "";
  for (const x of entries) {
    const dstr = new Date(x.at).toDateString();
    if (dstr !== day) { day = dstr; frag.append(el("div", { class: "day" }, new Date(x.at).toLocaleDateString([], { weekday: "short", day: "numeric", month: "short", year: "numeric" }))); }
    const time = el("time", { datetime: new Date(x.at).toISOString(), title: new Date(x.at).toLocaleString() }, hhmm(x.at));
    if (x.n) {
      frag.append(el("div", { class: "msg note", "data-id": "note-" + x.at + "-" + x.i },
        el("span", { class: "meta" }, "Internal note · " + x.n.author + " · ", time), x.n.body));
      continue;
    }
    const m = x.m, a = m.author || {}, kind = a.kind || (m.direction === "in" ? "customer" : "agent");
    const who = kind === "customer" ? contactName(c) : kind === "agent" ? "Bot" + (a.name ? " · " + a.name : "")
      : kind === "system" ? "System" : (a.name || "Concierge");
    const mark = m.direction === "out" ? statusMark(m.status) : null;
    frag.append(el("div", { class: "msg " + (m.direction === "in" ? "in" : "out") + " by-" + kind, "data-id": m.id, "data-seq": m.seq },
      el("span", { class: "meta" }, who + " · ", time, mark ? el("span", { class: "st " + m.status, title: mark[1] }, mark[0]) : null),
      messageBody(m)));
  }
  if (!entries.length) frag.append(el("p", { class: "muted" }, "No messages yet."));
  h.replaceChildren(frag);
  if (scrollToEnd || atEnd) h.scrollTop = h.scrollHeight; else h.scrollTop = prevTop;
  scrollToEnd = false;
}
// The kinds shown in their own form; every other kind is its text.
// ---------- media ----------
// Kept media is read with the concierge's token (an <img src> cannot send it) and shown from
// a blob URL, fetched once per page.
const mediaUrls = new Map();
function mediaUrl(id, variant) {
  const key = id + (variant ? "?" + variant : "");
  if (!mediaUrls.has(key)) {
    const path = "/api/v1/media/" + encodeURIComponent(id) + (variant ? "?variant=" + variant : "");
    mediaUrls.set(key, fetch(path, { headers: { Authorization: "Bearer " + token }, cache: "no-store" })
      .then((r) => { if (!r.ok) throw new Error("HTTP " + r.status); return r.blob(); })
      .then((b) => URL.createObjectURL(b))
      .catch((e) => { mediaUrls.delete(key); throw e; }));
  }
  return mediaUrls.get(key);
}
function forgetMedia() {
  for (const url of mediaUrls.values()) url.then((u) => URL.revokeObjectURL(u), () => {});
  mediaUrls.clear();
}
function fmtBytes(n) {
  return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.ceil(n / 1024)) + " KB";
}
function mediaBody(c) {
  const kind = c.kind || "media", kept = c.kept || {};
  const caption = c.caption ? el("div", { class: "caption" }, c.caption) : null;
  if (kept.state !== "stored") {
    const why = kept.state === "unavailable" ? "could not be read: " + kept.reason : "not downloaded yet";
    return el("div", { class: "media missing" }, el("span", {}, "📎 " + kind + " · " + why), caption);
  }
  const info = kept.mime + (kept.width ? " · " + kept.width + "×" + kept.height : "") + " · " + fmtBytes(kept.bytes);
  const failed = (view) => () => view.replaceWith(el("span", { class: "muted" }, "📎 " + kind + " · it could not be loaded"));
  let view;
  if (kept.mime.startsWith("image/")) {
    view = el("img", { class: "media-image", alt: c.caption || "A photo", title: "Open the original · " + info, tabindex: "0" });
    // The thread keeps its end in view when the photo's height arrives.
    view.addEventListener("load", () => {
      const h = E.history;
      if (h.contains(view) && h.scrollHeight - h.scrollTop - h.clientHeight < view.height + 80) h.scrollTop = h.scrollHeight;
    });
    mediaUrl(kept.id, "thumb").then((u) => { view.src = u; }, failed(view));
    const open = () => mediaUrl(kept.id).then((u) => window.open(u, "_blank", "noopener"), () => toast("The original could not be loaded", "", { kind: "error" }));
    view.addEventListener("click", open);
    view.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
  } else if (kept.mime.startsWith("audio/") || kept.mime.startsWith("video/")) {
    view = el(kept.mime.startsWith("audio/") ? "audio" : "video", { class: "media-player", controls: true, preload: "metadata" });
    mediaUrl(kept.id).then((u) => { view.src = u; }, failed(view));
  } else {
    view = el("button", { class: "media-file", type: "button" }, "⬇ Download the " + kind);
    view.addEventListener("click", () => mediaUrl(kept.id).then((u) => {
      const a = el("a", { href: u, download: (c.caption || kind).replace(/[\\/:*?"<>|]+/g, "_") });
      document.body.append(a); a.click(); a.remove();
    }, () => toast("The file could not be loaded", "", { kind: "error" })));
  }
  const words = kept.transcript ? el("blockquote", { class: "transcript", title: "What the voice note says (transcribed)" }, kept.transcript)
    : kept.transcript_problem ? el("div", { class: "muted transcript-missing" }, "Not transcribed: " + kept.transcript_problem) : null;
  return el("div", { class: "media" }, view, el("div", { class: "muted media-info" }, info), words, caption);
}

function messageBody(m) {
  const c = m.content || {};
  if (m.kind === "deleted") return el("em", { class: "deleted" }, "Deleted by the customer");
  if (m.kind === "media" && c.type === "media") return mediaBody(c);
  if (m.kind === "order" && Array.isArray(c.items)) {
    const rows = c.items.map((i) => el("tr", {}, el("td", {}, String(i.quantity) + " ×"), el("td", {}, i.product),
      el("td", { class: "num" }, i.unit_price ? i.unit_price + (i.currency ? " " + i.currency : "") : "")));
    return el("div", { class: "card-body" }, el("strong", {}, "Order"), el("span", { class: "muted" }, " · catalogue " + (c.catalog_id || "?")),
      el("table", { class: "order" }, ...rows), c.text ? el("div", {}, c.text) : null);
  }
  if (m.kind === "contacts" && Array.isArray(c.contacts)) {
    return el("div", { class: "card-body" }, el("strong", {}, c.contacts.length > 1 ? "Contact cards" : "Contact card"),
      ...c.contacts.map((k) => el("div", { class: "contact-card" }, el("div", {}, k.name || "(no name)"),
        ...(k.phones || []).concat(k.emails || []).map((v) => el("div", { class: "muted" }, v)))));
  }
  if (m.kind === "form_reply" && c.answers && typeof c.answers === "object") {
    const rows = Object.entries(c.answers).map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, typeof v === "string" ? v : JSON.stringify(v))));
    return el("div", { class: "card-body" }, el("strong", {}, "Form answered"), el("table", { class: "form" }, ...rows));
  }
  const facts = (data) => data && typeof data === "object" && !Array.isArray(data)
    ? Object.entries(data).map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, typeof v === "string" ? v : JSON.stringify(v))))
    : [];
  if (m.kind === "event" && c.type === "event") {
    // What the merchant's systems reported (a payment, a shipment): for the agents and the team.
    return el("div", { class: "card-body event" }, el("strong", {}, c.name), el("span", { class: "muted" }, " · from " + (c.service || "our systems")),
      el("table", { class: "form" }, ...facts(c.data)));
  }
  if (m.kind === "products" && Array.isArray(c.products)) {
    const rows = c.products.map((p) => el("tr", {}, el("td", {}, p.name), el("td", { class: "num" }, p.price || ""),
      el("td", { class: "muted" }, p.available === false ? "sold out" : "")));
    return el("div", { class: "card-body" }, el("div", {}, c.body || ""), el("strong", {}, "Products shown"), el("table", { class: "order" }, ...rows));
  }
  if (m.kind === "payment_link" && c.type === "payment_link") {
    const link = el("a", { href: c.url, target: "_blank", rel: "noopener noreferrer" }, c.label);
    return el("div", { class: "card-body" }, el("div", {}, c.body || ""), el("strong", {}, "Payment button: "), link);
  }
  if (m.kind === "flow" && c.type === "flow") {
    return el("div", { class: "card-body" }, el("div", {}, c.body || ""), el("strong", {}, "Form sent: "), el("span", {}, c.flow + " · " + c.cta));
  }
  if (m.kind === "template" && c.type === "template") {
    const label = c.name ? c.name + (c.language ? "." + c.language : "") : "text";
    const facts = c.context && typeof c.context === "object" && !Array.isArray(c.context)
      ? Object.entries(c.context).map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, typeof v === "string" ? v
        : Array.isArray(v) && v.every((x) => typeof x !== "object") ? v.join(", ") : JSON.stringify(v))))
      : [];
    const context = facts.length ? el("details", { class: "context" }, el("summary", {}, "What our systems said"), el("table", { class: "form" }, ...facts))
      : c.context != null ? el("details", { class: "context" }, el("summary", {}, "What our systems said"), el("code", {}, JSON.stringify(c.context))) : null;
    return el("div", { class: "card-body notification" }, el("strong", {}, "Notification"), el("span", { class: "muted" }, " · " + label),
      el("div", {}, c.text || m.text), context);
  }
  return m.text;
}

// ---------- channel health ----------
let channelHealth = [];
async function refreshChannels() {
  if (!signedIn) return;
  try { channelHealth = ((await api("GET", "/api/v1/channels")) || {}).channels || []; } catch (_) { return; }
  const bad = channelHealth.filter((c) => c.health !== "ok");
  E.health.hidden = !bad.length;
  E.health.textContent = "⚠ " + (bad.length === 1 ? bad[0].id : bad.length + " channels");
  E.health.title = bad.map((c) => c.id + ": " + c.recent + " fault(s) reported in 24 h").join("\n");
  if (!E["health-panel"].hidden) renderChannels();
}
function renderChannels() {
  const rows = channelHealth.map((c) => el("section", { class: "channel " + c.health },
    el("h3", {}, c.id, el("span", { class: "muted" }, " · " + c.kind + " · " + (c.health === "ok" ? "no fault in 24 h" : c.recent + " fault(s) in 24 h"))),
    c.faults.length ? el("ul", {}, ...c.faults.map((f) => el("li", {},
      el("time", { datetime: new Date(f.at).toISOString() }, new Date(f.at).toLocaleString()), " ",
      el("strong", {}, (f.code ? f.code + " " : "") + f.title), f.detail ? el("div", { class: "muted" }, f.detail) : null))) : null));
  E["health-list"].replaceChildren(...rows);
}
function openChannels() { renderChannels(); E["health-panel"].hidden = false; E["health-close"].focus(); }

// What the customer agreed to receive on this channel, and every decision behind it.
function consentBlock(consent) {
  if (!consent || !Array.isArray(consent.history)) return [];
  const word = (v) => v === true ? "yes" : v === false ? "no" : "not asked";
  const head = el("p", { class: "consent-now" }, "Offers: " + word(consent.marketing) + " · Updates: " + (consent.utility === false ? "no (opted out of everything)" : "yes"));
  if (!consent.history.length) return [el("h4", null, "Consent"), head];
  const rows = consent.history.slice().reverse().map((h) => el("li", null,
    (h.granted ? "Said yes to " : "Said no to ") + (h.purpose === "marketing" ? "offers" : "updates") + " · " + h.source.replace(/_/g, " ")
    + " · " + new Date(h.at).toLocaleString([], { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" })
    + (h.proof ? " · “" + h.proof + "”" : "")));
  return [el("h4", null, "Consent"), head, el("details", { class: "consent-history" }, el("summary", null, "History (" + consent.history.length + ")"), el("ul", null, rows))];
}

function renderBrief(b, c, messages, consent) {
  // The customer's latest photos go with the brief: a concierge sees what the handoff is about.
  const photos = messages.filter((m) => m.direction === "in" && m.kind === "media" && m.content && m.content.kept
    && m.content.kept.state === "stored" && String(m.content.kept.mime || "").startsWith("image/")).slice(-4);
  const key = JSON.stringify([b, c.handoff && c.handoff.reason, photos.map((m) => m.content.kept.id), consent]);
  if (key === briefKey) return;
  briefKey = key;
  const out = [];
  const who = b ? (b.written_by === "llm" ? "AI-written" : "by the gateway") : "";
  out.push(el("h3", null, el("span", null, "Handoff brief"), el("span", { title: "Who wrote this brief" }, who)));
  if (!b) {
    out.push(el("p", { class: "muted" }, c.handoff ? "No brief. Reason: " + c.handoff.reason : "No handoff brief for this thread."));
  } else {
    const dl = el("dl");
    for (const [k, v] of [["Reason", b.reason || (c.handoff && c.handoff.reason)], ["Summary", b.summary], ["Intent", b.intent], ["Mood", b.mood]])
      if (v) dl.append(el("dt", null, k), el("dd", null, v));
    out.push(dl);
    const list = (title, items) => { if (items && items.length) out.push(el("h4", null, title), el("ul", null, items.map((t) => el("li", null, t)))); };
    list("Facts", b.facts); list("Already tried", b.tried); list("Last messages", b.last_messages);
    if (photos.length) {
      const row = el("div", { class: "brief-photos" });
      for (const m of photos) {
        const img = el("img", { alt: m.content.caption || "The customer's photo", title: "Show it in the thread", tabindex: "0" });
        mediaUrl(m.content.kept.id, "thumb").then((u) => { img.src = u; }, () => img.remove());
        const show = () => { const at = E.history.querySelector('[data-id="' + m.id + '"]'); if (at) at.scrollIntoView({ block: "center" }); };
        img.addEventListener("click", show);
        img.addEventListener("keydown", (e) => { if (e.key === "Enter") show(); });
        row.append(img);
      }
      out.push(el("h4", null, "The customer's photos"), row);
    }
    lastSuggestions = b.suggested_replies || [];
    if (b.suggested_replies && b.suggested_replies.length) {
      out.push(el("h4", null, "Suggested replies"));
      for (const s of b.suggested_replies) out.push(el("button", { class: "btn suggestion", type: "button", title: "Put this text in the reply box", onclick: () => useSuggestion(s) }, s));
    }
  }
  out.push(...consentBlock(consent));
  E.brief.replaceChildren(...out);
}
function useSuggestion(text) {
  if (E.reply.disabled) return;
  // Replace an empty box or an untouched suggestion; otherwise keep what the concierge typed.
  const cur = E.reply.value.trim(), sugg = (current && lastSuggestions) || [];
  E.reply.value = !cur || sugg.includes(cur) ? text : E.reply.value.replace(/\s*$/, "\n") + text;
  drafts.set(openId, E.reply.value);
  text = E.reply.value;
  E.reply.focus();
  E.reply.setSelectionRange(text.length, text.length);
}

// ---------- actions ----------
async function act(fn, ok) {
  if (!openId || busy) return;
  const id = openId;
  busy = true; applyPerms();
  try { await fn(id); if (ok) toast(ok, "", { kind: "ok" }); return true; }
  catch (e) { showError(e); return false; }
  finally { busy = false; applyPerms(); if (id === openId) refreshThread(); scheduleQueueRefresh(); }
}
const post = (id, action, body) => api("POST", convPath(id) + "/" + action, body);
async function claimAndOpen(id) {
  try { await post(id, "claim"); toast("Claimed.", "", { kind: "ok" }); }
  catch (e) { showError(e); }
  scheduleQueueRefresh();
  await openConversation(id);
}
function doClaim() {
  if (!openId) { if (cursorId) claimAndOpen(cursorId); return; }
  if (!E.claim.disabled) act((id) => post(id, "claim"), "Claimed.");
}
function closePickers() { E["release-box"].hidden = true; E["transfer-box"].hidden = true; }
function openRelease() {
  if (!openId || E.release.disabled) return;
  E["transfer-box"].hidden = true; E["release-box"].hidden = false;
  E["release-note"].focus();
}
async function doRelease() {
  if (E["release-go"].disabled) return;
  const note = E["release-note"].value.trim();
  if (await act((id) => post(id, "release", note ? { note } : {}), "Released to the bot.")) { E["release-note"].value = ""; closePickers(); }
}
function doResolve() { if (openId && !E.resolve.disabled) act((id) => post(id, "resolve"), "Resolved."); }
async function openTransfer() {
  if (!openId || E.transfer.disabled) return;
  E["release-box"].hidden = true; E["transfer-box"].hidden = false;
  const sel = E["transfer-target"];
  sel.replaceChildren(el("option", { value: "" }, "Loading…"));
  sel.focus();
  try {
    const [t, c] = await Promise.all([api("GET", "/api/v1/teams"), api("GET", "/api/v1/concierges")]);
    const teams = el("optgroup", { label: "Teams" }, (t.teams || []).map((x) => el("option", { value: "team:" + x.name }, x.name + (x.open ? "" : " (closed)"))));
    const people = el("optgroup", { label: "Concierges" }, (c.concierges || []).filter((x) => x.name !== me.name).map((x) =>
      el("option", { value: "concierge:" + x.name }, x.name + " — " + (x.online ? x.status : "offline") + " · " + (x.open_threads ?? 0) + "/" + (x.capacity ?? "?") + " threads")));
    sel.replaceChildren(teams, people);
  } catch (e) { sel.replaceChildren(); showError(e); }
}
async function doTransfer() {
  const v = E["transfer-target"].value;
  if (!v || E["transfer-go"].disabled) return;
  const i = v.indexOf(":"), kind = v.slice(0, i), name = v.slice(i + 1);
  const body = kind === "team" ? { team: name } : { concierge: name };
  if (await act((id) => post(id, "transfer", body), "Transferred to " + name + ".")) closePickers();
}
async function doSend() {
  if (!openId || E.send.disabled) return;
  const text = E.reply.value.trim();
  const file = pending;
  if (!text && !file) { E.reply.focus(); return; }
  const choices = file ? [] : E.choices.value.split(",").map((s) => s.trim()).filter(Boolean);
  const id = openId;
  scrollToEnd = true;
  const send = async (cid) => {
    const body = choices.length ? { text, choices } : { text };
    if (file) {
      const kept = await upload(cid, file);
      body.media = { id: kept.id, name: kept.name || file.name };
    }
    return post(cid, "messages", body);
  };
  if (await act(send)) {
    drafts.delete(id);
    if (id === openId) { E.reply.value = ""; E.choices.value = ""; setPending(null); E.reply.focus(); }
  }
}

// ---------- attachments ----------
// One file waits beside the reply box (picked, pasted or dropped); it is uploaded to the
// thread when the reply is sent, and goes with the reply's words as its caption.
const MAX_UPLOAD = 16 * 1024 * 1024;
function fmtSize(n) { return n >= 1048576 ? (n / 1048576).toFixed(1) + " MB" : Math.max(1, Math.ceil(n / 1024)) + " KB"; }
function setPending(file) {
  if (pendingPreview) { URL.revokeObjectURL(pendingPreview); pendingPreview = null; }
  pending = file;
  if (!file) { E.attachment.hidden = true; E.attachment.replaceChildren(); applyPerms(); return; }
  const kids = [];
  if (file.type.startsWith("image/")) {
    pendingPreview = URL.createObjectURL(file);
    kids.push(el("img", { class: "attachment-preview", src: pendingPreview, alt: "" }));
  } else kids.push(el("span", { class: "attachment-icon", "aria-hidden": "true" },
    file.type.startsWith("audio/") ? "audio" : file.type.startsWith("video/") ? "video" : file.type === "application/pdf" ? "PDF" : "file"));
  const remove = el("button", { class: "btn attachment-remove", type: "button", "aria-label": "Remove the attachment", title: "Remove" }, "✕");
  remove.addEventListener("click", () => { setPending(null); E.reply.focus(); });
  kids.push(el("span", { class: "attachment-name" }, file.name || "pasted image"), el("span", { class: "muted" }, fmtSize(file.size)),
    el("span", { class: "muted attachment-hint" }, "Your words go with it as its caption"), remove);
  E.attachment.replaceChildren(...kids);
  E.attachment.hidden = false;
  applyPerms();
}
function pick(file) {
  if (!file || E.attach.disabled) return;
  if (file.size > MAX_UPLOAD) { toast("This file is too large", "Files up to " + fmtSize(MAX_UPLOAD) + " can be sent.", { kind: "error" }); return; }
  if (!file.size) { toast("This file is empty", "", { kind: "error" }); return; }
  setPending(file);
  E.reply.focus();
}
async function upload(cid, file) {
  const path = convPath(cid) + "/media?name=" + encodeURIComponent(file.name || "image.png");
  let res;
  try {
    res = await fetch(path, { method: "POST", body: file, cache: "no-store",
      headers: { Authorization: "Bearer " + token, "Content-Type": file.type || "application/octet-stream", Accept: "application/json" } });
  } catch (_) { throw new ApiError(0, "The file could not be uploaded: the server cannot be reached."); }
  const data = await res.json().catch(() => null);
  if (res.status === 401) { if (signedIn) signOut("Your session has ended. Sign in again."); throw new ApiError(401, "This token is not valid."); }
  if (!res.ok) throw new ApiError(res.status, "The file was not sent: " + ((data && data.error) || "HTTP " + res.status) + ".");
  return data;
}
async function doNote() {
  if (!openId) return;
  const text = E.note.value.trim();
  if (!text) { E.note.focus(); return; }
  scrollToEnd = true;
  if (await act((id) => post(id, "notes", { text }))) E.note.value = "";
}

// ---------- live events ----------
function setConnection(on) {
  live = on;
  E.connection.textContent = on ? "live" : "offline";
  E.connection.classList.toggle("live", on);
  E.connection.title = on ? "Receiving live updates" : "Not connected — reconnecting";
}
async function streamLoop() {
  const gen = ++streamGen;
  let delay = 1000;
  while (signedIn && gen === streamGen) {
    const ctl = new AbortController();
    streamCtl = ctl;
    try {
      const headers = { Authorization: "Bearer " + token, Accept: "text/event-stream" };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      const res = await fetch("/api/v1/events", { headers, signal: ctl.signal, cache: "no-store" });
      if (res.status === 401) { if (signedIn && gen === streamGen) signOut("Your session has ended. Sign in again."); return; }
      if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
      lastChunkAt = Date.now();
      setConnection(true);
      delay = 1000;
      scheduleQueueRefresh();
      if (openId) scheduleThreadRefresh();
      await readStream(res.body.getReader(), gen);
    } catch (_) { /* fall through to reconnect */ }
    if (gen !== streamGen) return;
    setConnection(false);
    if (!signedIn) return;
    await sleep(delay);
    delay = Math.min(10000, delay * 2);
  }
}
async function readStream(reader, gen) {
  const dec = new TextDecoder();
  let buf = "", name = "", data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done || gen !== streamGen) { try { reader.cancel(); } catch (_) { /* ignore */ } return; }
    lastChunkAt = Date.now();
    buf += dec.decode(value, { stream: true });
    for (;;) {
      const m = /\r\n|\r|\n/.exec(buf);
      if (!m || (m[0] === "\r" && m.index === buf.length - 1)) break; // a CRLF may be split across chunks
      const line = buf.slice(0, m.index);
      buf = buf.slice(m.index + m[0].length);
      if (line === "") {
        if (data.length) { try { onEvent(name || "message", data.join("\n")); } catch (e) { console.error(e); } }
        name = ""; data = [];
        continue;
      }
      if (line[0] === ":") continue;
      const i = line.indexOf(":");
      const field = i < 0 ? line : line.slice(0, i);
      let val = i < 0 ? "" : line.slice(i + 1);
      if (val[0] === " ") val = val.slice(1);
      if (field === "event") name = val;
      else if (field === "data") data.push(val);
      else if (field === "id" && !val.includes("\0")) lastEventId = val;
    }
  }
}
function onEvent(name, raw) {
  let ev = {};
  try { ev = JSON.parse(raw) || {}; } catch (_) { ev = {}; }
  const type = name !== "message" ? name : ev.type || name;
  scheduleQueueRefresh();
  if (ev.conversation && ev.conversation === openId) scheduleThreadRefresh();
  const q = queue.find((i) => i.conversation === ev.conversation);
  const who = q ? contactName(q) : "";
  const detail = (...parts) => parts.filter(Boolean).join(" — ");
  if (type === "handoff") {
    const prio = ev.priority && ev.priority !== "normal" ? " (" + ev.priority + ")" : "";
    notify("New handoff" + prio + (ev.team ? " · " + ev.team : ""), detail(who, ev.text), ev.conversation);
  } else if (type === "offered" && me && ev.concierge === me.name) {
    notify("Offered to you", detail(who, ev.text, "press c or Accept to take it"), ev.conversation);
  } else if (type === "sla_breached") {
    notify("SLA breached", detail(who, ev.team && "team " + ev.team, ev.text), ev.conversation);
  }
}

// ---------- wiring ----------
E["sign-in-form"].addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = E.token.value.trim();
  if (!t) { E["sign-in-error"].textContent = "Paste your access token."; return; }
  signIn(t, false);
});
E["sign-out"].addEventListener("click", () => signOut(""));
E["status-toggle"].addEventListener("click", toggleStatus);
E.notify.addEventListener("click", () => askPermission(true));
E.app.addEventListener("click", () => askPermission(false), true);
E["help-open"].addEventListener("click", () => { E.help.hidden = false; E["help-close"].focus(); });
E["help-close"].addEventListener("click", () => { E.help.hidden = true; });
E.health.addEventListener("click", openChannels);
E["health-close"].addEventListener("click", () => { E["health-panel"].hidden = true; });
E["health-panel"].addEventListener("click", (ev) => { if (ev.target === E["health-panel"]) E["health-panel"].hidden = true; });
E.help.addEventListener("click", (ev) => { if (ev.target === E.help) E.help.hidden = true; });
E.filter.addEventListener("input", renderQueue);
E.claim.addEventListener("click", doClaim);
E.release.addEventListener("click", openRelease);
E.resolve.addEventListener("click", doResolve);
E.transfer.addEventListener("click", openTransfer);
E["release-box"].addEventListener("submit", (ev) => { ev.preventDefault(); doRelease(); });
E["transfer-box"].addEventListener("submit", (ev) => { ev.preventDefault(); doTransfer(); });
for (const b of document.querySelectorAll(".picker .cancel")) b.addEventListener("click", closePickers);
E["reply-form"].addEventListener("submit", (ev) => { ev.preventDefault(); doSend(); });
E.attach.addEventListener("click", () => E["attach-file"].click());
E["attach-file"].addEventListener("change", () => { pick(E["attach-file"].files[0]); E["attach-file"].value = ""; });
E.reply.addEventListener("paste", (ev) => {
  const file = ev.clipboardData && ev.clipboardData.files && ev.clipboardData.files[0];
  if (file) { ev.preventDefault(); pick(file); }
});
const composer = E["reply-form"].closest(".composer");
composer.addEventListener("dragover", (ev) => {
  if (E.attach.disabled || !ev.dataTransfer || !Array.from(ev.dataTransfer.types || []).includes("Files")) return;
  ev.preventDefault(); composer.classList.add("dropping");
});
composer.addEventListener("dragleave", () => composer.classList.remove("dropping"));
composer.addEventListener("drop", (ev) => {
  composer.classList.remove("dropping");
  if (!ev.dataTransfer || !ev.dataTransfer.files.length) return;
  ev.preventDefault(); pick(ev.dataTransfer.files[0]);
});
E["note-form"].addEventListener("submit", (ev) => { ev.preventDefault(); doNote(); });
E.reply.addEventListener("input", () => { if (openId) drafts.set(openId, E.reply.value); });
window.addEventListener("focus", clearUnread);
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") clearUnread(); });
document.addEventListener("pointerdown", clearUnread);

document.addEventListener("keydown", (ev) => {
  if (!signedIn) return;
  clearUnread();
  const t = ev.target, k = ev.key;
  if (k === "Escape") {
    if (!E.help.hidden) { E.help.hidden = true; ev.preventDefault(); return; }
    if (!E["health-panel"].hidden) { E["health-panel"].hidden = true; ev.preventDefault(); return; }
    const picker = !E["release-box"].hidden || !E["transfer-box"].hidden;
    closePickers();
    if (isTextField(t) || picker) { if (document.activeElement && document.activeElement.blur) document.activeElement.blur(); ev.preventDefault(); }
    return;
  }
  if (isTextField(t)) {
    if (k === "Enter" && (ev.ctrlKey || ev.metaKey) && (t === E.reply || t === E.choices)) { ev.preventDefault(); doSend(); }
    else if (k === "Enter" && t === E["transfer-target"]) { ev.preventDefault(); doTransfer(); }
    else if (k === "Enter" && t === E.choices) ev.preventDefault(); // only Ctrl/Cmd+Enter sends
    else if (t === E.filter && (k === "ArrowDown" || k === "ArrowUp")) { ev.preventDefault(); moveCursor(k === "ArrowDown" ? 1 : -1); }
    else if (t === E.filter && k === "Enter") {
      ev.preventDefault();
      const target = queueItems().some((li) => li.dataset.conversation === cursorId) ? cursorId : (queueItems()[0] || {}).dataset?.conversation;
      if (target) openConversation(target);
    }
    return;
  }
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (!E.help.hidden && k !== "?") return;
  const onButton = t && (t.tagName === "BUTTON" || t.tagName === "A");
  const focusEl = (x) => { ev.preventDefault(); if (!x.disabled) x.focus(); };
  switch (k) {
    case "j": case "ArrowDown": ev.preventDefault(); moveCursor(1); break;
    case "k": case "ArrowUp": ev.preventDefault(); moveCursor(-1); break;
    case "Enter": if (!onButton && cursorId) { ev.preventDefault(); openConversation(cursorId); } break;
    case "c": ev.preventDefault(); doClaim(); break;
    case "r": if (openId) focusEl(E.reply); break;
    case "n": if (openId) focusEl(E.note); break;
    case "e": ev.preventDefault(); openRelease(); break;
    case "x": ev.preventDefault(); doResolve(); break;
    case "t": ev.preventDefault(); openTransfer(); break;
    case "/": focusEl(E.filter); E.filter.select(); break;
    case "?": ev.preventDefault(); E.help.hidden = !E.help.hidden; if (!E.help.hidden) E["help-close"].focus(); break;
    default: break;
  }
});

const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) { E.signin.hidden = true; signIn(saved, true); } else E.token.focus();
})();
