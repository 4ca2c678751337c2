// Roost Mail: a small JMAP client (RFC 8620, 8621) without a build step.
// Every value that comes from a message is put into the page as text
// (textContent), never as markup; HTML bodies go into a sandboxed frame
// whose policy blocks remote content.
"use strict";

const USING = ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail",
  "urn:ietf:params:jmap:submission"];
const PAGE = 50;
const $ = (id) => document.getElementById(id);

const S = {
  auth: null, session: null, acc: null, identity: null,
  mailboxes: [], current: null, search: "", page: 0, total: 0,
  emails: [], selected: -1, open: null, compose: null, attachments: [],
  state: null, stream: null,
};

// ---- JMAP ----

function headers(extra) {
  return Object.assign({ "Authorization": S.auth, "X-Requested-With": "roost" }, extra || {});
}

async function api(calls) {
  const res = await fetch(S.session.apiUrl, {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify({ using: USING, methodCalls: calls }),
  });
  if (res.status === 401) { logout(); throw new Error("not logged in"); }
  if (!res.ok) throw new Error("request failed: " + res.status);
  const out = await res.json();
  const byTag = {};
  for (const [name, args, tag] of out.methodResponses) {
    if (name === "error") throw new Error(args.type + (args.description ? ": " + args.description : ""));
    if (!byTag[tag]) byTag[tag] = args;
  }
  return byTag;
}

function url(template, vars) {
  return template.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(vars[k] ?? ""));
}

// ---- login ----

async function login(user, pass) {
  const auth = "Basic " + btoa(unescape(encodeURIComponent(user + ":" + pass)));
  const res = await fetch("/jmap/session", { headers: { "Authorization": auth, "X-Requested-With": "roost" } });
  if (res.status === 401 || res.status === 403) throw new Error("Wrong address or password.");
  if (!res.ok) throw new Error("The server answered " + res.status + ".");
  S.auth = auth;
  S.session = await res.json();
  S.acc = S.session.primaryAccounts["urn:ietf:params:jmap:mail"];
  sessionStorage.setItem("roost-auth", auth);
}

function logout() {
  sessionStorage.removeItem("roost-auth");
  if (S.stream) S.stream.abort();
  location.reload();
}

// ---- folders ----

function roleOf(id) { const m = S.mailboxes.find((x) => x.id === id); return m && m.role; }
function byRole(role) { return S.mailboxes.find((m) => m.role === role); }

async function loadMailboxes() {
  const r = await api([["Mailbox/get", { accountId: S.acc }, "m"]]);
  S.mailboxes = r.m.list.sort((a, b) => a.sortOrder - b.sortOrder || a.name.localeCompare(b.name));
  if (!S.current || !S.mailboxes.some((m) => m.id === S.current)) S.current = byRole("inbox").id;
  renderFolders();
}

function renderFolders() {
  const ul = $("folder-list");
  ul.replaceChildren();
  for (const m of S.mailboxes) {
    const li = document.createElement("li");
    li.tabIndex = 0;
    li.dataset.id = m.id;
    li.className = m.id === S.current && !S.search ? "current" : "";
    const name = document.createElement("span");
    name.textContent = m.name;
    li.append(name);
    if (m.unreadEmails > 0) {
      const c = document.createElement("span");
      c.className = "count";
      c.textContent = m.unreadEmails;
      li.append(c);
    }
    li.onclick = li.onkeydown = (ev) => {
      if (ev.type === "keydown" && ev.key !== "Enter") return;
      S.current = m.id; S.search = ""; S.page = 0; $("search").value = "";
      $("app").classList.remove("show-folders");
      renderFolders(); loadList().then(() => $("message-list").focus());
    };
    ul.append(li);
  }
  const sel = $("move-select");
  sel.replaceChildren(new Option("Move to\u2026", ""));
  for (const m of S.mailboxes) sel.append(new Option(m.name, m.id));
}

// ---- the message list ----

function fmtDate(iso) {
  const d = new Date(iso), now = new Date();
  return d.toDateString() === now.toDateString()
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : d.toLocaleDateString();
}

function fmtAddr(list) {
  return (list || []).map((a) => a.name || a.email).join(", ");
}

