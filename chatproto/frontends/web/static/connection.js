// The WebSocket to /ws: requests with ids and promised replies, events to a handler.
// The session cookie (HttpOnly) travels with the handshake; nothing secret is in the URL.

export class Connection {
  constructor(onEvent, onClose) {
    this.onEvent = onEvent;
    this.onClose = onClose;
    this.nextId = 1;
    this.pending = new Map();
    this.socket = null;
  }

  open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(`${scheme}//${location.host}/ws`);
    this.socket = socket;
    socket.addEventListener("message", (e) => this.received(e.data));
    socket.addEventListener("close", (e) => {
      if (this.socket !== socket) return;
      this.socket = null;
      for (const { reject } of this.pending.values()) {
        reject({ code: "disconnected", error: "Not connected to the server" });
      }
      this.pending.clear();
      this.onClose(e);
    });
  }

  close() {
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close();
  }

  get connected() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  received(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.type === "reply") {
      const waiting = this.pending.get(message.id);
      if (!waiting) return;
      this.pending.delete(message.id);
      if (message.ok) waiting.resolve(message);
      else waiting.reject(message);
      return;
    }
    this.onEvent(message);
  }

  // One request; resolves with the reply, rejects with {code, error}.
  request(type, fields = {}) {
    if (!this.connected) {
      return Promise.reject({ code: "disconnected", error: "Not connected to the server" });
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.socket.send(JSON.stringify({ ...fields, id, type }));
    });
  }
}

// A JSON POST to the server's own /login or /logout.
export async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = {};
  try {
    data = await response.json();
  } catch {
    data = { ok: false, error: `Server error (${response.status})` };
  }
  return data;
}

export async function currentSession() {
  const response = await fetch("/session", { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) return null;
  const data = await response.json();
  return data.ok ? data.username : null;
}
