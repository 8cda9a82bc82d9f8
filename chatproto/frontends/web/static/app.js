// chatproto in the browser: login, conversations with unread counts, history, live messages,
// groups, password, logout. See docs/PROTOCOL.md ("WebSocket") for the messages.
import { Connection, currentSession, post } from "./connection.js";
import { $, el, setText } from "./dom.js";

const HISTORY_PAGE = 50;
const STATUS_SECONDS = 10; // a reply in the status line fades after this long (a newer one replaces it)
const SERVER_GONE = "The server is not reachable. This page will reconnect when it is back.";
const SERVER_BACK = "The server is back. Please log in again.";
const SERVER_RESTARTED = "The server has restarted. Please log in again.";
const WATCH_MAX_DELAY = 5000; // how often, at most, a page whose session ended asks for the server
const WATCH_TRIES = 10; // a session ended with the server still there (a kick): stop asking then

const state = {
  me: null,
  active: new Map(),       // username -> since
  away: new Map(),         // username -> away message (the user's, from any of their devices)
  accounts: [],
  groups: new Map(),       // casefolded name -> group
  unread: new Map(),       // conversation key -> count
  histories: new Map(),    // conversation key -> {messages, complete, loading, loaded}
  current: null,           // {kind, name, key}
  reconnectDelay: 1000,
  reconnectTimer: null,
  loggingOut: false,
  serverAway: false,       // the server could not be reached since the socket closed
};

let connection = null;

// One request over the WebSocket; rejects with {code, error} when it fails or we are not connected.
function ask(type, fields = {}) {
  if (!connection) return Promise.reject({ code: "disconnected", error: "Not connected to the server" });
  return connection.request(type, fields);
}

// Conversation keys, as the server's: user:NAME (case-sensitive), group:name (case-insensitive)
const userKey = (name) => `user:${name}`;
const groupKey = (name) => `group:${name.toLowerCase()}`;
const keyOf = (kind, name) => (kind === "user" ? userKey(name) : groupKey(name));

function messageKey(message) {
  if (message.kind === "group") return groupKey(message.group);
  return userKey(message.sender === state.me ? message.recipient : message.sender);
}

// ---------------------------------------------------------------- login / logout

function showLogin(info = "", error = "", fresh = false) {
  state.me = null;
  $("chat-view").hidden = true;
  $("login-view").hidden = false;
  if (fresh) {
    // The page has just opened: keep whatever the user typed (or sent) while it asked the server
    // about a session.
    if (!document.activeElement || document.activeElement === document.body) $("login-username").focus();
    return;
  }
  setText("login-error", error);
  setText("login-info", info);
  $("login-submit").disabled = false;
  $("login-password").value = "";
  $("login-username").focus();
}

async function submitLogin(event) {
  event.preventDefault();
  const username = $("login-username").value.trim();
  const password = $("login-password").value;
  setText("login-error", "");
  setText("login-info", "");
  if (!username || !password) {
    setText("login-error", "Please enter a username and a password");
    return;
  }
  $("login-submit").disabled = true;
  let reply;
  try {
    reply = await post("/login", { username, password });
  } catch {
    reply = { ok: false, error: "Cannot reach the server" };
  }
  $("login-submit").disabled = false;
  $("login-password").value = "";
  if (reply.ok) {
    connect();
  } else {
    setText("login-error", reply.error || "Login failed");
    (reply.code === "no-such-account" ? $("login-username") : $("login-password")).focus();
  }
}

async function logout() {
  state.loggingOut = true;
  let reply = {};
  try {
    reply = await post("/logout", {});
  } catch {
    reply = {};
  }
  if (connection) connection.close();
  connection = null;
  resetChat();
  showLogin(reply.text || "You have logged out.");
  state.loggingOut = false;
}

// ---------------------------------------------------------------- connection

function connect() {
  stopWatching();
  if (state.reconnectTimer) clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  if (connection) connection.close();
  connection = new Connection(onEvent, onClose);
  connection.open();
}