async function loadList() {
  const filter = S.search ? { text: S.search } : { inMailbox: S.current };
  const r = await api([
    ["Email/query", { accountId: S.acc, filter, sort: [{ property: "receivedAt", isAscending: false }],
      position: S.page * PAGE, limit: PAGE, calculateTotal: true }, "q"],
    ["Email/get", { accountId: S.acc, "#ids": { resultOf: "q", name: "Email/query", path: "/ids" },
      properties: ["from", "subject", "receivedAt", "preview", "keywords", "mailboxIds", "hasAttachment"] }, "g"],
  ]);
  const order = new Map(r.q.ids.map((id, i) => [id, i]));
  S.emails = r.g.list.sort((a, b) => order.get(a.id) - order.get(b.id));
  S.total = r.q.total;
  S.state = r.g.state;
  const keep = S.open ? S.emails.findIndex((e) => e.id === S.open) : -1;
  S.selected = keep >= 0 ? keep : Math.min(S.selected, S.emails.length - 1);
  renderList();
}

function renderList() {
  const m = S.mailboxes.find((x) => x.id === S.current);
  $("list-title").textContent = S.search ? "Search: " + S.search : (m ? m.name : "");
  const first = S.total ? S.page * PAGE + 1 : 0;
  $("page-info").textContent = first + "\u2013" + (S.page * PAGE + S.emails.length) + " of " + S.total;
  $("prev-page").disabled = S.page === 0;
  $("next-page").disabled = (S.page + 1) * PAGE >= S.total;
  const ul = $("message-list");
  ul.replaceChildren();
  if (S.emails.length === 0) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "No messages.";
    ul.append(li);
  }
  S.emails.forEach((e, i) => {
    const li = document.createElement("li");
    li.role = "option";
    li.dataset.id = e.id;
    li.className = [e.keywords.$seen ? "" : "unread", e.keywords.$flagged ? "flagged" : "",
      i === S.selected ? "selected" : ""].join(" ");
    const from = document.createElement("span"); from.className = "from";
    from.textContent = fmtAddr(e.from) || "(no sender)";
    const date = document.createElement("span"); date.className = "date";
    date.textContent = fmtDate(e.receivedAt);
    const subj = document.createElement("span"); subj.className = "subject";
    subj.textContent = (e.hasAttachment ? "\u{1F4CE} " : "") + (e.subject || "(no subject)");
    const pv = document.createElement("span"); pv.className = "preview";
    pv.textContent = e.preview || "";
    li.append(from, date, subj, pv);
    li.onclick = () => { S.selected = i; openMessage(e.id); };
    ul.append(li);
  });
}

function select(delta) {
  if (S.emails.length === 0) return;
  S.selected = Math.max(0, Math.min(S.emails.length - 1, S.selected + delta));
  renderList();
  const li = $("message-list").children[S.selected];
  if (li) li.scrollIntoView({ block: "nearest" });
}

// ---- reading ----

function sandboxed(html) {
  // The frame runs no script and gets no origin; its policy allows only
  // inline styles and inline (data:) images, so nothing is fetched from
  // the sender's servers when the message is read.
  const csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:";
  const f = document.createElement("iframe");
  f.setAttribute("sandbox", "allow-popups allow-popups-to-escape-sandbox");
  f.setAttribute("referrerpolicy", "no-referrer");
  f.title = "Message";
  f.srcdoc = '<!doctype html><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="' +
    csp + '"><base target="_blank">' + html;
  return f;
}

async function openMessage(id) {
  const r = await api([["Email/get", { accountId: S.acc, ids: [id],
    properties: ["from", "to", "cc", "replyTo", "subject", "sentAt", "receivedAt", "messageId",
      "references", "keywords", "mailboxIds", "textBody", "htmlBody", "attachments", "bodyValues"],
    fetchTextBodyValues: true, fetchHTMLBodyValues: true }, "e"]]);
  const e = r.e.list[0];
  if (!e) return;
  S.open = id;
  S.openEmail = e;
  $("reader").hidden = false;
  $("app").classList.add("reading");
  $("r-subject").textContent = e.subject || "(no subject)";
  const dl = $("r-headers");
  dl.replaceChildren();
  for (const [label, val] of [["From", fmtFull(e.from)], ["To", fmtFull(e.to)], ["Cc", fmtFull(e.cc)],
    ["Date", new Date(e.sentAt || e.receivedAt).toLocaleString()]]) {
    if (!val) continue;
    const dt = document.createElement("dt"); dt.textContent = label;
    const dd = document.createElement("dd"); dd.textContent = val;
    dl.append(dt, dd);
  }
  const body = $("r-body");
  body.replaceChildren();
  const html = (e.htmlBody || []).find((p) => p.type === "text/html");
  $("r-remote").hidden = true;
  if (html && e.bodyValues[html.partId]) {
    const text = e.bodyValues[html.partId].value;
    $("r-remote").hidden = !/(src|href|background)\s*=\s*["']?\s*(https?:)?\/\/|url\(\s*["']?(https?:)?\/\//i.test(text);
    body.append(sandboxed(text));
  } else {
    for (const p of e.textBody || []) {
      const v = e.bodyValues[p.partId];
      if (!v) continue;
      const pre = document.createElement("pre");
      pre.textContent = v.value;
      body.append(pre);
    }
  }
  const ul = $("r-attachments");
  ul.replaceChildren();
  for (const a of e.attachments || []) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.textContent = "\u2B07 " + (a.name || a.type) + " (" + Math.ceil(a.size / 1024) + " KB)";
    b.onclick = () => download(a);
    li.append(b);
    ul.append(li);
  }
  $("flag-btn").textContent = e.keywords.$flagged ? "Unflag" : "Flag";
  if (!e.keywords.$seen) {
    await api([["Email/set", { accountId: S.acc, update: { [id]: { "keywords/$seen": true } } }, "s"]]);
    await refresh();
  }
  renderList();
}

