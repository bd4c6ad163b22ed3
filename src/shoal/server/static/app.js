/* shoal web UI — Vue 3 (browser build), no build step. Protocol: docs/protocol.md */
"use strict";
const { createApp, reactive, computed, nextTick, watch } = Vue;

/* ------------------------------------------------------------------ api */
class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code;
    this.hint = e.hint;
  }
}

async function api(method, path, body) {
  const res = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = null;
  try { data = await res.json(); } catch (_) { /* empty body */ }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

/* ------------------------------------------------------------------ state */
const state = reactive({
  me: null,
  booting: true,
  view: "chat",
  conversations: [],
  current: null,           // conversation id
  convs: {},               // id -> {messages: [], turns: {}, order: [], lastSeq, thinking}
  socket: "closed",        // closed | connecting | open
  toast: null,
  bots: [],
});

function conv(id) {
  if (!state.convs[id]) {
    state.convs[id] = { messages: [], byId: {}, turns: {}, order: [], lastSeq: 0, thinkingNow: null, loaded: false };
  }
  return state.convs[id];
}

function toast(message, hint, ok) {
  state.toast = { message, hint, ok };
  clearTimeout(toast._t);
  toast._t = setTimeout(() => (state.toast = null), ok ? 2500 : 6000);
}

/* ------------------------------------------------------------------ socket */
const socket = {
  ws: null,
  retry: 0,
  pending: {},
  seq: 0,
  connect() {
    if (this.ws && this.ws.readyState <= 1) return;
    state.socket = "connecting";
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/ws`);
    this.ws = ws;
    ws.onopen = () => { state.socket = "open"; this.retry = 0; };
    ws.onmessage = (m) => this.receive(JSON.parse(m.data));
    ws.onclose = () => {
      state.socket = "closed";
      if (!state.me) return;
      const delay = Math.min(8000, 500 * 2 ** this.retry++);
      setTimeout(() => this.connect(), delay);
    };
  },
  send(frame) {
    const id = "c" + ++this.seq;
    frame.id = id;
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== 1) { reject(new Error("not connected to the server yet")); return; }
      this.pending[id] = { resolve, reject };
      this.ws.send(JSON.stringify(frame));
      setTimeout(() => { if (this.pending[id]) { delete this.pending[id]; reject(new Error("the server did not answer")); } }, 20000);
    });
  },
  receive(f) {
    if (f.type === "welcome") {
      // (re)subscribe to what was open, resuming after the last event seen
      const ids = new Set(Object.keys(state.convs).filter((id) => state.convs[id].loaded));
      if (state.current) ids.add(state.current);
      for (const id of ids) this.subscribe(id);
      return;
    }
    if (f.type === "event") { applyEvent(f); return; }
    if (f.type === "caught_up") { toast(`You fell behind: ${f.refilled} event(s) were read back from the store — nothing was missed.`); return; }
    if (f.type === "notice") { toast(f.message); return; }
    const p = f.id && this.pending[f.id];
    if (p) {
      delete this.pending[f.id];
      if (f.type === "error") { const e = new Error(f.message); e.hint = f.hint; e.code = f.code; p.reject(e); }
      else p.resolve(f);
    } else if (f.type === "error") {
      toast(f.message, f.hint);
    }
  },
  subscribe(id) {
    const c = conv(id);
    return this.send({ type: "subscribe", conversation: id, after: c.lastSeq })
      .then((r) => { c.loaded = true; loadFeedback(id); return r; })
      .catch((e) => toast(e.message, e.hint));
  },
};

/* learning (issue 14): your verdicts are not events; after the replay, read them back */
async function loadFeedback(id) {
  try {
    const c = conv(id);
    for (const f of await api("GET", "/api/feedback?conversation=" + encodeURIComponent(id))) {
      const m = c.byId[f.message];
      if (m) Object.assign(m, { rating: f.rating, correction: f.correction });
    }
  } catch (e) { toast(e.message, e.hint); }
}

/* ------------------------------------------------------------------ events -> view */
function turnOf(c, id, text) {
  if (!id) return null;
  if (!c.turns[id]) {
    c.turns[id] = { id, text: text || "", items: [], thoughts: {}, settled: false, ts: Date.now() / 1000 };
    c.order.push(id);
  } else if (text && !c.turns[id].text) c.turns[id].text = text;
  return c.turns[id];
}

function upsertMessage(c, m) {
  const have = c.byId[m.id];
  if (have) { Object.assign(have, m); return have; }
  const msg = reactive({ streaming: false, recalled: [], ...m });
  c.byId[m.id] = msg;
  c.messages.push(msg);
  return msg;
}

function applyEvent(ev) {
  const c = conv(ev.conversation);
  if (ev.seq && ev.seq <= c.lastSeq) return;   // already seen (replay overlap)
  if (ev.seq) c.lastSeq = ev.seq;
  const turn = turnOf(c, ev.turn, ev.kind === "user.turn" ? ev.text : "");
  switch (ev.kind) {
    case "user.turn": {
      const local = c.messages.find((m) => m.pending && m.content === ev.text);
      if (local) { delete c.byId[local.id]; local.id = ev.message_id; local.pending = false; c.byId[ev.message_id] = local; }
      else upsertMessage(c, { id: ev.message_id, role: "user", content: ev.text, ts: ev.ts });
      break;
    }
    case "reply.start":
      // written again at the person's request: the earlier reply stays, shown as replaced
      if (ev.replaces && c.byId[ev.replaces]) c.byId[ev.replaces].replaced = true;
      upsertMessage(c, { id: ev.message_id, role: "assistant", bot: ev.bot, content: "", streaming: true,
        interjection: ev.interjection, recalled: ev.recalled || [], ts: ev.ts, reply_to: ev.turn });
      break;
    case "reply.delta": {
      const m = c.byId[ev.message_id] || upsertMessage(c, { id: ev.message_id, role: "assistant", bot: ev.bot, content: "", streaming: true });
      m.content += ev.text;
      break;
    }
    case "reply.reset": {
      // the guards stopped this attempt: what streamed so far is discarded, the reply is written again
      const m = c.byId[ev.message_id];
      if (m) m.content = "";
      break;
    }
    case "reply.check":
      if (turn) {
        const failed = Object.entries(ev.checks || {}).filter(([, v]) => v !== "ok");
        if (failed.length || ev.action !== "accepted")
          turn.items.push({ k: "note", icon: ev.action === "accepted" ? "✓" : "⚑", title: `reply check · attempt ${ev.attempt} · ${ev.action}`,
            text: failed.map(([k, v]) => `${k}: ${v}`).join("; ") || "every check passed" });
      }
      break;
    case "reply.end": {
      const m = c.byId[ev.message_id] || upsertMessage(c, { id: ev.message_id, role: "assistant", bot: ev.bot });
      Object.assign(m, { content: ev.text || m.content, streaming: false, status: ev.status, interjection: ev.interjection, error: ev.error });
      break;
    }
    case "route":
      if (turn) turn.items.push({ k: "route", ev });
      break;
    case "route.model":
      // the local-first router: which model writes the reply, and why (docs/cluster.md)
      if (turn) turn.items.push({ k: "model", ev });
      break;
    case "thought.start":
      if (turn) { const t = { k: "thought", id: ev.thought_id, bot: ev.bot, text: "", status: "thinking", reason: ev.reason, policy: ev.policy, merged: (ev.merged_from || []).length }; turn.thoughts[ev.thought_id] = t; turn.items.push(t); }
      break;
    case "thought.queued":
      if (turn) turn.items.push({ k: "note", icon: "⏳", title: `${ev.bot} · queued`, text: `waits behind ${ev.position - 1 ? ev.position - 1 + " other turn(s) and " : ""}the running thought` });
      break;
    case "monologue.step":
      if (turn) turn.items.push({ k: "note", icon: "⇄", title: `monologue · round ${ev.round} · ${ev.speaker}`, text: ev.text });
      break;
    case "action.start":
      if (turn) turn.items.push({ k: "note", icon: "⚡", title: `${ev.bot} (hot action bot) started`, text: ev.task });
      break;
    case "action.end":
      if (turn) turn.items.push({ k: "note", icon: "⚡", title: `${ev.bot} · ${ev.status} · gone`, text: ev.text || ev.error || "" });
      break;
    case "alarm":
      { const t = turn || turnOf(c, `alarm:${ev.seq || Date.now()}`, `alarm: ${ev.hook}`); t.settled = true;
        t.items.push({ k: "note", icon: "⏰", title: `alarm · ${ev.hook}`, text: ev.text }); }
      break;
    case "timer.tick":
      if (turn) turn.items.push({ k: "note", icon: "⌛", title: `${ev.bot} · ${ev.seconds}s of silence`, text: "the primary may nudge" });
      break;
    case "instruction.changed":
      if (turn) turn.items.push({ k: "note", icon: "✎", title: `instruction v${ev.version}`, text: ev.text || "(back to the bot's own instruction)" });
      break;
    case "instruction.proposal":
      if (turn) turn.items.push({ k: "note", icon: ev.accepted ? "✎" : "⊘", title: `${ev.thinker} proposed an instruction · ${ev.accepted ? "accepted" : "refused: " + ev.problem}`, text: ev.rule || "(nothing lasting)" });
      break;
    case "thought.delta":
      if (turn && turn.thoughts[ev.thought_id]) turn.thoughts[ev.thought_id].text += ev.text;
      break;
    case "thought.end":
      if (turn) {
        let t = turn.thoughts[ev.thought_id];
        if (!t) { t = { k: "thought", id: ev.thought_id, bot: ev.bot }; turn.thoughts[ev.thought_id] = t; turn.items.push(t); }
        Object.assign(t, { text: ev.text, status: ev.status });
      }
      break;
    case "memory.write":
      if (turn && ev.item.kind !== "raw") turn.items.push({ k: "memory", ev });
      if (turn && ev.item.kind === "raw") turn.rawNotes = (turn.rawNotes || 0) + 1;
      break;
    case "memory.rejected":
      if (turn) turn.items.push({ k: "rejected", ev });
      break;
    case "memory.proposed":
      if (turn) turn.items.push({ k: "proposed", ev });
      break;
    case "memory.consent":
      if (turn) turn.items.push({ k: "consent", ev });
      break;
    case "injection":
      if (turn) turn.items.push({ k: "inject", ev });
      break;
    case "turn.settled":
      if (turn) { turn.settled = true; turn.timedOut = ev.timed_out; }
      break;
    case "bot.error":
      if (turn) turn.items.push({ k: "error", ev });
      break;
    case "tool.call":
    case "tool.result": {
      // a call and its result are one item; a call outside a turn (a direct one) still shows
      const t = turn || Object.assign(turnOf(c, "tools", "tool calls outside a turn"), { settled: true });
      t.tools = t.tools || {};
      let it = t.tools[ev.call_id];
      if (!it) { it = reactive({ k: "tool", bot: ev.bot, tool: ev.tool, args: {}, status: "calling" }); t.tools[ev.call_id] = it; t.items.push(it); }
      if (ev.kind === "tool.call") Object.assign(it, { bot: ev.bot, args: ev.arguments || {} });
      else Object.assign(it, { status: ev.status, result: ev.result, error: ev.error });
      break;
    }
  }
  if (ev.conversation === state.current) scrollSoon();
  const listed = state.conversations.find((x) => x.id === ev.conversation);
  if (listed && ev.kind === "user.turn" && !listed.title) listed.title = ev.text.slice(0, 60);
}

let scrollPending = false;
function scrollSoon() {
  if (scrollPending) return;
  scrollPending = true;
  nextTick(() => {
    scrollPending = false;
    for (const sel of [".messages", ".hs-body"]) {
      const el = document.querySelector(sel);
      if (el && el.scrollHeight - el.scrollTop - el.clientHeight < 240) el.scrollTop = el.scrollHeight;
    }
  });
}

/* ------------------------------------------------------------------ helpers */
const fmtTime = (ts) => ts ? new Date(ts * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) : "";
const ago = (ts) => {
  if (!ts) return "";
  const s = Date.now() / 1000 - ts;
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return fmtTime(ts);
};

async function loadConversations() {
  state.conversations = await api("GET", "/api/conversations");
}

async function openConversation(id) {
  state.view = "chat";
  state.current = id;
  location.hash = "#/c/" + id;
  const c = conv(id);
  // before the socket is open, its welcome frame subscribes the current conversation
  if (!c.loaded && state.socket === "open") await socket.subscribe(id);
  scrollSoon();
}

async function newConversation() {
  const c = await api("POST", "/api/conversations", {});
  state.conversations.unshift(c);
  await openConversation(c.id);
  nextTick(() => { const t = document.querySelector(".composer textarea"); if (t) t.focus(); });
}

/* ------------------------------------------------------------------ components */
const Logo = {
  props: { size: { default: 28 } },
  template: `
    <svg :width="size" :height="size" viewBox="0 0 64 64" aria-hidden="true">
      <g fill="#22b8a6"><path d="M8 24c6-8 16-8 22 0-6 8-16 8-22 0z"/><path d="M30 24l7-6v12z"/></g>
      <g fill="#b38cf5" opacity=".9"><path d="M22 40c6-8 16-8 22 0-6 8-16 8-22 0z"/><path d="M44 40l7-6v12z"/></g>
      <g fill="#4fb3f6" opacity=".8"><path d="M6 48c4-5 10-5 14 0-4 5-10 5-14 0z"/><path d="M20 48l5-4v8z"/></g>
    </svg>`,
};

const ICONS = {
  chat: "M4 5h16v10H9l-5 4z",
  memory: "M12 3l2.2 5.8L20 11l-5.8 2.2L12 19l-2.2-5.8L4 11l5.8-2.2z",
  bots: "M12 4a8 8 0 1 0 0 16a8 8 0 1 0 0-16zm0 5a3 3 0 1 0 0 6a3 3 0 1 0 0-6z",
  key: "M8 14a4 4 0 1 1 3.9-5H21v3h-2v2h-3v-2h-4.1A4 4 0 0 1 8 14zm0-2.5a1.5 1.5 0 1 0 0-3a1.5 1.5 0 1 0 0 3z",
  users: "M9 11a3.5 3.5 0 1 0 0-7a3.5 3.5 0 1 0 0 7zm-6 9c0-3.3 2.7-6 6-6s6 2.7 6 6zm13-9a3 3 0 1 0 0-6a3 3 0 1 0 0 6zm1 3c2.2.5 4 2.7 4 6h-4.5c0-2.4-.9-4.5-2.3-5.9z",
  plus: "M11 5h2v6h6v2h-6v6h-2v-6H5v-2h6z",
  stop: "M7 7h10v10H7z",
};
const Icon = {
  props: { name: String, size: { default: 16 } },
  template: `<svg :width="size" :height="size" viewBox="0 0 24 24" fill="currentColor" aria-hidden="true" style="flex:none"><path :d="path"/></svg>`,
  computed: { path() { return ICONS[this.name] || ""; } },
};

const Login = {
  components: { Logo },
  data: () => ({ name: "", password: "", error: null, busy: false }),
  methods: {
    async submit() {
      this.busy = true; this.error = null;
      try {
        const r = await api("POST", "/api/auth/login", { name: this.name, password: this.password });
        state.me = r.user;
        await start();
      } catch (e) {
        this.error = { message: e.status === 401 ? "Wrong user name or password." : e.message, hint: e.status === 401 ? null : e.hint };
      } finally { this.busy = false; }
    },
  },
  template: `
  <div class="login-wrap">
    <form class="login-card" @submit.prevent="submit" data-test="login-form">
      <Logo :size="44"/>
      <h1>shoal</h1>
      <p class="sub">A swarm of little models that talks, thinks and remembers.</p>
      <div v-if="error" class="error-box" role="alert">{{ error.message }}<small v-if="error.hint">{{ error.hint }}</small></div>
      <label class="field"><span>User name</span><input class="input" name="name" v-model="name" autocomplete="username" autofocus required></label>
      <label class="field"><span>Password</span><input class="input" name="password" type="password" v-model="password" autocomplete="current-password" required></label>
      <button class="btn primary" style="width:100%;justify-content:center" :disabled="busy">{{ busy ? "Signing in…" : "Sign in" }}</button>
      <p class="muted" style="margin-top:16px">First time? <code>shoal up</code> printed an admin password; <code>shoal users add NAME</code> creates more accounts.</p>
    </form>
  </div>`,
};

const Chat = {
  components: { Icon },
  data: () => ({ text: "", sending: false }),
  computed: {
    c() { return state.current ? conv(state.current) : null; },
    title() { const x = state.conversations.find((v) => v.id === state.current); return (x && x.title) || "New conversation"; },
    replying() { return this.c && this.c.messages.some((m) => m.streaming); },
    // the reply "↻ again" may write again: the latest one, to the latest message
    latestReply() {
      const ms = this.c ? this.c.messages : [];
      for (let i = ms.length - 1; i >= 0; i--) {
        const m = ms[i];
        if (m.role === "user") return null;
        if (m.role === "assistant" && !m.replaced && !m.interjection) return m.id;
      }
      return null;
    },
    limit() { return (state.me && state.me.limits && state.me.limits.max_message_chars) || 16000; },
  },
  methods: {
    async removeMessage(m) {
      const what = m.role === "user"
        ? "Delete this message, shoal's reply to it, and every memory, thought and note made from them?"
        : "Delete this reply and everything made from it?";
      if (!confirm(what)) return;
      try {
        const r = await api("DELETE", "/api/messages/" + m.id);
        this.c.messages = this.c.messages.filter((x) => x.id !== m.id && x.reply_to !== m.id);
        toast(`Deleted (${r.deleted.length} record${r.deleted.length === 1 ? "" : "s"}).`, null, true);
      } catch (e) { toast(e.message, e.hint); }
    },
    // learning (issue 14): 👍/👎 and "what I wanted instead" on a reply
    async rate(m, rating) {
      try {
        const r = await api("PUT", "/api/messages/" + m.id + "/feedback", { rating: m.rating === rating ? "none" : rating });
        m.rating = r.rating;
      } catch (e) { toast(e.message, e.hint); }
    },
    async again(m) {
      try {
        await api("POST", "/api/messages/" + m.id + "/regenerate");
        m.replaced = true;
      } catch (e) { toast(e.message, e.hint); }
    },
    async correct(m) {
      const text = prompt("The reply you wanted (shoal learns from it):", m.correction || m.content);
      if (text === null) return;
      try {
        const r = await api("PUT", "/api/messages/" + m.id + "/feedback", { correction: text });
        m.correction = r.correction;
        toast("Correction saved.", null, true);
      } catch (e) { toast(e.message, e.hint); }
    },
    async send(text) {
      text = (text ?? this.text).trim();
      if (!text || !state.current) return;
      if (text.length > this.limit) { toast(`That message is ${text.length} characters; the limit is ${this.limit}.`, "Split it into several messages."); return; }
      const c = this.c;
      const local = upsertMessage(c, { id: "local-" + Date.now(), role: "user", content: text, pending: true, ts: Date.now() / 1000 });
      this.text = "";
      this.sending = true;
      scrollSoon();
      try {
        await socket.send({ type: "send", conversation: state.current, text });
      } catch (e) {
        local.failed = true;
        local.pending = false;
        toast(e.message, e.hint);
      } finally { this.sending = false; }
    },
    async stop() {
      try { await socket.send({ type: "stop", conversation: state.current }); } catch (e) { toast(e.message, e.hint); }
    },
    keydown(e) {
      if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); this.send(); }
    },
    autosize(e) { const t = e.target; t.style.height = "auto"; t.style.height = Math.min(t.scrollHeight, 200) + "px"; },
  },
  template: `
  <section class="main">
    <div class="topbar">
      <div style="min-width:0"><h2>{{ title }}</h2><div class="meta" v-if="c">{{ c.messages.length }} messages</div></div>
      <div style="display:flex;gap:8px">
        <button class="btn small" v-if="replying" @click="stop" data-test="stop"><Icon name="stop" :size="12"/> Stop</button>
      </div>
    </div>
    <div class="messages" data-test="messages">
      <div class="empty" v-if="c && !c.messages.length">
        <h3>Say something</h3>
        <p>The conversation bot answers at once. Behind it, the primary routes your words to a thinker and to memory — watch them in the headspace.</p>
        <div class="suggestions">
          <button class="btn small" @click="send('Hi! My name is Bob and I live in Leeds.')">Hi! My name is Bob and I live in Leeds.</button>
          <button class="btn small" @click="send('What should I plan for a weekend in York?')">What should I plan for a weekend in York?</button>
        </div>
      </div>
      <div v-for="m in (c ? c.messages : [])" :key="m.id" class="msg" :class="[m.role, {interjection: m.interjection, replaced: m.replaced}]" :data-test="'msg-' + m.role" :data-id="m.id">
        <div>
          <div class="who">
            <span>{{ m.role === 'user' ? 'you' : (m.bot || 'shoal') }}</span>
            <span class="tag" v-if="m.interjection">interjecting</span>
            <span class="tag" v-if="m.replaced" data-test="replaced" title="you asked for this reply again; shoal learns it was not what you wanted">replaced — asked again</span>
            <span class="tag warn" v-if="m.status === 'interrupted'">interrupted</span>
            <span class="tag err" v-if="m.status === 'error' || m.failed">{{ m.failed ? 'not sent' : 'error' }}</span>
            <span v-if="m.pending" class="tag">sending…</span>
          </div>
          <div class="bubble" :data-test="m.role === 'assistant' ? 'reply' : 'user-bubble'">{{ m.content }}<span class="cursor" v-if="m.streaming"></span></div>
          <button class="msg-delete" v-if="!m.pending && !m.streaming" @click="removeMessage(m)" title="delete this message and everything made from it" data-test="delete-message">🗑</button>
          <div class="msg-rate" :class="{rated: m.rating || m.correction}" v-if="m.role === 'assistant' && !m.streaming && !m.replaced && !String(m.id).startsWith('local-')" data-test="rate">
            <button class="btn small" :class="{primary: m.rating === 'good'}" @click="rate(m, 'good')" title="a good reply (shoal learns from it)" data-test="rate-good" aria-label="good reply" :aria-pressed="m.rating === 'good' ? 'true' : 'false'">✓ good</button>
            <button class="btn small" :class="{bad: m.rating === 'bad'}" @click="rate(m, 'bad')" title="a bad reply (left out of what shoal learns from)" data-test="rate-bad" aria-label="bad reply" :aria-pressed="m.rating === 'bad' ? 'true' : 'false'">✗ bad</button>
            <span class="tag" v-if="m.rating" data-test="rated">{{ m.rating === 'good' ? 'rated good' : 'rated bad' }}</span>
            <button class="btn small" @click="correct(m)" title="edit it into the reply you wanted" data-test="rate-fix">✎</button>
            <button class="btn small" v-if="m.id === latestReply && !replying" @click="again(m)" title="write this reply again (this one is kept as what you did not want)" data-test="again">↻ again</button>
            <span class="tag" v-if="m.correction" :title="m.correction">corrected</span>
          </div>
          <div class="recalled" v-if="m.recalled && m.recalled.length" title="memories given to this reply">
            <span v-for="r in m.recalled" :key="r.id" :title="(r.sources || []).join(' ')">↺ {{ r.scope && r.scope.startsWith('node:') ? 'node ' + r.scope.slice(5) + ': ' : '' }}{{ r.text }}</span>
          </div>
        </div>
      </div>
    </div>
    <div class="composer">
      <form @submit.prevent="send()">
        <textarea rows="1" v-model="text" @keydown="keydown" @input="autosize" placeholder="Message shoal…" data-test="composer" :disabled="!state.current"></textarea>
        <button class="btn primary" :disabled="!text.trim() || sending" data-test="send">Send</button>
      </form>
      <div class="hint"><span>Enter to send · Shift+Enter for a new line</span><span :style="{color: text.length > limit ? 'var(--danger)' : ''}">{{ text.length > limit * 0.8 ? text.length + ' / ' + limit : '' }}</span></div>
    </div>
  </section>`,
  setup() { return { state }; },
};

const Headspace = {
  computed: {
    c() { return state.current ? conv(state.current) : null; },
    turns() { return this.c ? this.c.order.map((id) => this.c.turns[id]).filter((t) => t.items.length || t.rawNotes) : []; },
    thinking() { return this.turns.some((t) => Object.values(t.thoughts).some((x) => x.status === "thinking")); },
  },
  methods: {
    async ask() {
      try {
        const r = await socket.send({ type: "thinking", conversation: state.current });
        this.c.thinkingNow = r.statuses;
      } catch (e) { toast(e.message, e.hint); }
    },
    async cancel() {
      try { await socket.send({ type: "cancel_thought", conversation: state.current }); } catch (e) { toast(e.message, e.hint); }
    },
    argsText(args) { return Object.entries(args || {}).map(([k, v]) => `${k}: ${JSON.stringify(v)}`).join(", "); },
    routeText(ev) { return ev.targets.length ? ev.targets.map((t) => `${t} (${ev.reasons[t] || ""})`).join(", ") : "nobody"; },
    ago,
  },
  template: `
  <aside class="headspace" data-test="headspace">
    <header>
      <h3><span class="pulse" v-if="thinking"></span> Headspace</h3>
      <div style="display:flex;gap:6px">
        <button class="btn small" @click="ask" :disabled="!c" title="What are you thinking about?">What are you thinking?</button>
        <button class="btn small danger" v-if="thinking" @click="cancel" title="cancel running thoughts">✕</button>
      </div>
    </header>
    <div class="think-now" v-if="c && c.thinkingNow">
      <div style="display:flex;justify-content:space-between"><b>Right now</b><button class="btn ghost small" @click="c.thinkingNow = null">close</button></div>
      <div v-if="!c.thinkingNow.length" class="muted">No thinker has anything on its mind.</div>
      <div v-for="s in c.thinkingNow" :key="s.bot + s.thought_id"><span class="muted">{{ s.bot }} · {{ s.thinking ? 'thinking' : 'last thought' }}</span><pre>{{ s.text || '…' }}</pre></div>
    </div>
    <div class="hs-body">
      <div class="hs-empty" v-if="!turns.length">Nothing yet. Send a message: the primary's routing, the thinkers' streams, memory writes and injections appear here as they happen.</div>
      <div class="turn-card" v-for="t in turns" :key="t.id" data-test="turn-card">
        <div class="t-head"><b>“{{ t.text || '…' }}”</b><span>{{ t.settled ? 'settled' : 'working…' }}</span></div>
        <div v-for="(it, i) in t.items" :key="i" class="hs-item" :class="it.k">
          <template v-if="it.k === 'route'"><div class="k">⇢ routed</div>{{ routeText(it.ev) }}</template>
          <template v-else-if="it.k === 'model'"><div class="k" data-test="model-route">{{ it.ev.fallback ? '⤺' : '⇢' }} model · {{ it.ev.server }}{{ it.ev.fallback ? ' (fallback)' : '' }}</div>{{ it.ev.text }}</template>
          <template v-else-if="it.k === 'thought'">
            <div class="k"><span class="pulse" v-if="it.status === 'thinking'"></span>{{ it.bot }} · {{ it.status }}<span v-if="it.policy" class="src"> · {{ it.policy }}{{ it.merged ? ', folds ' + it.merged + ' earlier' : '' }}</span></div>
            <div class="txt" data-test="thought">{{ it.text || '…' }}</div>
          </template>
          <template v-else-if="it.k === 'memory' && it.ev.item.kind === 'summary'">
            <div class="k">✦ summarised older messages</div><span class="src">{{ it.ev.item.text }}</span>
          </template>
          <template v-else-if="it.k === 'memory'">
            <div class="k">✦ remembered · {{ it.ev.item.attribute }}</div>
            <span class="quote">{{ it.ev.item.value }}</span> <span class="src">— “{{ it.ev.item.text }}” ({{ it.ev.item.method }}{{ it.ev.item.supersedes ? ', replaces an older fact' : '' }})</span>
          </template>
          <template v-else-if="it.k === 'rejected'"><div class="k">✧ not remembered</div>{{ it.ev.candidate.attribute }}: {{ it.ev.candidate.value }} — {{ it.ev.reason }}</template>
          <template v-else-if="it.k === 'proposed'"><div class="k">? asks before remembering</div><span v-for="p in it.ev.pending" :key="p.id" class="quote" style="display:block">{{ p.attribute }}: {{ p.value }}</span></template>
          <template v-else-if="it.k === 'consent'"><div class="k">{{ it.ev.approved ? '✦ you said yes: stored' : '✧ you said no: dropped' }}</div><span class="src">{{ it.ev.pending_ids.length }} fact(s){{ it.ev.reason ? ' — ' + it.ev.reason : '' }}</span></template>
          <template v-else-if="it.k === 'inject'"><div class="k">↯ primary → conversation · {{ it.ev.mode === 'interject' ? 'interject' : 'for the next reply' }}</div>{{ it.ev.text }}</template>
          <template v-else-if="it.k === 'note'"><div class="k">{{ it.icon }} {{ it.title }}</div>{{ it.text }}</template>
          <template v-else-if="it.k === 'tool'">
            <div class="k" data-test="tool-call">ƒ {{ it.bot }} → {{ it.tool }} · {{ it.status }}</div>
            <code class="src">{{ it.tool }}({{ argsText(it.args) }})</code>
            <div v-if="it.status === 'ok'" class="quote" data-test="tool-result">= {{ it.result }}</div>
            <div v-else-if="it.error" class="tool-error" data-test="tool-error">{{ it.error }}</div>
          </template>
          <template v-else-if="it.k === 'error'"><div class="k">⚠ {{ it.ev.bot }}</div>{{ it.ev.error }}</template>
        </div>
        <div class="hs-item" v-if="t.rawNotes"><span class="src">{{ t.rawNotes }} raw note(s) written</span></div>
      </div>
    </div>
  </aside>`,
};

const Memories = {
  data: () => ({ q: "", kind: "fact", items: [], open: null, detail: null, loading: false, superseded: false }),
  async mounted() { await this.load(); },
  methods: {
    async load() {
      this.loading = true;
      try {
        const params = new URLSearchParams();
        if (this.q) params.set("q", this.q);
        if (this.kind) params.set("kind", this.kind);
        if (this.superseded) params.set("include_superseded", "true");
        params.set("limit", "200");
        this.items = await api("GET", "/api/memories?" + params);
      } catch (e) { toast(e.message, e.hint); } finally { this.loading = false; }
    },
    async expand(m) {
      if (this.open === m.id) { this.open = null; return; }
      this.open = m.id; this.detail = null;
      try { this.detail = await api("GET", "/api/memories/" + m.id); } catch (e) { toast(e.message, e.hint); }
    },
    async forget(m) {
      if (!confirm(`Forget “${m.text}”? This deletes it, and every copy made from it, for good.`)) return;
      try {
        const r = await api("DELETE", "/api/memories/" + m.id);
        this.items = this.items.filter((x) => x.id !== m.id);
        toast(`Forgotten (${r.deleted.length} record${r.deleted.length === 1 ? "" : "s"} deleted).`, null, true);
        // the message it came from is still in its conversation: say so, and offer to delete it too
        for (const src of r.source_messages || []) {
          if (confirm("The message this came from is still in your conversation. Delete that message too (and shoal's reply to it)?")) {
            const d = await api("DELETE", "/api/messages/" + src.id);
            toast(`Message deleted (${d.deleted.length} record${d.deleted.length === 1 ? "" : "s"}).`, null, true);
            const c = state.convs[src.conversation];
            if (c) c.messages = c.messages.filter((x) => x.id !== src.id && x.reply_to !== src.id);
          } else {
            toast("The source message stays in its conversation; you can delete it there (🗑 on the message).");
          }
        }
      } catch (e) { toast(e.message, e.hint); }
    },
    fmtTime,
  },
  template: `
  <section class="main">
    <div class="topbar"><div><h2>Memory</h2><div class="meta">What shoal knows about you, and where it learned it.</div></div></div>
    <div class="page page-narrow">
      <form class="toolbar" @submit.prevent="load">
        <input class="input" v-model="q" placeholder="Search memories…" data-test="memory-search">
        <select class="input" v-model="kind" style="max-width:160px" @change="load">
          <option value="fact">Facts</option><option value="raw">Raw notes</option><option value="summary">Summaries</option><option value="">Everything</option>
        </select>
        <label class="switch muted"><input type="checkbox" v-model="superseded" @change="load"> show replaced facts</label>
        <button class="btn">Search</button>
      </form>
      <div class="muted" v-if="!loading && !items.length">No memories{{ q ? ' match “' + q + '”' : ' yet' }}.</div>
      <div class="cards">
        <div class="card" v-for="m in items" :key="m.id" data-test="memory-card">
          <div class="row">
            <div style="cursor:pointer;flex:1" @click="expand(m)">
              <div style="display:flex;gap:8px;align-items:center;margin-bottom:4px">
                <span class="pill" :class="m.kind">{{ m.kind }}</span>
                <span class="pill" v-for="f in (m.facts && m.facts.length ? m.facts : (m.attribute ? [{attribute: m.attribute, value: m.value}] : []))"
                      :key="f.attribute + f.value" :class="{replaced: f.superseded_by}">{{ f.attribute }}: {{ f.value }}</span>
                <span class="pill" v-if="m.superseded_by">replaced</span>
                <span class="muted">{{ fmtTime(m.created_at) }}</span>
              </div>
              <div class="mem-text">{{ m.text }}</div>
            </div>
            <button class="btn small danger" @click="forget(m)" data-test="forget">Forget</button>
          </div>
          <div v-if="open === m.id">
            <div class="prov" v-if="detail">
              <div v-for="s in detail.source_messages" :key="s.id">From {{ s.role === 'user' ? 'you' : s.bot }}, {{ fmtTime(s.created_at) }}: <span class="said">“{{ s.content || '(message deleted)' }}”</span></div>
              <div class="muted">method: {{ detail.method || '—' }} · id {{ detail.id }}</div>
              <div class="history" v-if="detail.history && detail.history.length > 1">History:
                <span v-for="h in detail.history" :key="h.id"> <s v-if="h.superseded_by">{{ h.value }}</s><b v-else>{{ h.value }}</b> ·</span>
              </div>
            </div>
            <div class="muted" v-else>Loading provenance…</div>
          </div>
        </div>
      </div>
    </div>
  </section>`,
};

const Bots = {
  data: () => ({ edit: null, draft: null, saving: false }),
  async mounted() { await this.load(); },
  methods: {
    async load() { try { state.bots = await api("GET", "/api/bots"); } catch (e) { toast(e.message, e.hint); } },
    start(b) { this.edit = b.name; this.draft = JSON.parse(JSON.stringify({ ...b.settings, enabled: b.enabled })); },
    async save(b) {
      this.saving = true;
      try {
        const updated = await api("PATCH", "/api/bots/" + b.name, this.draft);
        Object.assign(b, updated);
        this.edit = null;
        toast(`Saved ${b.name}.`, null, true);
      } catch (e) { toast(e.message, e.hint); } finally { this.saving = false; }
    },
  },
  computed: { bots: () => state.bots },
  template: `
  <section class="main">
    <div class="topbar"><div><h2>Bots</h2><div class="meta">The swarm: who talks, who routes, who thinks, who remembers.</div></div></div>
    <div class="page page-narrow">
      <div class="cards">
        <div class="card" v-for="b in bots" :key="b.name" data-test="bot-card">
          <div class="row">
            <div>
              <h4>{{ b.name }} <span class="pill role">{{ b.role }}</span> <span class="pill" v-if="!b.enabled">disabled</span></h4>
              <div class="muted">{{ b.model }} on {{ b.server }} ({{ b.server_kind }})</div>
            </div>
            <button class="btn small" v-if="b.may.configure && edit !== b.name" @click="start(b)">Settings</button>
          </div>
          <dl class="kv">
            <dt>you may</dt><dd>{{ Object.entries(b.may).filter(([k, v]) => v).map(([k]) => k.replace('_', ' ')).join(', ') || 'nothing' }}</dd>
            <template v-if="b.placement"><dt>runs on</dt><dd data-test="bot-runs-on">{{ b.placement.runs_on.join(', ') || 'nowhere' }} · {{ b.placement.alive ? 'alive' : (b.placement.missing ? 'missing' : 'not running') }}<span class="muted" v-if="b.placement.mesh !== 'inprocess'"> ({{ b.placement.mesh }})</span></dd></template>
            <template v-if="b.settings && edit !== b.name">
              <dt>instruction</dt><dd>{{ b.settings.instruction || '—' }}</dd>
              <dt>sampling</dt><dd>temperature {{ b.settings.temperature }}, up to {{ b.settings.max_tokens }} tokens, history {{ b.settings.history }}</dd>
              <dt>access</dt><dd>chat: {{ (b.access.chat || ['(role default)']).join(', ') }} · thoughts: {{ b.access.see_thoughts.join(', ') }} · configure: {{ b.access.configure.join(', ') }}</dd>
              <dt>memory scopes</dt><dd>read {{ b.memory_scopes.read.join(', ') || 'none' }} · write {{ b.memory_scopes.write.join(', ') || 'none' }}</dd>
              <dt>tools</dt><dd data-test="bot-tools">{{ (b.settings.tools || []).join(', ') || 'none' }}</dd>
            </template>
          </dl>
          <form v-if="edit === b.name" @submit.prevent="save(b)" style="margin-top:12px">
            <label class="field"><span>Instruction</span><textarea class="input" rows="3" v-model="draft.instruction"></textarea></label>
            <label class="field"><span>Tools it may call (comma-separated; * for all; GET /api/tools lists them)</span><input class="input" data-test="bot-tools-input" :value="(draft.tools || []).join(', ')" @input="draft.tools = $event.target.value.split(',').map(s => s.trim()).filter(Boolean)"></label>
            <div class="grid-2">
              <label class="field"><span>Temperature ({{ draft.temperature }})</span><input type="range" min="0" max="1.5" step="0.05" v-model.number="draft.temperature" style="width:100%"></label>
              <label class="field"><span>Max tokens</span><input class="input" type="number" min="1" max="8192" v-model.number="draft.max_tokens"></label>
              <label class="field"><span>History (messages)</span><input class="input" type="number" min="0" max="1000" v-model.number="draft.history"></label>
              <label class="field"><span>Enabled</span><label class="switch"><input type="checkbox" v-model="draft.enabled" :disabled="b.role === 'conversation' || b.role === 'primary'"> {{ draft.enabled ? 'on' : 'off' }}</label></label>
            </div>
            <div style="display:flex;gap:8px"><button class="btn primary" :disabled="saving">Save</button><button type="button" class="btn ghost" @click="edit = null">Cancel</button></div>
          </form>
        </div>
      </div>
    </div>
  </section>`,
};

const Tokens = {
  data: () => ({ items: [], name: "", created: null }),
  async mounted() { await this.load(); },
  methods: {
    async load() { try { this.items = await api("GET", "/api/tokens"); } catch (e) { toast(e.message, e.hint); } },
    async create() {
      try { this.created = await api("POST", "/api/tokens", { name: this.name || "token" }); this.name = ""; await this.load(); } catch (e) { toast(e.message, e.hint); }
    },
    async revoke(t) {
      if (!confirm(`Revoke “${t.name}”? Programs using it will stop working.`)) return;
      try { await api("DELETE", "/api/tokens/" + t.id); await this.load(); } catch (e) { toast(e.message, e.hint); }
    },
    fmtTime,
  },
  template: `
  <section class="main">
    <div class="topbar"><div><h2>API tokens</h2><div class="meta">For programs: the REST API, the websocket and the OpenAI-compatible /v1.</div></div></div>
    <div class="page page-narrow">
      <form class="toolbar" @submit.prevent="create"><input class="input" v-model="name" placeholder="What is it for? (e.g. my-script)"><button class="btn primary">Create token</button></form>
      <div class="card" v-if="created" style="margin-bottom:14px">
        <b>New token “{{ created.name }}”</b> — copy it now; it will not be shown again.
        <div class="secret" data-test="new-token">{{ created.token }}</div>
        <div class="muted">Use it as <code>Authorization: Bearer …</code>, e.g. with the OpenAI client: <code>OpenAI(base_url="{{ location.origin }}/v1", api_key="…")</code></div>
      </div>
      <table class="grid" v-if="items.length">
        <tr><th>name</th><th>created</th><th>last used</th><th>state</th><th></th></tr>
        <tr v-for="t in items" :key="t.id"><td>{{ t.name }}</td><td>{{ fmtTime(t.created_at) }}</td><td>{{ fmtTime(t.last_used_at) || '—' }}</td><td>{{ t.revoked ? 'revoked' : 'active' }}</td>
          <td style="text-align:right"><button class="btn small danger" v-if="!t.revoked" @click="revoke(t)">Revoke</button></td></tr>
      </table>
      <div class="muted" v-else>No tokens yet.</div>
    </div>
  </section>`,
  setup() { return { location }; },
};

const Users = {
  data: () => ({ items: [], name: "", password: "", admin: false }),
  async mounted() { await this.load(); },
  methods: {
    async load() { try { this.items = await api("GET", "/api/users"); } catch (e) { toast(e.message, e.hint); } },
    async add() {
      try { await api("POST", "/api/users", { name: this.name, password: this.password, admin: this.admin }); this.name = this.password = ""; this.admin = false; await this.load(); toast("Account created.", null, true); }
      catch (e) { toast(e.message, e.hint); }
    },
    async remove(u) {
      if (!confirm(`Remove ${u.name} with all their conversations and memories?`)) return;
      try { await api("DELETE", "/api/users/" + encodeURIComponent(u.name)); await this.load(); } catch (e) { toast(e.message, e.hint); }
    },
    fmtTime,
  },
  template: `
  <section class="main">
    <div class="topbar"><div><h2>Users</h2><div class="meta">Accounts. Each person sees only their own conversations and memories.</div></div></div>
    <div class="page page-narrow">
      <form class="toolbar" @submit.prevent="add">
        <input class="input" v-model="name" placeholder="user name" style="max-width:200px" required>
        <input class="input" v-model="password" type="password" placeholder="password (8+ characters)" style="max-width:240px" required minlength="8">
        <label class="switch muted"><input type="checkbox" v-model="admin"> admin</label>
        <button class="btn primary">Add user</button>
      </form>
      <table class="grid">
        <tr><th>name</th><th>role</th><th>created</th><th></th></tr>
        <tr v-for="u in items" :key="u.id"><td>{{ u.name }}</td><td>{{ u.admin ? 'admin' : 'user' }}</td><td>{{ fmtTime(u.created_at) }}</td>
          <td style="text-align:right"><button class="btn small danger" v-if="u.id !== state.me.id" @click="remove(u)">Remove</button></td></tr>
      </table>
    </div>
  </section>`,
  setup() { return { state }; },
};

const Shell = {
  components: { Logo, Icon, Chat, Headspace, Memories, Bots, Tokens, Users, ClusterView, NodesView, LearnView, UlmView },
  computed: {
    initial() { return state.me ? state.me.name.slice(0, 1).toUpperCase() : "?"; },
  },
  methods: {
    go(v) { state.view = v; location.hash = "#/" + v; },
    open: openConversation,
    newConversation,
    async logout() { await api("POST", "/api/auth/logout"); state.me = null; if (socket.ws) socket.ws.close(); location.hash = ""; },
    ago,
  },
  template: `
  <div class="shell" :class="{'no-headspace': state.view !== 'chat'}">
    <nav class="sidebar">
      <div class="brand"><Logo/><div>shoal<small>little models, thinking together</small></div></div>
      <div class="nav">
        <button :class="{on: state.view === 'chat'}" @click="go('chat')"><Icon name="chat"/> Chat</button>
        <button :class="{on: state.view === 'memories'}" @click="go('memories')" data-test="nav-memories"><Icon name="memory"/> Memory</button>
        <button :class="{on: state.view === 'bots'}" @click="go('bots')" data-test="nav-bots"><Icon name="bots"/> Bots</button>
        <button :class="{on: state.view === 'cluster'}" @click="go('cluster')" data-test="nav-cluster"><Icon name="bots"/> Cluster</button>
        <button :class="{on: state.view === 'nodes'}" @click="go('nodes')" data-test="nav-nodes"><Icon name="bots"/> Nodes</button>
        <button :class="{on: state.view === 'learn'}" @click="go('learn')" data-test="nav-learn"><Icon name="memory"/> Learning</button>
        <button :class="{on: state.view === 'ulm'}" @click="go('ulm')" data-test="nav-ulm"><Icon name="bots"/> µLMs</button>
        <button :class="{on: state.view === 'tokens'}" @click="go('tokens')"><Icon name="key"/> API tokens</button>
        <button v-if="state.me.admin" :class="{on: state.view === 'users'}" @click="go('users')"><Icon name="users"/> Users</button>
      </div>
      <div class="section-title"><span>Conversations</span><button class="btn small" @click="newConversation" data-test="new-chat"><Icon name="plus" :size="12"/> New</button></div>
      <div class="conv-list">
        <button v-for="c in state.conversations" :key="c.id" class="conv-item" :class="{on: c.id === state.current && state.view === 'chat'}" @click="open(c.id)">
          {{ c.title || (c.room ? 'Room ' + c.room : 'New conversation') }}<small>{{ c.room ? 'room · ' : '' }}{{ ago(c.updated_at) }}</small>
        </button>
        <div class="muted" style="padding:8px 10px" v-if="!state.conversations.length">No conversations yet.</div>
      </div>
      <div class="me">
        <div style="display:flex;gap:10px;align-items:center;min-width:0">
          <div class="avatar">{{ initial }}</div>
          <div style="min-width:0"><div style="overflow:hidden;text-overflow:ellipsis">{{ state.me.name }}</div>
            <div class="conn"><span class="dot" :class="{ok: state.socket === 'open', bad: state.socket === 'closed'}"></span>{{ state.socket === 'open' ? 'live' : state.socket }}</div></div>
        </div>
        <button class="btn ghost small" @click="logout">Sign out</button>
      </div>
    </nav>
    <template v-if="state.view === 'chat'">
      <Chat v-if="state.current"/>
      <section class="main" v-else><div class="empty"><h3>Welcome to shoal</h3><p>Start a conversation to meet the swarm.</p><button class="btn primary" @click="newConversation">Start a conversation</button></div></section>
      <Headspace/>
    </template>
    <Memories v-else-if="state.view === 'memories'"/>
    <Bots v-else-if="state.view === 'bots'"/>
    <ClusterView v-else-if="state.view === 'cluster'"/>
    <NodesView v-else-if="state.view === 'nodes'" :admin="state.me.admin"/>
    <LearnView v-else-if="state.view === 'learn'"/>
    <UlmView v-else-if="state.view === 'ulm'"/>
    <Tokens v-else-if="state.view === 'tokens'"/>
    <Users v-else-if="state.view === 'users' && state.me.admin"/>
  </div>`,
  setup() { return { state }; },
};

const Root = {
  components: { Login, Shell },
  template: `
    <div v-if="state.booting" class="login-wrap"><span class="muted">Loading…</span></div>
    <Login v-else-if="!state.me"/>
    <Shell v-else/>
    <div class="toast" :class="{ok: state.toast.ok}" v-if="state.toast" role="status" data-test="toast">{{ state.toast.message }}<small v-if="state.toast.hint">{{ state.toast.hint }}</small></div>`,
  setup() { return { state }; },
};

/* ------------------------------------------------------------------ boot */
async function start() {
  const me = await api("GET", "/api/me");
  state.me = { ...me.user, limits: me.limits };
  socket.connect();
  await loadConversations();
  const m = location.hash.match(/^#\/c\/(\w+)/);
  if (m && state.conversations.some((c) => c.id === m[1])) await openConversation(m[1]);
  else if (location.hash.startsWith("#/") && ["memories", "bots", "cluster", "nodes", "learn", "ulm", "tokens", "users"].includes(location.hash.slice(2))) state.view = location.hash.slice(2);
  else if (state.conversations.length) await openConversation(state.conversations[0].id);
}

(async () => {
  try { await start(); } catch (e) { if (!(e instanceof ApiError && e.status === 401)) toast(e.message, e.hint); state.me = null; }
  state.booting = false;
})();

createApp(Root).mount("#app");