async function onClose() {
  connection = null;
  if (state.loggingOut) return;
  let username = null;
  try {
    username = await currentSession();
  } catch {
    username = undefined; // the server is unreachable: try again later
    state.serverAway = true;
  }
  if (username === null) {
    // The server answers, without the session: a restart (it cannot survive one), or it ended.
    const restarted = state.serverAway;
    state.serverAway = false;
    if (!$("chat-view").hidden) {
      resetChat();
      if (restarted) showLogin(SERVER_RESTARTED);
      else showLogin("", "Your session has ended. Please log in again.");
    } else if ($("login-view").hidden) {
      showLogin();
    }
    return;
  }
  if (!$("chat-view").hidden) setText("connection", "Reconnecting…");
  state.reconnectTimer = setTimeout(connect, state.reconnectDelay);
  state.reconnectDelay = Math.min(state.reconnectDelay * 2, 15000);
}

function resetChat() {
  state.active.clear();
  state.groups.clear();
  state.unread.clear();
  state.histories.clear();
  state.current = null;
  $("messages").replaceChildren();
  $("chat-view").classList.remove("open");
}

function onEvent(event) {
  const handler = EVENTS[event.type];
  if (handler) handler(event);
}

const EVENTS = {
  hello(event) {
    state.reconnectDelay = 1000;
    const again = state.me === event.username;
    state.me = event.username;
    applyState(event);
    setText("me-name", event.username);
    setText("connection", "");
    $("login-view").hidden = true;
    $("chat-view").hidden = false;
    if (again && state.current) {
      // A reconnect: history may have moved on meanwhile.
      state.histories.clear();
      openConversation(state.current.kind, state.current.name, { focus: false });
    } else {
      renderConversation();
      const first = document.querySelector("#group-list button, #people-list button");
      if (first && !state.current) first.focus();
    }
  },
  message(event) {
    const message = event.message;
    const key = messageKey(message);
    const history = state.histories.get(key);
    if (history && history.loaded) addMessages(history, [message]);
    if (message.kind === "group" && !state.groups.has(groupKey(message.group))) refreshState();
    const viewing = state.current && state.current.key === key && document.visibilityState === "visible";
    if (message.sender === state.me || viewing) {
      if (viewing && message.sender !== state.me) markRead(state.current);
    } else if (event.unread !== undefined) {
      state.unread.set(key, event.unread);
    } else {
      state.unread.set(key, (state.unread.get(key) || 0) + 1);
    }
    showLive(key, message);
    renderLists();
  },
  // Read elsewhere (another tab or device): up to the newest message, or, with `unread`, the
  // count the server has left after the read marker (newer messages came meanwhile).
  read(event) {
    const viewing = state.current && state.current.key === event.conversation && document.visibilityState === "visible";
    if (event.unread && !viewing) state.unread.set(event.conversation, event.unread);
    else state.unread.delete(event.conversation);
    renderLists();
  },
  user_online(event) {
    state.active.set(event.username, event.timestamp || "");
    if (!state.accounts.includes(event.username)) state.accounts.push(event.username);
    renderLists();
    renderHeader();
  },
  away(event) {
    if (event.text) state.away.set(event.username, event.text);
    else state.away.delete(event.username);
    if (event.username === state.me) renderAway();
    renderLists();
  },
  user_offline(event) {
    state.active.delete(event.username);
    state.away.delete(event.username);
    renderLists();
    renderHeader();
  },
  invited(event) {
    status(`You have been invited to the group chat ${event.group} by ${event.by}.`);
    refreshState();
  },
  member_joined(event) {
    systemLine(groupKey(event.group), `${event.username} has joined the group chat ${event.group}.`);
  },
  member_left(event) {
    systemLine(groupKey(event.group), `${event.username} has left the group chat ${event.group}.`);
  },
  // Every change of a group's members (to invited members too, who hear of no join or leave).
  members_changed(event) {
    const group = state.groups.get(groupKey(event.group));
    if (!group) {
      refreshState(); // one just invited to: its owner and kind come with the state
      return;
    }
    const key = groupKey(event.group);
    if (!event.members.some((m) => m.name === state.me)) {
      // This user left it (in another tab or on another device): it goes from the list here too.
      state.groups.delete(key);
      state.histories.delete(key);
      state.unread.delete(key);
      if (state.current && state.current.key === key) {
        state.current = null;
        $("chat-view").classList.remove("open");
        renderConversation();
      }
      renderLists();
      return;
    }
    group.members = event.members;
    renderLists();
    if (state.current && state.current.key === key) renderHeader();
  },
  // A group message deleted (`group`), or a private one (`message`: shown [deleted], no status line).
  message_deleted(event) {
    const key = event.message ? messageKey(event.message) : groupKey(event.group);
    const kind = event.message ? "private" : "group";
    const history = state.histories.get(key);
    if (history) {
      for (const m of history.messages) if (m.seq === event.seq && m.kind === kind) m.text = "[deleted]";
      if (state.current && state.current.key === key) renderMessages(false);
    }
    if (!event.message) status(`${event.by} deleted message ${event.seq} in ${event.group}.`);
  },
  notice(event) {
    status(event.text);
  },
  error(event) {
    status(event.error);
  },
  ended(event) {
    endSession("", event.text || "Your session has ended.");
    watchServer(); // a shutdown: the page notices by itself when the server is back
  },
  logged_out(event) {
    endSession(event.text, "");
  },
  // This tab would be one session too many for the account (--max-sessions): the login stays
  // with the other tabs and devices; this one shows why, and a login here starts another.
  refused(event) {
    endSession("", event.text || "This account is already logged in");
  },
};