function fmtFull(list) {
  return (list || []).map((a) => a.name ? a.name + " <" + a.email + ">" : a.email).join(", ");
}

async function download(a) {
  const u = url(S.session.downloadUrl, { accountId: S.acc, blobId: a.blobId,
    name: a.name || "attachment", type: a.type || "application/octet-stream" });
  const res = await fetch(u, { headers: headers() });
  if (!res.ok) { alert("Download failed: " + res.status); return; }
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await res.blob());
  link.download = a.name || "attachment";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
}

function closeReader() {
  S.open = null;
  $("reader").hidden = true;
  $("app").classList.remove("reading");
  $("message-list").focus();
}

// ---- changing messages ----

async function update(id, patch) {
  const r = await api([["Email/set", { accountId: S.acc, update: { [id]: patch } }, "u"]]);
  if (r.u.notUpdated && r.u.notUpdated[id]) throw new Error(r.u.notUpdated[id].type);
}

async function moveTo(dest) {
  if (!S.open || !dest) return;
  await update(S.open, { mailboxIds: { [dest]: true } });
  closeReader();
  await refresh();
}

async function deleteOpen() {
  if (!S.open) return;
  const trash = byRole("trash");
  if (roleOf(S.current) === "trash" || !trash) {
    await api([["Email/set", { accountId: S.acc, destroy: [S.open] }, "d"]]);
  } else {
    await update(S.open, { mailboxIds: { [trash.id]: true } });
  }
  closeReader();
  await refresh();
}

async function toggleFlag() {
  if (!S.openEmail) return;
  const on = !S.openEmail.keywords.$flagged;
  await update(S.open, { "keywords/$flagged": on ? true : null });
  S.openEmail.keywords.$flagged = on;
  $("flag-btn").textContent = on ? "Unflag" : "Flag";
  await refresh();
}

async function markUnread() {
  if (!S.open) return;
  await update(S.open, { "keywords/$seen": null });
  closeReader();
  await refresh();
}

// ---- compose ----

function parseAddrs(text) {
  return text.split(/[,;]/).map((s) => s.trim()).filter(Boolean).map((s) => {
    const m = s.match(/^(.*)<([^>]+)>$/);
    return m ? { name: m[1].trim().replace(/^"|"$/g, "") || null, email: m[2].trim() } : { name: null, email: s };
  });
}

function quote(e) {
  const v = (e.textBody || []).map((p) => (e.bodyValues[p.partId] || {}).value || "").join("\n");
  return "\n\nOn " + new Date(e.sentAt || e.receivedAt).toLocaleString() + ", " + fmtAddr(e.from) +
    " wrote:\n" + v.split("\n").map((l) => "> " + l).join("\n");
}

