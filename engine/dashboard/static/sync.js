// A small client of the Convex sync protocol (the engine's own WebSocket sync, /api/sync), for the
// dashboard: Connect, Authenticate as the admin, ModifyQuerySet, Mutation; applies Transitions in
// order (startVersion must be the version it holds) and reconnects with back-off, re-sending its
// query set from version 0 as every Convex client does. Values stay in Convex's encoded JSON
// (`{"$integer": ...}` for int64); `values.js` turns them into text.

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export class SyncClient {
  constructor(origin, adminKey, { onStatus = () => {}, onAuthError = () => {} } = {}) {
    this.url = origin.replace(/^http/, "ws") + "/api/sync";
    this.adminKey = adminKey;
    this.onStatus = onStatus;
    this.onAuthError = onAuthError;
    this.sessionId = uuid();
    this.queries = new Map(); // queryId -> {path, args, onValue, onError}
    this.nextQueryId = 0;
    this.requests = new Map(); // requestId -> {resolve, reject}
    this.nextRequestId = 0;
    this.connectionCount = 0;
    this.closed = false;
    this.backoff = 250;
    this.connect();
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    this.open = false;
    ws.onopen = () => {
      this.open = true;
      this.backoff = 250;
      this.version = { querySet: 0, identity: 0, ts: "AAAAAAAAAAA=" };
      this.send({ type: "Connect", sessionId: this.sessionId, connectionCount: this.connectionCount++,
                  lastCloseReason: this.connectionCount === 1 ? "InitialConnect" : "Reconnect",
                  clientTs: Date.now() });
      this.send({ type: "Authenticate", tokenType: "Admin", value: this.adminKey, baseVersion: 0 });
      const adds = [...this.queries].map(([queryId, q]) => ({ type: "Add", queryId, udfPath: q.path, args: [q.args] }));
      this.querySet = 1;
      this.send({ type: "ModifyQuerySet", baseVersion: 0, newVersion: 1, modifications: adds });
      this.onStatus("live");
    };
    ws.onmessage = (event) => this.receive(JSON.parse(event.data));
    ws.onclose = () => {
      this.open = false;
      for (const [, r] of this.requests) r.reject(new Error("Connection lost while the request was in flight"));
      this.requests.clear();
      if (this.closed) return;
      this.onStatus("reconnecting");
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 8000);
    };
  }

  send(message) {
    if (this.open) this.ws.send(JSON.stringify(message));
  }

  receive(msg) {
    switch (msg.type) {
      case "Transition": {
        const s = msg.startVersion, v = this.version;
        if (s.querySet !== v.querySet || s.identity !== v.identity || s.ts !== v.ts) {
          this.ws.close(); // out of step: start over on a fresh socket
          return;
        }
        this.version = msg.endVersion;
        for (const mod of msg.modifications) {
          const q = this.queries.get(mod.queryId);
          if (!q) continue;
          if (mod.type === "QueryUpdated") q.onValue(mod.value, mod.logLines);
          else if (mod.type === "QueryFailed") q.onError(mod.errorMessage);
        }
        break;
      }
      case "MutationResponse":
      case "ActionResponse": {
        const r = this.requests.get(msg.requestId);
        if (!r) break;
        this.requests.delete(msg.requestId);
        if (msg.success) r.resolve(msg.result);
        else r.reject(new Error(msg.result));
        break;
      }
      case "AuthError":
        this.closed = true;
        this.onAuthError(msg.error);
        this.ws.close();
        break;
      case "FatalError":
        this.onStatus("error: " + msg.error);
        break;
      default:
        break; // Ping
    }
  }

  /** Subscribe to a query; returns a function that unsubscribes. */
  subscribe(path, args, onValue, onError = () => {}) {
    const queryId = this.nextQueryId++;
    this.queries.set(queryId, { path, args, onValue, onError });
    if (this.open) {
      this.send({ type: "ModifyQuerySet", baseVersion: this.querySet, newVersion: this.querySet + 1,
                  modifications: [{ type: "Add", queryId, udfPath: path, args: [args] }] });
      this.querySet += 1;
    }
    return () => {
      if (!this.queries.delete(queryId) || !this.open) return;
      this.send({ type: "ModifyQuerySet", baseVersion: this.querySet, newVersion: this.querySet + 1,
                  modifications: [{ type: "Remove", queryId }] });
      this.querySet += 1;
    };
  }

  mutation(path, args) {
    return this.request("Mutation", path, args);
  }

  action(path, args) {
    return this.request("Action", path, args);
  }

  request(type, path, args) {
    return new Promise((resolve, reject) => {
      if (!this.open) {
        reject(new Error("Not connected"));
        return;
      }
      const requestId = this.nextRequestId++;
      this.requests.set(requestId, { resolve, reject });
      this.send({ type, requestId, udfPath: path, args: [args] });
    });
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}