function endSession(info, error) {
  state.loggingOut = true;
  if (connection) connection.close();
  connection = null;
  resetChat();
  showLogin(info, error);
  state.loggingOut = false;
}

// ---------------------------------------------------------------- the server going away and back

// After the server ended the session, ask it (GET /session) with a growing pause until it is gone
// and back; the login form says which, so that what it shows is always current.
let watch = null; // {timer, delay, away, tries}

function watchServer() {
  stopWatching();
  watch = { timer: null, delay: 1000, away: false, tries: 0 };
  watch.timer = setTimeout(checkServer, watch.delay);
}

function stopWatching() {
  if (watch && watch.timer) clearTimeout(watch.timer);
  watch = null;
}

async function checkServer() {
  const current = watch;
  if (!current) return;
  current.timer = null;
  let username;
  try {
    username = await currentSession();
  } catch {
    username = undefined;
  }
  if (watch !== current) return; // logged in meanwhile
  if (username) {
    connect(); // logged in again in another tab
    return;
  }
  if (username === undefined && !current.away) {
    current.away = true;
    setText("login-info", "");
    setText("login-error", SERVER_GONE);
  } else if (username === null && current.away) {
    stopWatching();
    setText("login-error", "");
    setText("login-info", SERVER_BACK);
    return;
  } else if (username === null && ++current.tries >= WATCH_TRIES) {
    stopWatching();
    return;
  }
  current.delay = Math.min(current.delay * 2, WATCH_MAX_DELAY);
  current.timer = setTimeout(checkServer, current.delay);
}

function applyState(data) {
  state.active = new Map(data.active.map((u) => [u.name, u.since]));
  state.away = new Map(data.active.filter((u) => u.away).map((u) => [u.name, u.away]));
  renderAway();
  state.accounts = data.accounts.slice();
  state.groups = new Map(data.groups.map((g) => [groupKey(g.name), g]));
  state.unread = new Map(Object.entries(data.unread || {}));
  if (state.current) state.unread.delete(state.current.key);
  renderLists();
  renderHeader();
}

let refreshing = null;
function refreshState() {
  if (refreshing || !connection) return;
  refreshing = ask("state").then(
    (reply) => {
      refreshing = null;
      applyState(reply);
    },
    () => {
      refreshing = null;
    },
  );
}

// The status line shows the latest reply for a while, then fades out (CSS) and empties.
let statusTimer = null;
function status(text) {
  const line = $("status");
  if (statusTimer) clearTimeout(statusTimer);
  statusTimer = null;
  line.classList.remove("fading");
  setText("status", text);
  if (!text) return;
  statusTimer = setTimeout(() => {
    line.classList.add("fading");
    statusTimer = setTimeout(() => {
      statusTimer = null;
      line.classList.remove("fading");
      setText("status", "");
    }, 1000);
  }, STATUS_SECONDS * 1000);
}

// ---------------------------------------------------------------- the lists