function compose(mode) {
  const e = S.openEmail;
  S.compose = { mode, inReplyTo: null, references: null };
  S.attachments = [];
  $("c-to").value = ""; $("c-cc").value = ""; $("c-subject").value = ""; $("c-body").value = "";
  $("c-error").textContent = "";
  $("compose-title").textContent = { new: "New message", reply: "Reply", all: "Reply to all", fwd: "Forward" }[mode];
  if (e && mode !== "new") {
    const subj = e.subject || "";
    if (mode === "fwd") {
      $("c-subject").value = /^fwd?:/i.test(subj) ? subj : "Fwd: " + subj;
      $("c-body").value = "\n\n---------- Forwarded message ----------\nFrom: " + fmtFull(e.from) +
        "\nSubject: " + subj + "\n\n" + quote(e).replace(/^\n\nOn [^\n]*\n/, "");
      S.attachments = (e.attachments || []).map((a) => ({ blobId: a.blobId, type: a.type, name: a.name }));
    } else {
      $("c-subject").value = /^re:/i.test(subj) ? subj : "Re: " + subj;
      $("c-to").value = fmtFull(e.replyTo && e.replyTo.length ? e.replyTo : e.from);
      if (mode === "all") {
        const me = S.session.username.toLowerCase();
        $("c-cc").value = fmtFull([...(e.to || []), ...(e.cc || [])].filter((a) => a.email.toLowerCase() !== me));
      }
      $("c-body").value = quote(e);
      S.compose.inReplyTo = e.messageId;
      S.compose.references = [...(e.references || []), ...(e.messageId || [])];
    }
  }
  renderAttachments();
  $("compose").showModal();
  (mode === "new" || mode === "fwd" ? $("c-to") : $("c-body")).focus();
  if (mode !== "new" && mode !== "fwd") $("c-body").setSelectionRange(0, 0);
}

function renderAttachments() {
  const ul = $("c-attachments");
  ul.replaceChildren();
  for (const a of S.attachments) {
    const li = document.createElement("li");
    li.textContent = a.name || a.type;
    ul.append(li);
  }
}

async function attachFiles(files) {
  for (const f of files) {
    const res = await fetch(url(S.session.uploadUrl, { accountId: S.acc }), {
      method: "POST", headers: headers({ "Content-Type": f.type || "application/octet-stream" }), body: f });
    if (!res.ok) { $("c-error").textContent = "Upload failed: " + res.status; return; }
    const b = await res.json();
    S.attachments.push({ blobId: b.blobId, type: b.type, name: f.name });
  }
  renderAttachments();
}

async function send() {
  const to = parseAddrs($("c-to").value), cc = parseAddrs($("c-cc").value);
  if (to.length + cc.length === 0) { $("c-error").textContent = "Add a recipient."; return; }
  if (!S.identity) {
    const r = await api([["Identity/get", { accountId: S.acc }, "i"]]);
    S.identity = r.i.list[0];
  }
  const drafts = byRole("drafts"), sent = byRole("sent");
  const email = {
    mailboxIds: { [drafts.id]: true }, keywords: { $draft: true, $seen: true },
    from: [{ name: S.identity.name || null, email: S.identity.email }], to, cc,
    subject: $("c-subject").value, textBody: [{ partId: "t", type: "text/plain" }],
    bodyValues: { t: { value: $("c-body").value } },
  };
  if (S.compose.inReplyTo) email.inReplyTo = S.compose.inReplyTo;
  if (S.compose.references && S.compose.references.length) email.references = S.compose.references;
  if (S.attachments.length) email.attachments = S.attachments;
  const onSuccess = { "keywords/$draft": null };
  if (sent) { onSuccess["mailboxIds/" + drafts.id] = null; onSuccess["mailboxIds/" + sent.id] = true; }
  $("c-send").disabled = true;
  try {
    const r = await api([
      ["Email/set", { accountId: S.acc, create: { draft: email } }, "0"],
      ["EmailSubmission/set", { accountId: S.acc, create: { sub: { identityId: S.identity.id, emailId: "#draft" } },
        onSuccessUpdateEmail: { "#sub": onSuccess } }, "1"],
    ]);
    if (r["0"].notCreated && r["0"].notCreated.draft) throw new Error(r["0"].notCreated.draft.type);
    if (r["1"].notCreated && r["1"].notCreated.sub) {
      const e = r["1"].notCreated.sub;
      throw new Error(e.type + (e.invalidRecipients ? ": " + e.invalidRecipients.join(", ") : ""));
    }
    $("compose").close();
    if (S.compose.mode === "reply" || S.compose.mode === "all") {
      await update(S.open, { "keywords/$answered": true }).catch(() => {});
    }
    await refresh();
  } catch (err) {
    $("c-error").textContent = "Not sent: " + err.message;
  } finally {
    $("c-send").disabled = false;
  }
}

// ---- live updates (RFC 8620 7.3, read with fetch so the request can carry credentials) ----

