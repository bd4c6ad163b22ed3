/* shoal web UI — the µLM view (issue 15): training runs with their loss curves (live: polled every 2 s
   while a run trains), and swarm searches shown as their candidates with the verifier's verdicts.
   REST: /api/ulm/runs, /api/ulm/runs/{name}, /api/ulm/searches. A plain Vue 3 component object,
   loaded before app.js; app.js mounts it as <UlmView/>. */
"use strict";
// requests go through app.js's api() (an ApiError carries message and hint)

const ULM_LIVE = ["running", "queued"];

const UlmView = {
  data: () => ({
    runs: [], open: null, detail: null, searches: [], error: null, timer: null, loaded: false, busy: false,
    form: { recipe: "harness", iters: null, name: "" },
    ask: { env: "lists", level: 3, index: 0, text: "", n: 8 }, result: null,
  }),
  async mounted() {
    await this.load();
    if (this.runs.length) await this.show(this.runs[0], true);
    this.timer = setInterval(() => this.tick(), 2000);
  },
  unmounted() { clearInterval(this.timer); },
  methods: {
    async load() {
      try { this.runs = await api("GET", "/api/ulm/runs"); this.error = null; }
      catch (e) { this.error = e.message; } finally { this.loaded = true; }
    },
    async tick() {
      // the runs table always; a run's curve while it trains (then it stops changing)
      await this.load();
      if (this.open && (!this.detail || ULM_LIVE.includes(this.detail.state) ||
          (this.runs.find((r) => r.name === this.open) || {}).state !== this.detail.state)) await this.fetchDetail(this.open);
    },
    async fetchDetail(name) {
      try { this.detail = await api("GET", "/api/ulm/runs/" + encodeURIComponent(name)); }
      catch (e) { this.error = e.message; }
    },
    async show(run, keep) {
      if (this.open === run.name && !keep) { this.open = null; this.detail = null; return; }
      this.open = run.name; this.detail = null; this.result = null;
      await this.fetchDetail(run.name);
      try { this.searches = await api("GET", "/api/ulm/searches?run=" + encodeURIComponent(run.name)); } catch (e) { this.searches = []; }
      if (this.searches.length) this.result = this.searches[0];
    },
    async train() {
      try {
        const body = { recipe: this.form.recipe };
        if (this.form.iters) body.iters = Number(this.form.iters);
        if (this.form.name) body.name = this.form.name;
        const r = await api("POST", "/api/ulm/runs", body);
        await this.load();
        await this.show(r, true);
      } catch (e) { this.error = e.message + (e.hint ? " — " + e.hint : ""); }
    },
    async stop() {
      try { await api("POST", `/api/ulm/runs/${encodeURIComponent(this.open)}/stop`); await this.tick(); }
      catch (e) { this.error = e.message; }
    },
    async search() {
      this.busy = true;
      try {
        const body = { run: this.open, n: Number(this.ask.n) };
        if (this.ask.text.trim()) body.text = this.ask.text.trim();
        else Object.assign(body, { env: this.ask.env, level: Number(this.ask.level), index: Number(this.ask.index) });
        this.result = await api("POST", "/api/ulm/searches", body);
        this.searches = [this.result, ...this.searches];
        this.error = null;
      } catch (e) { this.error = e.message + (e.hint ? " — " + e.hint : ""); } finally { this.busy = false; }
    },
    f(x, d) { return x == null ? "—" : Number(x).toFixed(d == null ? 3 : d); },
    eta(s) { if (s == null) return ""; s = Math.round(s); return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`; },
    stateClass(r) { return r.state === "finished" ? "role" : (r.state === "failed" ? "err" : ""); },
    // training loss per step (thinned by the trainer) and train/val loss at each evaluation, as SVG
    curve(d) {
      const w = 560, h = 200, pad = 30;
      const steps = (d && d.steps) || [], evals = (d && d.evals) || [];
      const ys = steps.map((s) => s[1]).concat(evals.map((e) => e.val), evals.map((e) => e.train)).filter((v) => v != null);
      if (!ys.length) return null;
      const iters = d.iters || Math.max(...steps.map((s) => s[0]), ...evals.map((e) => e.iter), 1);
      const lo = Math.min(...ys), hi = Math.max(...ys), span = hi - lo || 1;
      const x = (it) => pad + (it / iters) * (w - 2 * pad);
      const y = (v) => 8 + ((hi - v) * (h - pad - 8)) / span;
      const line = (pts) => pts.map(([a, b]) => `${x(a).toFixed(1)},${y(b).toFixed(1)}`).join(" ");
      return {
        w, h, lo, hi, iters,
        steps: line(steps),
        val: evals.map((e) => ({ cx: x(e.iter), cy: y(e.val) })),
        train: evals.map((e) => ({ cx: x(e.iter), cy: y(e.train) })),
        ticks: [0, 0.5, 1].map((t) => ({ x: x(t * iters), label: Math.round(t * iters) })),
        ylab: [hi, (hi + lo) / 2, lo].map((v) => ({ y: y(v), label: v.toFixed(2) })),
      };
    },
  },
  template: `
  <section class="main" data-test="ulm-view">
    <div class="topbar"><div><h2>µLMs</h2>
      <div class="meta">Tiny models trained here: their loss curves (live while they train), and searches — N samples of one task, each checked by the world's verifier.</div></div></div>
    <div class="page page-narrow">
      <div class="error-box" v-if="error" role="alert">{{ error }}</div>
      <div class="card" style="margin-bottom:14px" data-test="train-form">
        <div class="row" style="align-items:flex-end;gap:10px;flex-wrap:wrap">
          <label class="field" style="margin:0"><span>recipe</span>
            <select class="input" v-model="form.recipe" data-test="recipe"><option>harness</option><option>smoke</option><option>char</option></select></label>
          <label class="field" style="margin:0;width:120px"><span>iterations</span><input class="input" type="number" min="1" v-model="form.iters" placeholder="recipe's"></label>
          <label class="field" style="margin:0;flex:1"><span>run name</span><input class="input" v-model="form.name" placeholder="recipe-date-time" data-test="run-name"></label>
          <button class="btn primary" @click="train" data-test="train">Train</button>
        </div>
        <div class="muted" style="margin-top:6px">Admins and the people in <code>[ulm] users</code> may train; one run trains at a time, at nice 19.</div>
      </div>
      <div class="muted" v-if="loaded && !runs.length" data-test="no-runs">No µLM runs you may see yet.</div>
      <table class="grid" v-if="runs.length" data-test="runs">
        <tr><th>run</th><th>state</th><th>iteration</th><th>loss</th><th>val loss</th><th>params</th><th>by</th></tr>
        <tr v-for="r in runs" :key="r.name" :data-run="r.name" @click="show(r)" style="cursor:pointer" :style="open === r.name ? 'background:var(--panel-2)' : ''">
          <td><b>{{ r.name }}</b> <span class="muted">{{ r.recipe }}</span></td>
          <td><span class="pill" :class="stateClass(r)" data-test="run-state">{{ r.state }}</span></td>
          <td>{{ r.iter }} / {{ r.iters || '?' }}<div class="muted" v-if="r.state === 'running' && r.eta_s != null">ETA {{ eta(r.eta_s) }} · {{ f(r.tok_s, 0) }} tok/s</div></td>
          <td>{{ f(r.loss) }}</td><td>{{ f(r.val) }}</td>
          <td>{{ r.n_params ? (r.n_params / 1e6).toFixed(2) + 'M' : '—' }}</td>
          <td class="muted">{{ r.owner_name || 'CLI' }}</td>
        </tr>
      </table>

      <div v-if="detail" class="card" style="margin-top:14px" data-test="run-detail" :data-run="detail.name">
        <div class="row"><h4>{{ detail.name }} <span class="pill" :class="stateClass(detail)">{{ detail.state }}</span></h4>
          <button class="btn small danger" v-if="detail.may_stop" @click="stop" data-test="stop-run">Stop</button></div>
        <div class="error-box" v-if="detail.error">{{ detail.error }}</div>
        <div class="muted" v-if="detail.model">{{ detail.model.n_layer }} layers × {{ detail.model.n_embd }} wide, {{ detail.model.n_head }} heads, block {{ detail.model.block_size }}, vocabulary {{ detail.model.vocab_size }}</div>
        <template v-if="curve(detail)">
          <svg :width="curve(detail).w" :height="curve(detail).h" data-test="loss-curve" style="background:var(--panel-2);border-radius:8px;margin-top:10px">
            <text v-for="t in curve(detail).ticks" :key="'x' + t.x" :x="t.x" :y="curve(detail).h - 8" fill="var(--faint)" font-size="10" text-anchor="middle">{{ t.label }}</text>
            <text v-for="t in curve(detail).ylab" :key="'y' + t.y" x="2" :y="t.y + 3" fill="var(--faint)" font-size="10">{{ t.label }}</text>
            <polyline :points="curve(detail).steps" fill="none" stroke="var(--accent)" stroke-width="1.5" data-test="step-line"/>
            <circle v-for="(d, i) in curve(detail).train" :key="'t' + i" :cx="d.cx" :cy="d.cy" r="3.5" fill="var(--think)"/>
            <circle v-for="(d, i) in curve(detail).val" :key="'v' + i" :cx="d.cx" :cy="d.cy" r="3.5" fill="var(--memory)" data-test="val-point"/>
          </svg>
          <div class="muted"><span style="color:var(--accent)">━</span> loss per step ({{ detail.steps.length }} points)
            · <span style="color:var(--think)">●</span> train · <span style="color:var(--memory)">●</span> validation (nats/token)</div>
        </template>
        <div class="muted" v-else>No steps yet.</div>
        <table class="grid" v-if="detail.improve" style="margin-top:10px;width:auto" data-test="improve-table">
          <tr><th>round</th><th>held-out pass@1</th><th>best-of-N</th><th>verified kept</th></tr>
          <tr v-for="r in detail.improve" :key="r.round"><td>{{ r.round }}</td><td>{{ f(r.heldout_pass_at_1, 2) }}</td><td>{{ f(r.heldout_best_of_n, 2) }}</td><td>{{ r.kept }} / {{ r.tried }}</td></tr>
        </table>

        <h3 style="margin:20px 0 8px">Swarm search</h3>
        <div class="row" style="align-items:flex-end;gap:10px;flex-wrap:wrap" data-test="search-form">
          <label class="field" style="margin:0"><span>world</span>
            <select class="input" v-model="ask.env" data-test="search-env"><option>arith</option><option>lists</option><option>chain</option></select></label>
          <label class="field" style="margin:0;width:80px"><span>level</span><input class="input" type="number" min="1" v-model="ask.level" data-test="search-level"></label>
          <label class="field" style="margin:0;width:90px"><span>held-out #</span><input class="input" type="number" min="0" v-model="ask.index" data-test="search-index"></label>
          <label class="field" style="margin:0;flex:1"><span>or a task in words</span><input class="input" v-model="ask.text" placeholder="sort 3 1 2 · 12*34" data-test="search-text"></label>
          <label class="field" style="margin:0;width:70px"><span>N</span><input class="input" type="number" min="1" max="32" v-model="ask.n" data-test="search-n"></label>
          <button class="btn primary" @click="search" :disabled="busy || !detail.n_params" data-test="search">Search</button>
        </div>
        <div v-if="result" style="margin-top:12px" data-test="search-result" :data-search="result.id">
          <div><b><code>{{ result.prompt }}</code></b> <span class="muted">— expected {{ result.answer }} · {{ result.env }} level {{ result.level }} · iteration {{ result.iter }}</span></div>
          <div style="margin:6px 0">
            <span class="pill" :class="result.greedy.ok ? 'role' : 'err'" data-test="greedy-verdict">greedy: {{ result.greedy.ok ? 'correct' : result.greedy.feedback }}</span>
            <span class="pill" :class="result.best_of_n ? 'role' : 'err'" data-test="best-of-n">best-of-{{ result.n }}: {{ result.solved }} of {{ result.n }} passed the verifier</span>
          </div>
          <table class="grid" data-test="candidates">
            <tr><th>#</th><th>candidate trace</th><th>tokens</th><th>verifier</th></tr>
            <tr v-for="(c, i) in result.candidates" :key="i" data-test="candidate" :data-ok="c.ok ? 'yes' : 'no'">
              <td>{{ i + 1 }}</td><td><pre style="margin:0;white-space:pre-wrap;font-size:12px">{{ c.text.trim() || '(nothing)' }}</pre></td>
              <td>{{ c.tokens }}</td>
              <td><span class="pill" :class="c.ok ? 'role' : 'err'">{{ c.ok ? '✓ correct' : '✗ ' + c.feedback }}</span></td>
            </tr>
          </table>
          <div class="muted" v-if="searches.length > 1" style="margin-top:8px">Earlier searches on this run:
            <a v-for="s in searches.slice(0, 8)" :key="s.id" href="#/ulm" @click.prevent="result = s" style="margin-right:8px">{{ s.prompt }} ({{ s.solved }}/{{ s.n }})</a></div>
        </div>
      </div>
    </div>
  </section>`,
};

window.UlmView = UlmView;