function renderLists() {
  // Re-rendering must not take the keyboard focus away from the list.
  const focused = document.activeElement;
  const keep = focused && focused.closest && focused.closest(".conversations")
    ? { kind: focused.dataset.kind, name: focused.dataset.name } : null;
  const groups = [...state.groups.values()].sort((a, b) => a.name.localeCompare(b.name));
  const groupItems = groups.map((g) => {
    const joined = memberJoined(g, state.me);
    const tag = joined === false ? "invited" : g.broadcast ? "broadcast" : "";
    return conversationItem("group", g.name, `# ${g.name}`, tag, null);
  });
  $("group-list").replaceChildren(...groupItems);
  $("no-groups").hidden = groups.length > 0;

  const people = state.accounts.filter((n) => n !== state.me);
  people.sort((a, b) => (state.active.has(b) - state.active.has(a)) || a.localeCompare(b));
  $("people-list").replaceChildren(
    ...people.map((n) => conversationItem("user", n, n,
      state.away.has(n) ? `away: ${state.away.get(n)}` : state.active.has(n) ? "active" : "", state.active.has(n))),
  );
  const others = [...state.active.keys()].filter((n) => n !== state.me).length;
  setText("active-count", `(${others} active)`);
  const datalist = $("account-names");
  datalist.replaceChildren(...people.map((n) => el("option", { value: n })));
  if (keep) {
    const again = listButton(keep.kind, keep.name);
    if (again) again.focus();
  }
}

function listButton(kind, name) {
  for (const button of document.querySelectorAll(".conversations button")) {
    if (button.dataset.kind === kind && button.dataset.name === name) return button;
  }
  return null;
}

function conversationItem(kind, name, label, tag, online) {
  const key = keyOf(kind, name);
  const unread = state.unread.get(key) || 0;
  const current = state.current && state.current.key === key;
  let description = label;
  if (tag) description += `, ${tag}`;
  if (unread) description += `, ${unread} unread`;
  const button = el(
    "button",
    {
      type: "button",
      "aria-current": current ? "true" : "false",
      "aria-label": description,
      "data-kind": kind,
      "data-name": name,
      onclick: () => openConversation(kind, name),
    },
    online === null ? null : el("span", { class: online ? "dot on" : "dot", "aria-hidden": "true" }),
    el("span", { class: "name", text: label }),
    tag ? el("span", { class: "tag", text: tag, "aria-hidden": "true" }) : null,
    unread ? el("span", { class: "badge", text: String(unread), "aria-hidden": "true" }) : null,
  );
  return el("li", {}, button);
}

function memberJoined(group, name) {
  for (const m of group.members) if (m.name === name) return m.joined;
  return undefined;
}

// ---------------------------------------------------------------- a conversation

function historyOf(key) {
  let history = state.histories.get(key);
  if (!history) {
    history = { messages: [], complete: false, loading: false, loaded: false, system: [] };
    state.histories.set(key, history);
  }
  return history;
}

function addMessages(history, messages) {
  const seen = new Set(history.messages.map((m) => m.seq));
  for (const m of messages) if (!seen.has(m.seq)) history.messages.push(m);
  history.messages.sort((a, b) => a.seq - b.seq);
}

function systemLine(key, text) {
  const history = state.histories.get(key);
  if (!history) return;
  const after = history.messages.length ? history.messages[history.messages.length - 1].seq : 0;
  history.system.push({ after, text });
  if (state.current && state.current.key === key) appendItem(systemItem(text), false);
}

// A new message in the open conversation is appended (a screen reader announces just it);
// anything else redraws the list.
function showLive(key, message) {
  if (!state.current || state.current.key !== key) return;
  const history = state.histories.get(key);
  const last = history && history.messages[history.messages.length - 1];
  if (!history || !history.loaded || last !== message) {
    renderMessages(true);
    return;
  }
  appendItem(messageItem(message), message.sender === state.me);
}

function appendItem(item, toBottom) {
  const list = $("messages");
  const scroller = $("scroller");
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  const empty = list.querySelector("li.no-messages");
  if (empty) empty.remove();
  list.append(item);
  if (toBottom || atBottom) scroller.scrollTop = scroller.scrollHeight;
}