async function listen() {
  const u = url(S.session.eventSourceUrl, { types: "*", closeafter: "no", ping: "30" });
  for (let delay = 1000; ; delay = Math.min(delay * 2, 30000)) {
    const ctl = new AbortController();
    S.stream = ctl;
    try {
      const res = await fetch(u, { headers: headers({ "Accept": "text/event-stream" }), signal: ctl.signal });
      if (!res.ok) throw new Error(res.status);
      $("live").classList.add("on");
      delay = 1000;
      const reader = res.body.getReader(), dec = new TextDecoder();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        let i;
        while ((i = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, i); buf = buf.slice(i + 2);
          const ev = (block.match(/^event: (.*)$/m) || [])[1];
          const data = (block.match(/^data: (.*)$/m) || [])[1];
          if (ev === "state" && data) onStateChange(JSON.parse(data));
        }
      }
    } catch (err) {
      if (ctl.signal.aborted) return;
    }
    $("live").classList.remove("on");
    await new Promise((r) => setTimeout(r, delay));
  }
}

function onStateChange(ev) {
  const st = ev.changed && ev.changed[S.acc];
  if (!st || st.Email === S.state) return;
  refresh();
}

let refreshing = null;
async function refresh() {
  if (refreshing) return refreshing;
  refreshing = (async () => { await loadMailboxes(); await loadList(); })();
  try { await refreshing; } finally { refreshing = null; }
}

// ---- keyboard ----

function onKey(ev) {
  if ($("compose").open) return;
  const t = ev.target;
  if (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT") {
    if (ev.key === "Escape") t.blur();
    return;
  }
  const cur = S.emails[S.selected];
  const acts = {
    j: () => select(1), ArrowDown: () => select(1), k: () => select(-1), ArrowUp: () => select(-1),
    Enter: () => cur && openMessage(cur.id), o: () => cur && openMessage(cur.id),
    u: closeReader, Escape: closeReader, c: () => compose("new"),
    r: () => S.open && compose("reply"), a: () => S.open && compose("all"), f: () => S.open && compose("fwd"),
    s: toggleFlag, m: markUnread, "#": deleteOpen, Delete: deleteOpen,
    "/": () => $("search").focus(), v: () => $("move-select").focus(),
    n: () => !$("next-page").disabled && $("next-page").click(),
    p: () => !$("prev-page").disabled && $("prev-page").click(),
  };
  const fn = acts[ev.key];
  if (fn) { ev.preventDefault(); fn(); }
}

// ---- start ----

async function start() {
  $("login").hidden = true;
  $("app").hidden = false;
  await loadMailboxes();
  await loadList();
  $("message-list").focus();
  listen();
}

function wire() {
  $("login-form").onsubmit = async (ev) => {
    ev.preventDefault();
    $("login-error").textContent = "";
    $("login-submit").disabled = true;
    try {
      await login($("login-user").value.trim(), $("login-pass").value);
      $("login-pass").value = "";
      await start();
    } catch (err) {
      $("login-error").textContent = err.message;
    } finally {
      $("login-submit").disabled = false;
    }
  };
  $("search-form").onsubmit = (ev) => {
    ev.preventDefault();
    S.search = $("search").value.trim(); S.page = 0;
    renderFolders(); loadList().then(() => $("message-list").focus());
  };
  $("prev-page").onclick = () => { S.page--; S.selected = 0; loadList(); };
  $("next-page").onclick = () => { S.page++; S.selected = 0; loadList(); };
  $("compose-btn").onclick = () => compose("new");
  $("logout-btn").onclick = logout;
  $("menu-toggle").onclick = () => $("app").classList.toggle("show-folders");
  $("back-btn").onclick = closeReader;
  $("reply-btn").onclick = () => compose("reply");
  $("reply-all-btn").onclick = () => compose("all");
  $("forward-btn").onclick = () => compose("fwd");
  $("flag-btn").onclick = toggleFlag;
  $("unread-btn").onclick = markUnread;
  $("delete-btn").onclick = deleteOpen;
  $("move-select").onchange = (ev) => moveTo(ev.target.value);
  $("c-send").onclick = send;
  $("c-cancel").onclick = () => $("compose").close();
  $("c-file").onchange = (ev) => attachFiles(ev.target.files);
  document.addEventListener("keydown", onKey);
}

wire();
(async () => {
  const saved = sessionStorage.getItem("roost-auth");
  if (saved) {
    S.auth = saved;
    const res = await fetch("/jmap/session", { headers: headers() });
    if (res.ok) {
      S.session = await res.json();
      S.acc = S.session.primaryAccounts["urn:ietf:params:jmap:mail"];
      await start();
      return;
    }
  }
  $("login").hidden = false;
  $("login-user").focus();
})();
