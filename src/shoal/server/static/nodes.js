/* shoal web UI — the Nodes view: edge nodes the hub holds (GET /api/nodes, refreshed every 5 s).
   Each node: status, last sync, backlog, clock offset; open one for its sensor plots (PNG from
   /api/nodes/<n>/plot.png), latest readings, the observation stream and its facts with provenance.
   A plain Vue 3 component object, loaded before app.js; app.js mounts it as <NodesView/>. */
"use strict";

async function nodesApi(method, path) {
  const res = await fetch(path, { method, credentials: "same-origin" });
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) {
    const e = new Error((body && body.error && body.error.message) || `HTTP ${res.status}`);
    e.hint = body && body.error && body.error.hint;
    throw e;
  }
  return body;
}

const NodesView = {
  props: { admin: { type: Boolean, default: false } },
  data: () => ({
    list: null, hub: null, error: null, updated: null, timer: null,
    open: null, detail: null, notes: [], facts: [], hours: 24, stamp: Date.now(), grants: null, grantUser: "",
  }),
  async mounted() {
    await this.load();
    this.timer = setInterval(() => this.load(), 5000);
  },
  unmounted() { clearInterval(this.timer); },
  methods: {
    async load() {
      try {
        const body = await nodesApi("GET", "/api/nodes");
        this.list = body.nodes;
        this.hub = body.hub;
        this.error = null;
        this.updated = new Date();
        if (!this.open && this.list.length) await this.select(this.list[0].name);
        else if (this.open) await this.refreshDetail();
      } catch (e) { this.error = e.message; }
    },
    async select(name) {
      this.open = name;
      this.detail = null;
      this.grants = null;
      await this.refreshDetail();
    },
    async refreshDetail() {
      const n = encodeURIComponent(this.open);
      try {
        const [d, obs, facts] = await Promise.all([
          nodesApi("GET", `/api/nodes/${n}`),
          nodesApi("GET", `/api/nodes/${n}/notes?kind=observation,clock,event&limit=60`),
          nodesApi("GET", `/api/nodes/${n}/notes?kind=fact&limit=20`),
        ]);
        const changed = !this.detail || JSON.stringify(d.sensors.map((s) => s.last && s.last.seq)) !== JSON.stringify(this.detail.sensors.map((s) => s.last && s.last.seq));
        this.detail = d; this.notes = obs; this.facts = facts;
        if (changed) this.stamp = Date.now();
        if (this.admin && this.grants === null) this.grants = await nodesApi("GET", `/api/nodes/${n}/grants`);
      } catch (e) { this.error = e.message; }
    },
    plot(s) { return `/api/nodes/${encodeURIComponent(this.open)}/plot.png?sensor=${s.id}&hours=${this.hours}&t=${this.stamp}`; },
    async addGrant() {
      if (!this.grantUser) return;
      try {
        await nodesApi("PUT", `/api/nodes/${encodeURIComponent(this.open)}/grants/${encodeURIComponent(this.grantUser)}`);
        this.grantUser = "";
        this.grants = await nodesApi("GET", `/api/nodes/${encodeURIComponent(this.open)}/grants`);
      } catch (e) { this.error = e.message + (e.hint ? ` (${e.hint})` : ""); }
    },
    async removeGrant(u) {
      try {
        await nodesApi("DELETE", `/api/nodes/${encodeURIComponent(this.open)}/grants/${encodeURIComponent(u)}`);
        this.grants = await nodesApi("GET", `/api/nodes/${encodeURIComponent(this.open)}/grants`);
      } catch (e) { this.error = e.message; }
    },
    when(t) { return t ? new Date(t * 1000).toLocaleString() : "never"; },
    ago(t) {
      if (!t) return "never";
      const s = Math.max(0, Date.now() / 1000 - t);
      if (s < 60) return `${Math.round(s)} s ago`;
      if (s < 3600) return `${Math.round(s / 60)} min ago`;
      if (s < 86400) return `${Math.round(s / 3600)} h ago`;
      return `${Math.round(s / 86400)} d ago`;
    },
    offset(ms) { return ms == null ? "—" : `${ms >= 0 ? "+" : ""}${(ms / 1000).toFixed(1)} s`; },
    statusClass(n) { return n.error ? "bad" : n.online ? (n.backlog ? "" : "ok") : "bad"; },
    conf(c) { return c == null ? "" : `confidence ${Number(c).toFixed(2)}`; },
    value(s) { return !s.last ? "—" : (s.binary ? (s.last.value >= 0.5 ? "active" : "idle") : `${s.last.value} ${s.unit}`); },
  },
  template: `
  <section class="main" data-test="nodes-view">
    <div class="topbar">
      <div><h2>Nodes</h2>
        <div class="meta" v-if="hub">hub {{ hub.enabled ? (hub.state || 'starting') : 'not enabled ([edge.hub] in shoal.toml)' }}
          <template v-if="hub.entries != null"> · {{ hub.entries.toLocaleString() }} entries received · {{ hub.duplicates }} duplicates ignored · {{ hub.pulls }} pulls</template></div></div>
      <span class="muted" v-if="updated">updated {{ updated.toLocaleTimeString() }}</span>
    </div>
    <div class="page">
      <div class="error-box" v-if="error">{{ error }}</div>
      <div class="error-box" v-if="hub && hub.last_error">{{ hub.last_error }}<small v-if="hub.hint">{{ hub.hint }}</small></div>
      <table class="grid" v-if="list && list.length">
        <tr><th>node</th><th>status</th><th>last sync</th><th>backlog</th><th>entries</th><th>clock offset</th></tr>
        <tr v-for="n in list" :key="n.name" :data-node="n.name" @click="select(n.name)" style="cursor:pointer" :class="{on: n.name === open}">
          <td><b>{{ n.name }}</b><div class="muted" v-if="n.location || n.site">{{ [n.location, n.site].filter(Boolean).join(' · ') }}</div></td>
          <td><span class="dot" :class="statusClass(n)"></span> {{ n.status }}<div class="muted" v-if="n.error" :title="n.error">{{ n.error.slice(0, 90) }}</div></td>
          <td>{{ ago(n.last_sync) }}<div class="muted">seen {{ ago(n.last_seen) }}</div></td>
          <td>{{ n.backlog.toLocaleString() }}</td>
          <td>{{ n.contig.toLocaleString() }}<div class="muted" v-if="n.duplicates">{{ n.duplicates }} duplicates ignored</div></td>
          <td>{{ offset(n.offset_ms) }}</td>
        </tr>
      </table>
      <div class="muted" v-else-if="list">No nodes you may see yet. A node appears once it syncs; an admin grants who sees it.</div>
      <div class="muted" v-else-if="!error">Loading…</div>

      <div v-if="detail" class="node-detail" data-test="node-detail" style="margin-top:22px">
        <div class="toolbar" style="display:flex;gap:10px;align-items:center;margin-bottom:12px">
          <h3 style="margin:0">{{ detail.name }}</h3>
          <span class="muted">journal {{ detail.contig.toLocaleString() }} / {{ detail.head.toLocaleString() }}<template v-if="detail.holes.length"> · waiting for {{ detail.holes.length }} range(s)</template></span>
          <span style="flex:1"></span>
          <label class="muted">plots over
            <select class="input" v-model.number="hours" style="width:auto;padding:4px 8px" @change="stamp = Date.now()">
              <option :value="1">1 hour</option><option :value="24">24 hours</option><option :value="168">7 days</option><option :value="2160">90 days</option>
            </select></label>
        </div>
        <div style="display:grid;grid-template-columns:minmax(0,1.3fr) minmax(0,1fr);gap:18px">
          <div>
            <div v-for="s in detail.sensors" :key="s.id" class="sensor-card" :data-sensor="s.name" style="margin-bottom:14px">
              <div style="display:flex;justify-content:space-between"><b>{{ s.label || s.name }}</b><span>{{ value(s) }} <span class="muted">· {{ s.kind }}</span></span></div>
              <img :src="plot(s)" :alt="'plot of ' + s.name" style="width:100%;border-radius:8px;margin-top:6px" loading="lazy">
            </div>
            <div class="muted" v-if="!detail.sensors.length">No sensors reported yet.</div>
          </div>
          <div>
            <h4 style="margin:0 0 8px">Observations</h4>
            <div v-for="o in notes" :key="o.seq" class="observation" data-test="observation" style="padding:8px 0;border-bottom:1px solid var(--line)">
              <span class="tag" v-if="o.kind !== 'observation'" style="margin-right:6px">{{ o.kind }}</span>{{ o.text }}
              <div class="muted" style="font-size:12px">{{ when(o.time) }} · {{ conf(o.confidence) }}<template v-if="o.method"> · {{ o.method }}</template> · #{{ o.seq }}
                <template v-if="o.cites && o.cites.length"> · cites {{ o.cites.map((c) => '#' + c[0] + '=' + c[1]).join(', ') }}</template></div>
            </div>
            <div class="muted" v-if="!notes.length">Nothing noted yet.</div>
            <h4 style="margin:18px 0 8px">Facts</h4>
            <div v-for="f in facts" :key="f.seq" data-test="fact" style="padding:6px 0;border-bottom:1px solid var(--line)">{{ f.text }}
              <div class="muted" style="font-size:12px" v-if="f.basis">from {{ f.basis.days }} days, {{ f.basis.minutes }} minutes of readings · {{ conf(f.confidence) }}</div></div>
            <div class="muted" v-if="!facts.length">No facts yet (a node learns its routine over a few days).</div>
            <template v-if="admin && grants">
              <h4 style="margin:18px 0 8px">Who may see it</h4>
              <div v-for="g in grants.api" :key="g.node + g.user" style="display:flex;justify-content:space-between;padding:4px 0">
                <span>{{ g.user }} <span class="muted" v-if="g.node !== detail.name">({{ g.node }})</span></span>
                <button class="btn small danger" @click="removeGrant(g.user)">Revoke</button></div>
              <div v-for="(who, key) in grants.config" :key="key" class="muted">shoal.toml: {{ key }} → {{ who.join(', ') }}</div>
              <form style="display:flex;gap:8px;margin-top:8px" @submit.prevent="addGrant">
                <input class="input" v-model="grantUser" placeholder="user name" style="max-width:180px"><button class="btn small">Grant</button></form>
            </template>
          </div>
        </div>
      </div>
    </div>
  </section>`,
};

window.NodesView = NodesView;