async function openConversation(kind, name, { focus = true } = {}) {
  const key = keyOf(kind, name);
  state.current = { kind, name, key };
  $("chat-view").classList.add("open");
  setText("composer-error", "");
  markRead(state.current);
  renderLists();
  renderConversation();
  const history = historyOf(key);
  if (!history.loaded) await loadHistory(history, state.current);
  if (focus) {
    const input = $("composer-input");
    if (!$("composer").hidden && !input.disabled) input.focus();
    else $("scroller").focus();
  }
}

// Tell the server (and so the other tabs) a conversation was seen: at most once a second per
// conversation, so that a busy group does not spend the rate limit on it.
const readTimers = new Map();
function markRead(current) {
  state.unread.delete(current.key);
  if (readTimers.has(current.key)) return;
  const send = () => {
    if (connection && connection.connected) {
      ask("read", { kind: current.kind, name: current.name }).catch(() => {});
    }
  };
  send();
  readTimers.set(current.key, setTimeout(() => {
    readTimers.delete(current.key);
    if (state.current && state.current.key === current.key && !state.unread.has(current.key)) send();
  }, 1000));
}

async function loadHistory(history, current, older = false, limit = HISTORY_PAGE) {
  if (history.loading || (older && history.complete) || !connection) return;
  const request = { limit };
  if (current.kind === "user") request.with = current.name;
  else request.group = current.name;
  if (older && history.messages.length) request.before = history.messages[0].seq;
  history.loading = true;
  renderOlder();
  const scroller = $("scroller");
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  try {
    const reply = await ask("history", request);
    addMessages(history, reply.messages);
    if (reply.messages.length < limit) history.complete = true;
    history.loaded = true;
    history.error = "";
  } catch (error) {
    history.error = error.error || "Could not load the history";
    history.loaded = !older ? false : history.loaded;
    history.complete = true;
  }
  history.loading = false;
  if (state.current && state.current.key === current.key) {
    renderMessages(!older);
    if (older) scroller.scrollTop = scroller.scrollHeight - fromBottom;
  }
}

// ---------------------------------------------------------------- search

const HISTORY_MAX = 500; // the most one history request may ask for
// Case and accents ignored, as the server's search does: "Café" -> "cafe".
const fold = (text) => text.normalize("NFKD").replace(/\p{M}/gu, "").toLowerCase();
const WORD = /[\p{L}\p{N}]+/gu;

