/* shoal web UI — the inference cluster view (GET /api/cluster, refreshed every 3 s).
   A plain Vue 3 component object, loaded before app.js; app.js mounts it as <ClusterView/>. */
"use strict";

const ClusterView = {
  data: () => ({ status: null, error: null, timer: null, updated: null }),
  async mounted() {
    await this.load();
    this.timer = setInterval(() => this.load(), 3000);
  },
  unmounted() { clearInterval(this.timer); },
  methods: {
    async load() {
      try {
        const res = await fetch("/api/cluster", { credentials: "same-origin" });
        const body = await res.json().catch(() => null);
        if (!res.ok) throw new Error((body && body.error && body.error.message) || `HTTP ${res.status}`);
        this.status = body;
        this.error = null;
        this.updated = new Date();
      } catch (e) {
        this.error = e.message;
      }
    },
    gib(n) { return n == null ? "?" : (n / 1073741824).toFixed(2); },
    short(name) { return name.split("/").pop(); },
    health(s) {
      if (!s.enabled) return "disabled";
      return s.breaker !== "closed" ? `${s.health} · circuit ${s.breaker}` : s.health;
    },
    healthClass(s) {
      if (!s.enabled) return "";
      if (s.health === "up" && s.breaker === "closed") return "ok";
      return s.health === "down" || s.breaker === "open" ? "bad" : "";
    },
  },
  template: `
  <section class="main" data-test="cluster-view">
    <div class="topbar">
      <div><h2>Cluster</h2>
        <div class="meta" v-if="status">strategy {{ status.strategy }} · queue {{ status.queue.depth }}/{{ status.queue.max }}
          · in flight {{ status.in_flight }} · {{ status.totals.requests }} requests, {{ status.totals.failovers }} failovers</div></div>
      <span class="muted" v-if="updated">updated {{ updated.toLocaleTimeString() }}</span>
    </div>
    <div class="page">
      <div class="error-box" v-if="error">{{ error }}</div>
      <div class="error-box" v-if="status && status.reload.error">shoal.toml changed but could not be used: {{ status.reload.error }}</div>
      <table class="grid" v-if="status">
        <tr><th>server</th><th>kind</th><th>health</th><th>loaded models</th><th>memory (GiB)</th><th>queue</th><th>in flight</th><th>requests</th></tr>
        <tr v-for="s in status.servers" :key="s.name" :data-server="s.name">
          <td><b>{{ s.name }}</b><div class="muted" v-if="s.url">{{ s.url }}</div><div class="muted" v-else-if="s.kind === 'embedded'">in process</div></td>
          <td>{{ s.kind }}<div class="muted" v-if="s.software && s.software !== s.kind">{{ s.software }}</div></td>
          <td><span class="dot" :class="healthClass(s)"></span> {{ health(s) }}
            <div class="muted" v-if="s.last_error" :title="s.last_error">{{ s.last_error.slice(0, 80) }}</div></td>
          <td>
            <span v-for="m in s.loaded" :key="m.name" class="tag" :title="m.name" style="margin-right:4px">{{ short(m.name) }}<template v-if="m.in_flight"> · {{ m.in_flight }}</template></span>
            <span class="muted" v-if="!s.loaded.length">—</span>
            <span class="tag warn" v-if="s.loading">loading {{ short(s.loading) }}</span>
            <div class="muted" v-if="s.aliases.length">as {{ s.aliases.join(", ") }}</div>
          </td>
          <td>{{ gib(s.memory.used_bytes) }}<template v-if="s.memory.capacity_bytes"> / {{ gib(s.memory.capacity_bytes) }}</template></td>
          <td>{{ s.queued }}</td>
          <td>{{ s.in_flight }} / {{ s.max_concurrent }}</td>
          <td>{{ s.requests }}<div class="muted" v-if="s.failures">{{ s.failures }} failed</div></td>
        </tr>
      </table>
      <div class="muted" v-else-if="!error">Loading…</div>
    </div>
  </section>`,
};

window.ClusterView = ClusterView;
