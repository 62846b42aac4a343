/*
 * gateway-client.js: a small client for the gateway's WebSocket envelope protocol (README
 * "Browser client"; SPEC §5, §8). No dependencies and no build step: load it with
 * <script src="/public/gateway-client.js"> (window.GatewayClient), or import it as an ES
 * module from /public/gateway-client.mjs. The server's side is lua/gateway/transport/.
 *
 * One WebSocket per client. Each call gets its own request_id and Promise, settled by the
 * envelope that echoes that id; frames without a request_id are server pushes. Lost
 * connections are reopened with exponential backoff and jitter, and calls made meanwhile
 * wait in a bounded queue.
 */
(function (root) {
  "use strict";

  var DEFAULTS = {
    reconnect: true,  // reopen a lost connection (false: the client closes for good)
    minDelay: 250,    // ms before the first reconnect attempt (then doubling, with jitter)
    maxDelay: 10000,  // ms, the ceiling of that doubling
    timeout: 30000,   // ms a call waits for its answer (0: no limit); a call may pass its own
    maxQueue: 100,    // calls that may wait for a connection; more are rejected at once
    WebSocket: null,  // the WebSocket constructor (default: the global one)
  };

  var EVENTS = ["open", "close", "reconnect", "push", "error"];

  // A failed call. From the server: `status`, `errors` and the whole `envelope`. From the
  // client itself: `code` is "timeout", "disconnected", "closed", "queue_full" or "invalid".
  class GatewayError extends Error {
    constructor(message, fields) {
      super(message);
      this.name = "GatewayError";
      Object.assign(this, fields);
    }
  }

  // The first message of an envelope's `errors`: a string as it is, a failed next({...})
  // table by its `message`, input failures ({"multiplier": ["must be > 0"]}) as
  // "multiplier: must be > 0".
  function firstMessage(errors, status) {
    var e = Array.isArray(errors) ? errors[0] : undefined;
    if (typeof e === "string") return e;
    if (e && typeof e === "object") {
      if (typeof e.message === "string") return e.message;
      var key = Object.keys(e)[0];
      if (key !== undefined) return key + ": " + [].concat(e[key])[0];
    }
    return "request failed with status " + status;
  }

  // "/ws" or "ws/chat/lobby/" are taken relative to the page, with ws: or wss: to match it.
  function resolveUrl(url) {
    if (/^wss?:\/\//i.test(url) || typeof location === "undefined") return url;
    var u = new URL(url, location.href);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    return u.href;
  }

  class GatewayClient {
    constructor(url, options) {
      this.url = resolveUrl(url || "/ws");
      this.options = Object.assign({}, DEFAULTS, options);
      this.state = "connecting"; // "connecting", "open" (ready for calls) or "closed"
      this._WebSocket = this.options.WebSocket || root.WebSocket;
      this._listeners = {};
      this._pending = new Map(); // request_id -> call sent, waiting for its answer
      this._queue = [];          // calls waiting for the connection to be ready
      this._nextId = 1;
      this._attempt = 0;         // reconnect attempts since the last successful open
      this._opened = false;      // has any connection been ready yet?
      this._token = null;        // sent again (authenticate) on every new connection
      this._ws = null;
      this._timer = null;
      this._connect();
    }

    // Run `action` with `data` (its params); resolves to the envelope's `data`, or rejects
    // with a GatewayError. opts: { route, timeout }.
    call(action, data, opts) {
      opts = opts || {};
      var frame = { action: action, data: data === undefined ? {} : data, request_id: this._nextId++ };
      if (opts.route) frame.route = opts.route;
      var timeout = opts.timeout === undefined ? this.options.timeout : opts.timeout;
      return this._request(frame, timeout, false);
    }

    // Send the built-in authenticate message; once accepted, the token is sent again on
    // every new connection before any queued call. authenticate(null) forgets it (say after
    // a logout) without sending anything.
    authenticate(token) {
      if (token === null || token === undefined) {
        this._token = null;
        return Promise.resolve(null);
      }
      return this.call("authenticate", { token: token }).then((data) => {
        this._token = token;
        return data;
      });
    }

    // Subscribe to "open" ({reconnected}), "close" ({code, reason, wasClean}), "reconnect"
    // ({attempt, delay}), "push" (the frame: parsed JSON, else the text) or "error" (a
    // GatewayError: a token refused on reconnect). Returns a function that unsubscribes.
    on(event, fn) {
      if (EVENTS.indexOf(event) < 0) throw new TypeError("unknown event " + event);
      (this._listeners[event] = this._listeners[event] || []).push(fn);
      return () => this.off(event, fn);
    }

    off(event, fn) {
      var list = this._listeners[event] || [];
      var i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    }

    // Close for good: no more reconnects; calls waiting or queued reject with "closed".
    close() {
      if (this.state === "closed") return;
      this.state = "closed";
      clearTimeout(this._timer);
      var ws = this._ws;
      this._ws = null; // its close event is then ignored
      this._failAll("closed", "the client was closed");
      if (ws) {
        ws.close(1000);
        this._emit("close", { code: 1000, reason: "client closed", wasClean: true });
      }
    }

    // -- inside -------------------------------------------------------------------------

    _connect() {
      var ws;
      try {
        ws = new this._WebSocket(this.url);
      } catch (e) { // a malformed URL: no point in trying again
        this.state = "closed";
        this._failAll("closed", "cannot connect to " + this.url + ": " + e.message);
        throw e;
      }
      this._ws = ws;
      ws.onopen = () => { if (ws === this._ws) this._onOpen(); };
      ws.onmessage = (ev) => { if (ws === this._ws) this._onMessage(ev.data); };
      ws.onclose = (ev) => { if (ws === this._ws) this._onClose(ev); };
    }

    _onOpen() {
      this._attempt = 0;
      if (!this._token) return this._ready();
      // Authenticate first and hold the queue until then: the server runs a connection's
      // messages concurrently, so a queued call sent now could run before the session is
      // restored and get a 401.
      var token = this._token;
      var frame = { action: "authenticate", data: { token: token }, request_id: this._nextId++ };
      this._request(frame, this.options.timeout, true).then(
        () => this._ready(),
        (err) => {
          if (err.code === "disconnected" || err.code === "closed") return; // the next one retries
          if (err.status === 401 && this._token === token) this._token = null; // refused for good
          this._emit("error", err); // the calls go on, unauthenticated
          this._ready();
        });
    }

    // Open (and authenticated again): send the queued calls in order, then tell listeners.
    _ready() {
      if (!this._ws) return;
      this.state = "open";
      var queued = this._queue;
      this._queue = [];
      queued.forEach((call) => this._send(call));
      this._emit("open", { reconnected: this._opened });
      this._opened = true;
    }

    _onMessage(text) {
      var msg = text;
      try { msg = JSON.parse(text); } catch (e) { /* a string pushed as it is */ }
      var id = msg !== null && typeof msg === "object" ? msg.request_id : undefined;
      if (id === undefined || id === null) return this._emit("push", msg);
      var call = this._pending.get(id);
      if (!call) return; // the answer to a call that timed out: nobody waits for it now
      this._settle(call);
      var failed = msg.status >= 400 || (Array.isArray(msg.errors) && msg.errors.length > 0);
      if (!failed) return call.resolve(msg.data);
      call.reject(new GatewayError(firstMessage(msg.errors, msg.status), {
        status: msg.status, errors: msg.errors, envelope: msg, action: call.frame.action,
      }));
    }

    _onClose(ev) {
      this._ws = null;
      var wasOpen = this.state === "open";
      // The server cancels a closed connection's actions, so calls in flight can get no
      // answer. They are not sent again: the client cannot know whether they ran.
      this._pending.forEach((call) =>
        this._fail(call, "disconnected", "the connection closed before the answer came"));
      this._emit("close", { code: ev.code, reason: ev.reason, wasClean: ev.wasClean });
      if (!this.options.reconnect) {
        this.state = "closed";
        this._failAll("closed", wasOpen ? "the connection closed" : "cannot connect to " + this.url);
        return;
      }
      this.state = "connecting";
      // Exponential backoff with "equal jitter": half the delay fixed, half random, so
      // clients dropped together do not all come back at the same moment.
      var ceiling = Math.min(this.options.maxDelay, this.options.minDelay * Math.pow(2, this._attempt));
      var delay = Math.round(ceiling / 2 + Math.random() * ceiling / 2);
      this._attempt++;
      this._emit("reconnect", { attempt: this._attempt, delay: delay });
      this._timer = setTimeout(() => {
        this._timer = null;
        if (this.state !== "closed") this._connect();
      }, delay);
    }

    // A Promise for `frame`'s answer: sent now when the connection is ready (or `direct`),
    // else queued. The timeout counts from here, queue time included.
    _request(frame, timeout, direct) {
      return new Promise((resolve, reject) => {
        var call = { frame: frame, resolve: resolve, reject: reject, timer: null, text: null };
        if (this.state === "closed") {
          return reject(new GatewayError("the client is closed", { code: "closed", action: frame.action }));
        }
        try {
          call.text = JSON.stringify(frame);
        } catch (e) { // say a cycle or a BigInt in data: this call fails, not the client
          return reject(new GatewayError("cannot send: " + e.message, { code: "invalid", action: frame.action }));
        }
        // A socket already closing (its close event still to come) would drop the frame.
        var sendable = this.state === "open" && this._ws.readyState === 1; // WebSocket.OPEN
        if (direct || sendable) return this._arm(call, timeout)._send(call);
        if (this._queue.length >= this.options.maxQueue) {
          return reject(new GatewayError("too many calls waiting for the connection (maxQueue " +
            this.options.maxQueue + ")", { code: "queue_full", action: frame.action }));
        }
        this._arm(call, timeout)._queue.push(call);
      });
    }

    _arm(call, timeout) {
      if (timeout > 0) {
        call.timer = setTimeout(() =>
          this._fail(call, "timeout", "no answer within " + timeout + " ms"), timeout);
      }
      return this;
    }

    _send(call) {
      this._pending.set(call.frame.request_id, call);
      this._ws.send(call.text);
    }

    // Forget a call: no timer, not pending, not queued. A late answer is then ignored.
    _settle(call) {
      clearTimeout(call.timer);
      this._pending.delete(call.frame.request_id);
      var i = this._queue.indexOf(call);
      if (i >= 0) this._queue.splice(i, 1);
    }

    _fail(call, code, message) {
      this._settle(call);
      call.reject(new GatewayError(message, { code: code, action: call.frame.action }));
    }

    _failAll(code, message) {
      this._pending.forEach((call) => this._fail(call, code, message));
      this._queue.slice().forEach((call) => this._fail(call, code, message));
    }

    // A listener that throws is reported (as an uncaught error) without stopping the others.
    _emit(event, arg) {
      (this._listeners[event] || []).slice().forEach((fn) => {
        try { fn(arg); } catch (e) { setTimeout(() => { throw e; }); }
      });
    }
  }

  GatewayClient.GatewayError = GatewayError;
  root.GatewayClient = GatewayClient;
  if (typeof module === "object" && module && module.exports) module.exports = GatewayClient;
})(typeof globalThis !== "undefined" ? globalThis : this);