// The text as nodes, each word that begins with one of the searched words in a <mark> (text only).
function highlighted(text, words) {
  const prefixes = words.map(fold);
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(WORD)) {
    const word = match[0];
    const folded = fold(word);
    if (!prefixes.some((prefix) => folded.startsWith(prefix))) continue;
    if (match.index > last) parts.push(text.slice(last, match.index));
    parts.push(el("mark", { text: word }));
    last = match.index + word.length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

async function search(event) {
  event.preventDefault();
  const text = $("search-input").value.trim();
  if (!text) return;
  const dialog = $("search-dialog");
  setText("search-summary", "Searching…");
  $("search-results").replaceChildren();
  if (!dialog.open) dialog.show(); // not modal: the search box above stays usable to refine
  try {
    const reply = await ask("search", { text });
    const n = reply.messages.length;
    setText("search-summary", n
      ? `${n} message${n === 1 ? "" : "s"} with “${text}”, newest first.`
      : "No messages found.");
    $("search-results").replaceChildren(...reply.messages.map((m) => searchResult(m, reply.words)));
  } catch (error) {
    setText("search-summary", error.error || "The search failed.");
  }
}

function searchResult(m, words) {
  const kind = m.kind === "group" ? "group" : "user";
  const name = kind === "group" ? m.group : (m.sender === state.me ? m.recipient : m.sender);
  return el("li", {},
    el("button", { type: "button", class: "result", "data-seq": m.seq, onclick: () => openAt(kind, name, m.seq) },
      el("span", { class: "meta" },
        el("span", { class: "where", text: kind === "group" ? `# ${name}` : name }),
        ` · ${m.sender} · ${m.timestamp} · #${m.seq}`),
      el("span", { class: "text" }, ...highlighted(m.text, words))));
}

// A result opens its conversation scrolled to that message, older history loaded as needed.
async function openAt(kind, name, seq) {
  $("search-dialog").close();
  await openConversation(kind, name, { focus: false });
  const current = state.current;
  const history = historyOf(current.key);
  const found = () => history.messages.some((m) => m.seq === seq);
  while (state.current === current && !found() && !history.complete) {
    const oldest = history.messages.length ? history.messages[0].seq : seq + 1;
    const before = history.messages.length;
    // Enough to reach it in one request when it is near (SEQs of private messages count every
    // conversation's, so this may ask for more than needed, never for less than a page).
    const limit = Math.min(HISTORY_MAX, Math.max(HISTORY_PAGE, oldest - seq + 1));
    await loadHistory(history, current, true, limit);
    if (history.messages.length === before) break; // nothing came (an error, or no connection)
  }
  if (state.current !== current) return;
  const item = $("messages").querySelector(`li[data-seq="${seq}"]`);
  if (!item) {
    status("That message is not in the conversation any more.");
    return;
  }
  item.classList.add("found");
  item.tabIndex = -1;
  item.scrollIntoView({ block: "center" });
  item.focus({ preventScroll: true });
}

function renderConversation() {
  renderHeader();
  renderMessages(true);
}

function renderHeader() {
  const current = state.current;
  const join = $("join-button");
  const invite = $("invite-button");
  const leave = $("leave-button");
  const composer = $("composer");
  const input = $("composer-input");
  join.hidden = invite.hidden = leave.hidden = true;
  if (!current) {
    setText("conversation-title", "Pick a conversation");
    setText("conversation-subtitle", "");
    composer.hidden = true;
    return;
  }
  composer.hidden = false;
  input.disabled = false;
  $("send-button").disabled = false;
  input.placeholder = "Write a message";
  if (current.kind === "user") {
    setText("conversation-title", current.name);
    const since = state.active.get(current.name);
    setText("conversation-subtitle", state.active.has(current.name)
      ? `active${since ? ` since ${since}` : ""}` : "not active: messages cannot be delivered now");
    return;
  }
  const group = state.groups.get(current.key);
  setText("conversation-title", `# ${group ? group.name : current.name}`);
  if (!group) {
    setText("conversation-subtitle", "You are not in this group chat.");
    composer.hidden = true;
    return;
  }
  const members = group.members.map((m) => (m.joined ? m.name : `${m.name} (invited)`)).join(", ");
  setText("conversation-subtitle",
    `${group.broadcast ? "broadcast, " : ""}owner ${group.owner}; members: ${members}`);
  const joined = memberJoined(group, state.me);
  join.hidden = joined !== false;
  invite.hidden = joined !== true;
  leave.hidden = joined === undefined;
  if (joined === false) {
    input.disabled = true;
    $("send-button").disabled = true;
    input.placeholder = "Join the group to write";
  } else if (group.broadcast && group.owner !== state.me) {
    input.disabled = true;
    $("send-button").disabled = true;
    input.placeholder = "Only the owner can send messages to this broadcast group.";
  }
}

function renderOlder() {
  const current = state.current;
  const history = current && state.histories.get(current.key);
  $("older-button").hidden = !history || !history.loaded || history.complete;
  $("older-button").disabled = !!(history && history.loading);
  $("history-start").hidden = !history || !history.loaded || !history.complete || !!history.error;
}

function renderMessages(toBottom) {
  const list = $("messages");
  const current = state.current;
  $("placeholder").hidden = !!current;
  if (!current) {
    list.replaceChildren();
    renderOlder();
    return;
  }
  const scroller = $("scroller");
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  const history = historyOf(current.key);
  const items = [];
  let s = 0;
  const system = history.system;
  for (const m of history.messages) {
    while (s < system.length && system[s].after < m.seq) items.push(systemItem(system[s++].text));
    items.push(messageItem(m));
  }
  while (s < system.length) items.push(systemItem(system[s++].text));
  if (history.error) items.push(systemItem(history.error));
  else if (history.loaded && !history.messages.length && !system.length) {
    items.push(el("li", { class: "system no-messages", text: "No messages." }));
  }
  list.replaceChildren(...items);
  renderOlder();
  if (toBottom || atBottom) scroller.scrollTop = scroller.scrollHeight;
}

function systemItem(text) {
  return el("li", { class: "system", text });
}

function messageItem(m) {
  const mine = m.sender === state.me;
  const deleted = m.text === "[deleted]";
  return el(
    "li",
    { class: `${mine ? "mine" : ""}${deleted ? " deleted" : ""}`.trim(), "data-seq": m.seq },
    el("span", { class: "meta" },
      el("span", { class: "sender", text: m.sender }), ` · ${m.timestamp} · #${m.seq}`),
    el("span", { class: "text", text: m.text }),
    mine && !deleted
      ? el("button", {
        type: "button", class: "delete", text: "Delete", "aria-label": `Delete message #${m.seq}`,
        onclick: () => deleteMessage(m),
      })
      : null,
  );
}

async function deleteMessage(m) {
  const request = { seq: m.seq };
  if (m.kind === "group") request.group = m.group;
  try {
    const reply = await ask("delete", request);
    m.text = "[deleted]";
    status(reply.text);
    renderMessages(false);
  } catch (error) {
    status(error.error);
  }
}

async function sendMessage(event) {
  event.preventDefault();
  const current = state.current;
  const input = $("composer-input");
  const text = input.value;
  if (!current || !text.trim()) return;
  setText("composer-error", "");
  const request = { text };
  if (current.kind === "user") request.to = current.name;
  else request.group = current.name;
  input.value = ""; // what is typed meanwhile is kept; a failed send gives its text back
  try {
    const reply = await ask("send", request);
    if (reply.away) status(reply.away); // delivered; the user is away (set on any of their devices)
    const history = historyOf(messageKey(reply.message));
    if (history.loaded) addMessages(history, [reply.message]);
    showLive(current.key, reply.message);
  } catch (error) {
    setText("composer-error", error.error || "The message was not sent");
    if (!input.value && state.current && state.current.key === current.key) input.value = text;
  }
}

// ---------------------------------------------------------------- groups

function openDialog(id, first) {
  const dialog = $(id);
  dialog.querySelectorAll(".error").forEach((e) => (e.textContent = ""));
  dialog.showModal();
  $(first).focus();
}

function newGroupDialog() {
  const others = [...state.active.keys()].filter((n) => n !== state.me).sort();
  $("group-members").replaceChildren(...others.map((n) =>
    el("label", { class: "check" }, el("input", { type: "checkbox", value: n, name: "member" }), ` ${n}`)));
  $("group-no-members").hidden = others.length > 0;
  $("group-name").value = "";
  $("group-broadcast").checked = false;
  openDialog("group-dialog", "group-name");
}

async function createGroup(event) {
  event.preventDefault();
  const name = $("group-name").value.trim();
  const members = [...$("group-members").querySelectorAll("input:checked")].map((i) => i.value);
  if (!name) {
    setText("group-error", "Group name must be 1-32 letters and digits");
    return;
  }
  if (!members.length) {
    setText("group-error", "Please enter at least one more active user.");
    return;
  }
  try {
    const reply = await ask("create_group", {
      name, members, broadcast: $("group-broadcast").checked,
    });
    $("group-dialog").close();
    state.groups.set(groupKey(reply.group.name), reply.group);
    const label = reply.group.broadcast ? "Broadcast group" : "Group chat room";
    status(`${label} has been created, room name: ${reply.group.name}, users in this room: `
      + reply.group.members.map((m) => m.name).join(" "));
    openConversation("group", reply.group.name);
  } catch (error) {
    setText("group-error", error.error);
  }
}

async function joinGroup() {
  const current = state.current;
  if (!current || current.kind !== "group") return;
  try {
    const reply = await ask("join", { group: current.name });
    state.groups.set(groupKey(reply.group.name), reply.group);
    status(`Joined the group chat: ${reply.group.name} successfully.`);
    state.histories.delete(current.key);
    openConversation("group", reply.group.name);
  } catch (error) {
    setText("composer-error", error.error);
  }
}

async function leaveGroup() {
  const current = state.current;
  if (!current || current.kind !== "group") return;
  const group = state.groups.get(current.key);
  try {
    await ask("leave", { group: current.name });
    state.groups.delete(current.key);
    state.histories.delete(current.key);
    state.current = null;
    $("chat-view").classList.remove("open");
    status(`You have left the group chat ${group ? group.name : current.name}.`);
    renderLists();
    renderConversation();
    const first = document.querySelector("#group-list button, #people-list button");
    if (first) first.focus();
  } catch (error) {
    setText("composer-error", error.error);
  }
}

async function invite(event) {
  event.preventDefault();
  const current = state.current;
  const username = $("invite-username").value.trim();
  if (!current || !username) return;
  try {
    const reply = await ask("invite", { group: current.name, username });
    state.groups.set(groupKey(reply.group.name), reply.group);
    $("invite-dialog").close();
    status(`${username} has been invited to the group chat ${reply.group.name}.`);
    renderHeader();
  } catch (error) {
    setText("invite-error", error.error);
  }
}

// ---------------------------------------------------------------- password

async function changePassword(event) {
  event.preventDefault();
  const current = $("password-current").value;
  const fresh = $("password-new").value;
  if (fresh !== $("password-repeat").value) {
    setText("password-error", "The new passwords do not match.");
    return;
  }
  try {
    const reply = await ask("change_password", { current, new: fresh });
    $("password-dialog").close();
    status(reply.text);
  } catch (error) {
    setText("password-error", error.error);
  }
}

function passwordDialog() {
  for (const id of ["password-current", "password-new", "password-repeat"]) $(id).value = "";
  openDialog("password-dialog", "password-current");
}

// ---------------------------------------------------------------- wiring

function back() {
  $("chat-view").classList.remove("open");
  const current = state.current;
  if (current) {
    const button = listButton(current.kind, current.name);
    if (button) button.focus();
  }
}

// Away is the user's, for every device: set here, it shows in the terminal client and IRC too.
function renderAway() {
  const away = state.away.get(state.me);
  $("away-button").textContent = away ? "Back" : "Set away";
  $("away-text").disabled = Boolean(away);
  $("away-text").value = away || "";
}

async function toggleAway(event) {
  event.preventDefault();
  const text = state.away.has(state.me) ? "" : $("away-text").value;
  if (!state.away.has(state.me) && !text.trim()) {
    status("Type an away message first.");
    return;
  }
  try {
    const reply = await ask("away", { text });
    if (reply.away) state.away.set(state.me, reply.away);
    else state.away.delete(state.me);
    renderAway();
    status(reply.text);
  } catch (error) {
    status(error.error || "Not changed");
  }
}

function wire() {
  $("away-form").addEventListener("submit", toggleAway);
  $("login-form").addEventListener("submit", submitLogin);
  $("logout-button").addEventListener("click", logout);
  $("composer").addEventListener("submit", sendMessage);
  $("new-group-button").addEventListener("click", newGroupDialog);
  $("group-form").addEventListener("submit", createGroup);
  $("group-cancel").addEventListener("click", () => $("group-dialog").close());
  $("join-button").addEventListener("click", joinGroup);
  $("leave-button").addEventListener("click", leaveGroup);
  $("invite-button").addEventListener("click", () => {
    $("invite-username").value = "";
    openDialog("invite-dialog", "invite-username");
  });
  $("invite-form").addEventListener("submit", invite);
  $("invite-cancel").addEventListener("click", () => $("invite-dialog").close());
  $("password-button").addEventListener("click", passwordDialog);
  $("password-form").addEventListener("submit", changePassword);
  $("password-cancel").addEventListener("click", () => $("password-dialog").close());
  $("back-button").addEventListener("click", back);
  $("search-form").addEventListener("submit", search);
  $("search-close").addEventListener("click", () => $("search-dialog").close());
  $("older-button").addEventListener("click", () => {
    if (state.current) loadHistory(historyOf(state.current.key), state.current, true);
  });
  $("scroller").addEventListener("scroll", () => {
    const current = state.current;
    if (!current || $("scroller").scrollTop > 40) return;
    const history = state.histories.get(current.key);
    if (history && history.loaded && !history.complete) loadHistory(history, current, true);
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && $("search-dialog").open) {
      $("search-dialog").close();
      return;
    }
    if (e.key === "Escape" && $("chat-view").classList.contains("open") && !document.querySelector("dialog[open]")) {
      back();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && state.current && state.unread.has(state.current.key)) {
      markRead(state.current);
      renderLists();
    }
  });
}

async function start() {
  wire();
  let username = null;
  try {
    username = await currentSession();
  } catch {
    username = null;
  }
  if (username) connect();
  else showLogin("", "", true);
  document.body.dataset.ready = "1";
}

start();
