/* shoal web UI — the Learning view (issue 14): which adapter each bot serves, and the training
   runs on your verdicts (GET /api/learn/bots, /api/learn/runs, /api/learn/runs/{id}; refreshed
   every 3 s). A plain Vue 3 component object, loaded before app.js; app.js mounts it as <LearnView/>. */
"use strict";
// requests go through app.js's api() (an ApiError carries message and hint)

const FINAL_RUN_STATES = ["finished", "failed", "interrupted", "skipped"];

const LearnView = {
  data: () => ({ bots: [], runs: [], open: null, detail: null, error: null, timer: null, loaded: false }),
  async mounted() {
    await this.load();
    if (this.runs.length) await this.show(this.runs[0], true);
    this.timer = setInterval(() => this.load(), 3000);
  },
  unmounted() { clearInterval(this.timer); },
  methods: {
    async load() {
      try {
        [this.bots, this.runs] = await Promise.all([api("GET", "/api/learn/bots"), api("GET", "/api/learn/runs")]);
        this.error = null;
        if (this.open && (!this.detail || !FINAL_RUN_STATES.includes(this.detail.state))) await this.fetchDetail(this.open);
      } catch (e) { this.error = e.message; } finally { this.loaded = true; }
    },
    async fetchDetail(id) {
      try { this.detail = await api("GET", "/api/learn/runs/" + id); } catch (e) { this.error = e.message; }
    },
    async show(run, keep) {
      if (this.open === run.id && !keep) { this.open = null; this.detail = null; return; }
      this.open = run.id; this.detail = null;
      await this.fetchDetail(run.id);
    },
    async train(b) {
      try {
        const r = await api("POST", "/api/learn/runs", { bot: b.bot });
        await this.load();
        await this.show(r, true);
      } catch (e) { this.error = e.message + (e.hint ? " — " + e.hint : ""); }
    },
    f(x) { return x == null ? "—" : Number(x).toFixed(3); },
    when(ts) { return ts ? new Date(ts * 1000).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }) : ""; },
    seconds(r) { return r.started_at && r.ended_at ? Math.round(r.ended_at - r.started_at) + " s" : ""; },
    stateClass(r) { return r.state === "finished" ? "role" : (r.state === "failed" ? "err" : ""); },
    // the per-step training loss as an SVG polyline, scaled to the box
    curve(losses) {
      const w = 360, h = 110, pad = 8;
      if (!losses || !losses.length) return { points: "", w, h, lo: null, hi: null };
      const lo = Math.min(...losses), hi = Math.max(...losses), span = hi - lo || 1;
      const x = (i) => pad + (losses.length === 1 ? (w - 2 * pad) / 2 : (i * (w - 2 * pad)) / (losses.length - 1));
      const y = (v) => pad + ((hi - v) * (h - 2 * pad)) / span;
      return { points: losses.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" "), w, h, lo, hi,
               dots: losses.map((v, i) => ({ cx: x(i), cy: y(v) })) };
    },
  },
  template: `
  <section class="main" data-test="learn-view">
    <div class="topbar"><div><h2>Learning</h2>
      <div class="meta">The adapter each bot serves, and the training runs on your ratings and corrections.</div></div></div>
    <div class="page page-narrow">
      <div class="error-box" v-if="error" role="alert">{{ error }}</div>
      <table class="grid" data-test="adapters">
        <tr><th>bot</th><th>adapter setting</th><th>serving</th><th>promoted</th><th>learns by itself</th><th></th></tr>
        <tr v-for="b in bots" :key="b.bot" :data-bot="b.bot">
          <td><b>{{ b.bot }}</b> <span class="pill role">{{ b.role }}</span></td>
          <td><code>{{ b.adapter ? 'adapter = "' + b.adapter + '"' : 'none' }}</code></td>
          <td data-test="serving">{{ b.serving || 'base model' }}<div class="muted" v-if="b.problem">{{ b.problem }}</div></td>
          <td>{{ b.promoted || '—' }}<div class="muted" v-if="b.promoted && b.adapter !== 'latest'">served only with adapter = "latest"</div></td>
          <td><template v-if="b.learning">yes<div class="muted" v-if="b.may_train">{{ b.new_verdicts }} / {{ b.after_verdicts }} new verdicts<template v-if="b.every_hours">, or every {{ b.every_hours }} h</template></div></template>
            <span class="muted" v-else>no</span></td>
          <td style="text-align:right"><span class="tag warn" v-if="b.running">training…</span>
            <button class="btn small" v-else-if="b.may_train" @click="train(b)" data-test="train-now">Train now</button></td>
        </tr>
      </table>
      <h3 style="margin:22px 0 10px">Runs</h3>
      <div class="muted" v-if="loaded && !runs.length" data-test="no-runs">No training runs on your verdicts yet. Rate or correct replies (✓ ✗ ✎ under each reply);
        with <code>[learn] enabled</code> and you in <code>learn.users</code>, a run starts by itself after enough new ones.</div>
      <div class="cards">
        <div class="card" v-for="r in runs" :key="r.id" data-test="run-card" :data-run="r.id">
          <div class="row" style="cursor:pointer" @click="show(r)">
            <div style="flex:1">
              <h4>{{ r.bot }} <span class="pill" :class="stateClass(r)" data-test="run-state">{{ r.state }}</span>
                <span class="pill role" v-if="r.promoted === true">promoted {{ r.version }}</span>
                <span class="pill" v-else-if="r.promoted === false">not promoted</span></h4>
              <div class="muted">{{ when(r.created_at) }} · {{ r.trigger }}<template v-if="r.owner_names && r.owner_names.length"> · on the verdicts of {{ r.owner_names.join(', ') }}</template><template v-if="seconds(r)"> · {{ seconds(r) }}</template></div>
              <div class="muted" v-if="r.dataset">{{ r.dataset.train }} training / {{ r.dataset.val }} validation examples ({{ r.dataset.good }} good, {{ r.dataset.corrected }} corrected, {{ r.dataset.bad_left_out }} bad left out)</div>
              <div class="muted" v-if="r.state === 'running' && r.progress && r.progress.total">step {{ r.progress.step }} / {{ r.progress.total }}<template v-if="r.progress.note"> · {{ r.progress.note }}</template></div>
            </div>
          </div>
          <div v-if="open === r.id && detail" style="margin-top:12px" data-test="run-detail">
            <div class="error-box" v-if="detail.error">{{ detail.error }}</div>
            <div style="display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start">
              <div v-if="detail.losses.length">
                <div class="muted">training loss per step</div>
                <svg :width="curve(detail.losses).w" :height="curve(detail.losses).h" data-test="loss-curve" style="background:var(--panel-2);border-radius:8px">
                  <polyline :points="curve(detail.losses).points" fill="none" stroke="var(--accent)" stroke-width="2"/>
                  <circle v-for="(d, i) in curve(detail.losses).dots" :key="i" :cx="d.cx" :cy="d.cy" r="3" fill="var(--accent)"/>
                </svg>
                <div class="muted">{{ f(detail.losses[0]) }} → {{ f(detail.losses[detail.losses.length - 1]) }} over {{ detail.losses.length }} step(s)</div>
              </div>
              <table class="grid" style="width:auto" data-test="eval-table">
                <tr><th>loss on</th><th>base (torch)</th><th>tuned (torch)</th><th>served (llama.cpp)</th><th>candidate (llama.cpp)</th></tr>
                <tr v-for="row in detail.evaluation" :key="row.set"><td>{{ row.set }}</td><td>{{ f(row.base) }}</td><td>{{ f(row.tuned) }}</td><td>{{ f(row.served) }}</td><td>{{ f(row.candidate) }}</td></tr>
              </table>
            </div>
            <div v-if="detail.decision" style="margin-top:10px" data-test="decision">
              <b>{{ detail.decision.promoted ? 'Promoted ' + detail.version : 'Not promoted' }}</b>: {{ detail.decision.reason }}
              <span class="muted">(now served: {{ detail.decision.served || 'the base model' }})</span>
            </div>
          </div>
        </div>
      </div>
    </div>
  </section>`,
};

window.LearnView = LearnView;
