// chancy dashboard: plain JavaScript written for this project (no framework, no build step).
// Safety rule: data from the API is only ever put in the page as text (text nodes,
// textContent, setAttribute), never parsed as HTML.
"use strict";

(function () {
  const TOKEN_KEY = "chancy-token";
  const STATES = ["pending", "running", "retrying", "succeeded", "failed"];
  const COLORS = {
    succeeded: "#2e8540", failed: "#c0392b", retried: "#9f7aea", snoozed: "#b7791f",
    pending: "#718096", running: "#2b6cb0", retrying: "#9f7aea", waiting: "#a0aec0",
  };
  const SVG = "http://www.w3.org/2000/svg";
  let timer = null;
  let me = null;
  let config = null;

  // -- DOM helpers (text only) -----------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else if (key === "class") el.setAttribute("class", value);
      // Through the CSSOM: the page's Content-Security-Policy forbids style attributes.
      else if (key === "style") el.style.cssText = value;
      else if (key === "value") el.value = value;
      else if (key === "checked") el.checked = !!value;
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function flash(message, kind) {
    const box = document.getElementById("flash");
    const item = h("div", { class: kind || "" }, message);
    box.appendChild(item);
    setTimeout(() => item.remove(), 5000);
  }

  const fmt = {
    time(value) {
      if (!value) return "—";
      const d = new Date(value);
      return isNaN(d) ? String(value) : d.toLocaleString();
    },
    ago(value) {
      if (!value) return "—";
      const secs = (Date.now() - new Date(value).getTime()) / 1000;
      if (secs < 0) return "in " + fmt.dur(-secs);
      return fmt.dur(secs) + " ago";
    },
    dur(secs) {
      if (secs < 0.01) return +(secs * 1000).toPrecision(2) + " ms";
      if (secs < 1) return Math.round(secs * 1000) + " ms";
      if (secs < 90) return secs.toFixed(secs < 10 ? 1 : 0) + " s";
      if (secs < 5400) return Math.round(secs / 60) + " min";
      if (secs < 172800) return (secs / 3600).toFixed(1) + " h";
      return (secs / 86400).toFixed(1) + " d";
    },
    num(n, estimated) {
      if (n === null || n === undefined) return "—";
      const text = Number(n).toLocaleString();
      return estimated ? "≈" + text : text;
    },
    json(value) {
      return JSON.stringify(value, null, 2);
    },
  };

  function badge(text, kind) {
    return h("span", { class: "badge " + (kind || text) }, text);
  }

  function stateBadge(q) {
    const known = q.state === "active" || q.state === "paused";
    return badge(String(q.state), known ? q.state : "failed");
  }

  // A queue whose stored settings fail validation: shown as stored, with the reason.
  function invalidBadge(q) {
    return h("span", { class: "badge failed", title: q.invalid }, "invalid");
  }

  function link(href, text) {
    return h("a", { href }, text);
  }

  function jobLink(id) {
    return link("#/jobs/" + encodeURIComponent(id), String(id));
  }

  function table(headers, rows, empty) {
    const thead = h("thead", {}, h("tr", {}, headers.map((x) =>
      typeof x === "string" ? h("th", {}, x) : h("th", { class: x.cls }, x.label))));
    const body = h("tbody", {}, rows);
    if (!rows.length) {
      body.appendChild(h("tr", {}, h("td", { colspan: headers.length, class: "muted" },
        empty || "Nothing here.")));
    }
    return h("table", {}, thead, body);
  }

  // -- the API ------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(path, options) {
    const opts = options || {};
    const headers = { "Accept": "application/json" };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers["Authorization"] = "Bearer " + token;
    let body;
    if (opts.body !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(opts.body);
    }
    const response = await fetch("api/v1/" + path, {
      method: opts.method || (body !== undefined ? "POST" : "GET"),
      headers, body, cache: "no-store", credentials: "omit",
    });
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (response.status === 401 && !path.startsWith("login")) {
      sessionStorage.removeItem(TOKEN_KEY);
      me = null;
      location.hash = "#/login";
      throw new ApiError(401, "Please log in again.");
    }
    if (!response.ok) {
      throw new ApiError(response.status, (data && data.error) || response.statusText);
    }
    return data;
  }

  function post(path, body) {
    return api(path, { method: "POST", body: body || {} });
  }

  async function act(label, fn) {
    try {
      const result = await fn();
      flash(label);
      return result;
    } catch (e) {
      flash(e.message, "error");
      return null;
    }
  }

  function canAct() {
    return me && me.can_act;
  }

  // -- charts (SVG drawn here) ----------------------------------------------------------

  // series: [{name, color, points: [[Date, number], ...]}]; kind: "bar" or "line".
  function chart(series, opts) {
    const o = Object.assign({ width: 800, height: 220, kind: "bar", unit: "" }, opts || {});
    const pad = { l: 58, r: 34, t: 10, b: 26 };
    const svg = s("svg", { class: "chart", viewBox: `0 0 ${o.width} ${o.height}`,
      preserveAspectRatio: "none", role: "img" });
    const times = [];
    for (const serie of series) for (const p of serie.points) times.push(p[0].getTime());
    if (!times.length) {
      svg.appendChild(s("text", { x: o.width / 2, y: o.height / 2, "text-anchor": "middle" },
        "No data in this range yet."));
      return svg;
    }
    const t0 = o.since ? o.since.getTime() : Math.min(...times);
    const t1 = o.until ? o.until.getTime() : Math.max(...times);
    const span = Math.max(t1 - t0, o.step || 60000);
    let max = 0;
    const stacks = new Map();
    for (const serie of series) {
      for (const [t, v] of serie.points) {
        if (o.kind === "bar") {
          const key = t.getTime();
          stacks.set(key, (stacks.get(key) || 0) + v);
          max = Math.max(max, stacks.get(key));
        } else {
          max = Math.max(max, v);
        }
      }
    }
    max = max || 1;
    const W = o.width - pad.l - pad.r;
    const H = o.height - pad.t - pad.b;
    const x = (t) => pad.l + ((t - t0) / span) * W;
    const y = (v) => pad.t + H - (v / max) * H;
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      svg.appendChild(s("line", { class: "grid", x1: pad.l, x2: o.width - pad.r, y1: y(v), y2: y(v) }));
      svg.appendChild(s("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end" },
        o.unit === "s" ? (v === 0 ? "0" : fmt.dur(v)) : axisLabel(v) + o.unit));
    }
    for (let i = 0; i <= 4; i++) {
      const t = t0 + (span * i) / 4;
      const label = new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      svg.appendChild(s("text", { x: x(t), y: o.height - 8, "text-anchor": "middle" }, label));
    }
    if (o.kind === "bar") {
      const step = o.step || 60000;
      const bw = Math.max(1, (step / span) * W * 0.8);
      const base = new Map();
      for (const serie of series) {
        for (const [t, v] of serie.points) {
          const key = t.getTime();
          const below = base.get(key) || 0;
          base.set(key, below + v);
          const rect = s("rect", { x: x(key) - bw / 2, y: y(below + v), width: bw,
            height: Math.max(0, y(below) - y(below + v)), fill: serie.color });
          rect.appendChild(s("title", {}, `${serie.name}: ${v} at ${t.toLocaleString()}`));
          svg.appendChild(rect);
        }
      }
    } else {
      for (const serie of series) {
        const pts = serie.points.slice().sort((a, b) => a[0] - b[0]);
        if (!pts.length) continue;
        const d = pts.map((p, i) => (i ? "L" : "M") + x(p[0].getTime()).toFixed(1) + " " +
          y(p[1]).toFixed(1)).join(" ");
        svg.appendChild(s("path", { d, fill: "none", stroke: serie.color, "stroke-width": 2 }));
        for (const p of pts) {
          const c = s("circle", { cx: x(p[0].getTime()), cy: y(p[1]), r: 2.5, fill: serie.color });
          c.appendChild(s("title", {}, `${serie.name}: ${+p[1].toFixed(4)} at ${p[0].toLocaleString()}`));
          svg.appendChild(c);
        }
      }
    }
    return svg;
  }

  function axisLabel(v) {
    if (v === 0) return "0";
    if (v >= 100) return Math.round(v).toLocaleString();
    if (v >= 1) return String(+v.toFixed(1));
    return String(+v.toPrecision(2));
  }

  function legend(series) {
    return h("div", { class: "legend" }, series.map((x) =>
      h("span", { style: "--c: " + x.color }, x.name)));
  }

  // -- workflow DAG (layered layout drawn as SVG) ----------------------------------------

  function dag(steps) {
    const byId = new Map(steps.map((st) => [st.step_id, st]));
    const depth = new Map();
    function level(id, seen) {
      if (depth.has(id)) return depth.get(id);
      if (seen.has(id)) return 0;
      seen.add(id);
      const deps = (byId.get(id) || { dependencies: [] }).dependencies.filter((d) => byId.has(d));
      const value = deps.length ? 1 + Math.max(...deps.map((d) => level(d, seen))) : 0;
      depth.set(id, value);
      return value;
    }
    steps.forEach((st) => level(st.step_id, new Set()));
    const columns = [];
    for (const st of steps) {
      const d = depth.get(st.step_id);
      (columns[d] = columns[d] || []).push(st);
    }
    const NW = 160, NH = 44, GX = 70, GY = 18;
    const pos = new Map();
    columns.forEach((col, ci) => col.forEach((st, ri) =>
      pos.set(st.step_id, { x: 20 + ci * (NW + GX), y: 20 + ri * (NH + GY) })));
    const rows = Math.max(...columns.map((c) => c.length));
    const width = 40 + columns.length * (NW + GX) - GX;
    const height = 40 + rows * (NH + GY) - GY;
    const svg = s("svg", { class: "dag", viewBox: `0 0 ${width} ${height}`, role: "img",
      style: `max-width: ${width}px; height: ${height}px` });
    const defs = s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#9aa5b5" })));
    svg.appendChild(defs);
    for (const st of steps) {
      const to = pos.get(st.step_id);
      for (const dep of st.dependencies) {
        const from = pos.get(dep);
        if (!from) continue;
        const x1 = from.x + NW, y1 = from.y + NH / 2, x2 = to.x, y2 = to.y + NH / 2;
        const mx = (x1 + x2) / 2;
        svg.appendChild(s("path", { class: "edge", d: `M${x1} ${y1} C${mx} ${y1} ${mx} ${y2} ${x2} ${y2}`,
          "marker-end": "url(#arrow)" }));
      }
    }
    for (const st of steps) {
      const p = pos.get(st.step_id);
      const color = COLORS[st.state] || COLORS.waiting;
      const g = s("g", { class: "node", "data-step": st.step_id, "data-state": st.state });
      g.appendChild(s("rect", { x: p.x, y: p.y, width: NW, height: NH, rx: 6, fill: color }));
      const label = st.step_id.length > 20 ? st.step_id.slice(0, 19) + "…" : st.step_id;
      g.appendChild(s("text", { x: p.x + 10, y: p.y + 18, "font-weight": 600 }, label));
      g.appendChild(s("text", { x: p.x + 10, y: p.y + 34 }, st.state));
      g.appendChild(s("title", {}, `${st.step_id} (${st.func}): ${st.state}`));
      if (st.job_id) {
        const a = s("a", { href: "#/jobs/" + encodeURIComponent(st.job_id) });
        a.appendChild(g);
        svg.appendChild(a);
      } else {
        svg.appendChild(g);
      }
    }
    return svg;
  }

  // -- pages ------------------------------------------------------------------------

  function poll(fn, seconds) {
    stopPolling();
    const run = async () => {
      if (document.hidden) return;
      // 429: this user has too many requests in flight; the next poll tries again.
      try { await fn(); } catch (e) { if (e.status !== 401 && e.status !== 429) flash(e.message, "error"); }
    };
    timer = setInterval(run, (seconds || 5) * 1000);
    return run();
  }

  function stopPolling() {
    if (timer) clearInterval(timer);
    timer = null;
  }

  function loginPage(main) {
    document.getElementById("top").hidden = true;
    const error = h("p", { class: "error-text", id: "login-error" });
    const user = h("input", { name: "username", autocomplete: "username", required: true });
    const pass = h("input", { name: "password", type: "password", autocomplete: "current-password",
      required: true });
    const form = h("form", { id: "login-form", onsubmit: async (ev) => {
      ev.preventDefault();
      error.textContent = "";
      try {
        const data = await api("login", { method: "POST",
          body: { username: user.value, password: pass.value } });
        sessionStorage.setItem(TOKEN_KEY, data.token);
        location.hash = "#/overview";
      } catch (e) {
        error.textContent = e.message;
      }
    } },
    h("label", {}, "Username", user), h("label", {}, "Password", pass),
    h("button", { class: "primary", type: "submit" }, "Log in"), error);
    append(main, [h("div", { class: "login panel" }, h("h1", {}, "chancy dashboard"), form)]);
    user.focus();
  }

  async function overviewPage(main) {
    const cards = h("div", { class: "cards" });
    const alerts = h("ul", { class: "alerts", id: "alerts" });
    const chartBox = h("div", { class: "panel" });
    const queuesBox = h("div", {});
    append(main, [h("h1", {}, "Overview"), alerts, cards,
      h("h2", {}, "Throughput, last hour (jobs per minute)"), chartBox,
      h("h2", {}, "Queues"), queuesBox]);
    await poll(async () => {
      const data = await api("overview");
      clear(alerts);
      if (!data.alerts.length) alerts.appendChild(h("li", { class: "ok" }, "All clear."));
      for (const a of data.alerts) {
        const li = h("li", { class: a.level, "data-kind": a.kind }, a.message);
        if (a.jobs && a.jobs.length) {
          li.appendChild(document.createTextNode(" — "));
          a.jobs.slice(0, 5).forEach((id, i) => { if (i) li.append(", "); li.appendChild(jobLink(id)); });
        }
        if (a.queue) li.append(" ", link("#/queues/" + encodeURIComponent(a.queue), "open queue"));
        alerts.appendChild(li);
      }
      const waiting = data.queues.reduce((n, q) => n + q.waiting, 0);
      const running = data.queues.reduce((n, q) => n + q.running, 0);
      const est = data.queues.some((q) => q.estimated);
      const lastHour = data.throughput.reduce((n, b) => n + b.succeeded + b.failed, 0);
      const failed = data.throughput.reduce((n, b) => n + b.failed, 0);
      clear(cards);
      const card = (label, value) => h("div", { class: "card" }, h("div", { class: "value" }, value),
        h("div", { class: "label" }, label));
      append(cards, [card("Waiting", fmt.num(waiting, est)), card("Running", fmt.num(running)),
        card("Done, last hour", fmt.num(lastHour)), card("Failed, last hour", fmt.num(failed)),
        card("Live workers", `${data.workers.live} / ${data.workers.total}`),
        card("Leader", data.workers.leader ? String(data.workers.leader).slice(0, 18) : "none")]);
      const series = ["succeeded", "failed", "retried"].map((k) => ({ name: k, color: COLORS[k],
        points: data.throughput.map((b) => [new Date(b.bucket), b[k]]).filter((p) => p[1]) }));
      const now = new Date();
      clear(chartBox);
      append(chartBox, [legend(series), chart(series, { kind: "bar", step: 60000,
        since: new Date(now - 3600000), until: now })]);
      clear(queuesBox).appendChild(queueTable(data.queues));
    }, 5);
  }

  function queueTable(queues) {
    return table(["Queue", "State", { label: "Waiting", cls: "num" }, { label: "Running", cls: "num" },
      "Executor", "Concurrency", ""], queues.map((q) => h("tr", { "data-queue": q.name },
      h("td", {}, link("#/queues/" + encodeURIComponent(q.name), q.name)),
      h("td", {}, stateBadge(q), q.invalid ? [" ", invalidBadge(q)] : null),
      h("td", { class: "num" }, fmt.num(q.waiting, q.estimated)),
      h("td", { class: "num" }, fmt.num(q.running)),
      h("td", { class: "mono" }, String(q.executor).split(".").pop()),
      h("td", {}, q.concurrency === null ? "default" : String(q.concurrency)),
      h("td", {}, canAct() ? pauseButton(q) : null,
        " ", link("#/jobs?queue=" + encodeURIComponent(q.name), "jobs")))), "No queues declared.");
  }

  function pauseButton(q, after) {
    const paused = q.state === "paused";
    return h("button", { type: "button", class: "pause-toggle", "data-queue": q.name,
      onclick: async () => {
        const path = "queues/" + encodeURIComponent(q.name) + (paused ? "/resume" : "/pause");
        if (await act(paused ? `Resumed ${q.name}` : `Paused ${q.name}`, () => post(path))) {
          (after || route)();
        }
      } }, paused ? "Resume" : "Pause");
  }

  async function queuesPage(main) {
    const box = h("div", {});
    const createForm = canAct() ? queueCreateForm() : null;
    append(main, [h("h1", {}, "Queues"), box, createForm]);
    await poll(async () => {
      const data = await api("queues");
      clear(box).appendChild(queueTable(data.queues));
    }, 5);
  }

  function queueCreateForm() {
    const name = h("input", { name: "name", placeholder: "name", required: true });
    const executor = h("select", { name: "executor" },
      Object.keys((config && config.executors) || {}).map((k) => h("option", { value: k }, k)));
    const concurrency = h("input", { name: "concurrency", type: "number", min: 1, placeholder: "default" });
    return h("div", { class: "panel" }, h("h2", {}, "Declare a queue"),
      h("form", { class: "row", onsubmit: async (ev) => {
        ev.preventDefault();
        const body = { name: name.value, executor: executor.value };
        if (concurrency.value) body.concurrency = Number(concurrency.value);
        if (await act(`Declared ${name.value}`, () => post("queues", body))) route();
      } }, h("label", {}, "Name", name), h("label", {}, "Executor", executor),
      h("label", {}, "Concurrency", concurrency), h("button", { class: "primary" }, "Declare")));
  }

  async function queuePage(main, name) {
    const head = h("div", {});
    const chartBox = h("div", { class: "panel" });
    append(main, [head, h("h2", {}, "Last hour"), chartBox]);
    const render = async () => {
      const q = await api("queues/" + encodeURIComponent(name));
      clear(head);
      append(head, [h("h1", {}, "Queue ", q.name, " ", stateBadge(q),
        q.invalid ? [" ", invalidBadge(q)] : null),
        q.invalid ? h("p", { class: "error-text" }, "Invalid stored settings: ", q.invalid) : null,
        h("div", { class: "row" }, canAct() ? pauseButton(q, render) : null,
          link("#/jobs?queue=" + encodeURIComponent(q.name), "Browse its jobs")),
        h("div", { class: "cards" },
          h("div", { class: "card" }, h("div", { class: "value" }, fmt.num(q.waiting, q.estimated)),
            h("div", { class: "label" }, "waiting")),
          h("div", { class: "card" }, h("div", { class: "value" }, fmt.num(q.running)),
            h("div", { class: "label" }, "running")),
          h("div", { class: "card" }, h("div", { class: "value" }, String(q.workers.length)),
            h("div", { class: "label" }, "workers serving"))),
        q.limits ? limitsPanel(q) : null,
        queueSettings(q, render)]);
      if (config && config.features.metrics) {
        const since = new Date(Date.now() - 3600000);
        const series = [];
        for (const metric of ["succeeded", "failed"]) {
          const data = await api(`metrics/jobs.${metric}?resolution=1min&queue=${encodeURIComponent(name)}` +
            `&since=${encodeURIComponent(since.toISOString())}`);
          series.push({ name: metric, color: COLORS[metric], points: data.points.map((p) =>
            [new Date(p.bucket), p.count]) });
        }
        clear(chartBox);
        append(chartBox, [legend(series), chart(series, { since, until: new Date(), step: 60000 })]);
      } else {
        clear(chartBox).appendChild(h("p", { class: "muted" }, "The Metrics plugin is not installed."));
      }
    };
    await render();
  }

  function limitsPanel(q) {
    // What the queue's flow-control limits use now, for the queue and its busiest keys.
    const u = q.limits;
    const of = (used, limit) => (limit === null || limit === undefined ? String(used) : `${used} / ${limit}`);
    const keys = Object.entries(u.partitions || {});
    return h("div", { class: "panel", id: "queue-limits" }, h("h2", {}, "Limits in use"),
      h("p", {}, "Running: ", of(u.running, q.global_concurrency),
        u.started_in_window === null ? "" : ` · started in the last ${q.rate_limit_window}s: ` +
          of(u.started_in_window, q.rate_limit)),
      keys.length ? table(["Partition key", "Running", "Started in window"], keys.map(([key, k]) =>
        h("tr", { "data-key": key }, h("td", { class: "mono" }, key),
          h("td", { class: "num" }, of(k.running, q.partition_concurrency)),
          h("td", { class: "num" }, k.started_in_window === null ? "—" :
            of(k.started_in_window, q.partition_rate_limit)))), "") : null,
      u.partitions_truncated ? h("p", { class: "muted" }, "Only the busiest keys are shown.") : null);
  }

  function queueSettings(q, after) {
    const fields = {
      concurrency: h("input", { type: "number", min: 1, value: q.concurrency === null ? "" : q.concurrency,
        placeholder: "default", disabled: !canAct() }),
      polling_interval: h("input", { type: "number", min: 0.01, step: "any", value: q.polling_interval,
        disabled: !canAct() }),
      tags: h("input", { value: (q.tags || []).join(", "), disabled: !canAct() }),
      rate_limit: h("input", { type: "number", min: 1, value: q.rate_limit === null ? "" : q.rate_limit,
        disabled: !canAct() }),
      rate_limit_window: h("input", { type: "number", min: 1,
        value: q.rate_limit_window === null ? "" : q.rate_limit_window, disabled: !canAct() }),
    };
    for (const name of ["global_concurrency", "partition_concurrency", "partition_rate_limit",
      "partition_rate_limit_window"]) {
      fields[name] = h("input", { type: "number", min: 1, name,
        value: q[name] === null || q[name] === undefined ? "" : q[name], disabled: !canAct() });
    }
    const eager = h("input", { type: "checkbox", checked: q.eager_polling, disabled: !canAct() });
    const numOrNull = (el) => (el.value === "" ? null : Number(el.value));
    const form = h("form", { class: "panel", id: "queue-settings", onsubmit: async (ev) => {
      ev.preventDefault();
      const body = {
        concurrency: numOrNull(fields.concurrency),
        polling_interval: Number(fields.polling_interval.value),
        tags: fields.tags.value.split(",").map((t) => t.trim()).filter(Boolean),
        rate_limit: numOrNull(fields.rate_limit),
        rate_limit_window: numOrNull(fields.rate_limit_window),
        global_concurrency: numOrNull(fields.global_concurrency),
        partition_concurrency: numOrNull(fields.partition_concurrency),
        partition_rate_limit: numOrNull(fields.partition_rate_limit),
        partition_rate_limit_window: numOrNull(fields.partition_rate_limit_window),
        eager_polling: eager.checked,
      };
      if (await act("Saved", () => post("queues/" + encodeURIComponent(q.name), body))) after();
    } }, h("h2", {}, "Settings"),
    h("div", { class: "row" },
      h("label", {}, "Concurrency", fields.concurrency),
      h("label", {}, "Polling interval (s)", fields.polling_interval),
      h("label", {}, "Worker tags (regexes)", fields.tags),
      h("label", {}, "Rate limit", fields.rate_limit),
      h("label", {}, "Rate window (s)", fields.rate_limit_window),
      h("label", {}, "Eager polling", eager)),
    h("div", { class: "row" },
      h("label", {}, "Running at once, all workers", fields.global_concurrency),
      h("label", {}, "Running at once, per key", fields.partition_concurrency),
      h("label", {}, "Rate limit per key", fields.partition_rate_limit),
      h("label", {}, "Per-key window (s)", fields.partition_rate_limit_window)),
    h("p", { class: "muted" }, "Executor: ", h("code", {}, q.executor)),
    canAct() ? h("div", { class: "row" }, h("button", { class: "primary", type: "submit" }, "Save"),
      h("button", { class: "danger", type: "button", onclick: async () => {
        if (!confirm(`Delete queue ${q.name} and its jobs?`)) return;
        if (await act("Deleted", () => post("queues/" + encodeURIComponent(q.name) + "/delete",
          { purge_jobs: true }))) location.hash = "#/queues";
      } }, "Delete queue")) : null);
    return form;
  }

  function params() {
    const hash = location.hash || "";
    const i = hash.indexOf("?");
    return new URLSearchParams(i >= 0 ? hash.slice(i + 1) : "");
  }

  async function jobsPage(main) {
    const p = params();
    const state = p.get("state") || "";
    const tabs = h("div", { class: "tabs", id: "state-tabs" });
    const inputs = {
      queue: h("input", { name: "queue", value: p.get("queue") || "", placeholder: "any" }),
      func_contains: h("input", { name: "func_contains", value: p.get("func_contains") || "",
        placeholder: "part of the name" }),
      since: h("input", { name: "since", type: "datetime-local", value: p.get("since_local") || "" }),
      until: h("input", { name: "until", type: "datetime-local", value: p.get("until_local") || "" }),
      filter: h("textarea", { name: "filter", placeholder: '{"field": "priority", "op": ">", "value": 0}' },
        p.get("filter") || ""),
    };
    const query = new URLSearchParams();
    if (state) query.set("state", state);
    for (const key of ["queue", "func_contains", "filter"]) if (p.get(key)) query.set(key, p.get(key));
    for (const key of ["since", "until"]) {
      const local = p.get(key + "_local");
      if (local) query.set(key, new Date(local).toISOString());
    }
    const form = h("form", { class: "filters", id: "job-filters", onsubmit: (ev) => {
      ev.preventDefault();
      const next = new URLSearchParams();
      if (state) next.set("state", state);
      for (const key of ["queue", "func_contains", "filter"]) {
        if (inputs[key].value.trim()) next.set(key, inputs[key].value.trim());
      }
      for (const key of ["since", "until"]) if (inputs[key].value) next.set(key + "_local", inputs[key].value);
      location.hash = "#/jobs?" + next.toString();
    } }, h("label", {}, "Queue", inputs.queue), h("label", {}, "Function", inputs.func_contains),
    h("label", {}, "Created after", inputs.since), h("label", {}, "Created before", inputs.until),
    h("label", {}, "Condition (JSON rule)", inputs.filter),
    h("button", { class: "primary", type: "submit" }, "Filter"),
    h("button", { type: "button", onclick: () => { location.hash = "#/jobs"; } }, "Clear"));
    const bulk = h("div", { class: "row" });
    const listBox = h("div", { id: "job-list" });
    const more = h("div", { class: "row" });
    append(main, [h("h1", {}, "Jobs"), tabs, form, bulk, listBox, more]);
    const selected = new Set();
    let cursor = null;
    let rows = [];

    function tabHref(st) {
      const next = params();
      if (st) next.set("state", st); else next.delete("state");
      return "#/jobs?" + next.toString();
    }

    async function loadCounts() {
      const q = new URLSearchParams(query);
      q.delete("state");
      const data = await api("jobs/counts?" + q.toString());
      clear(tabs);
      tabs.appendChild(h("a", { href: tabHref(""), class: state ? "" : "active" }, "All"));
      for (const st of STATES) {
        const c = data.counts[st];
        tabs.appendChild(h("a", { href: tabHref(st), class: st === state ? "active" : "",
          "data-state": st }, st, h("span", { class: "count" }, fmt.num(c.count, c.estimated))));
      }
    }

    function renderRows() {
      const trs = rows.map((j) => h("tr", { "data-job": j.id, "data-state": j.state },
        canAct() ? h("td", {}, h("input", { type: "checkbox", checked: selected.has(j.id),
          "aria-label": "select job", onchange: (ev) => {
            if (ev.target.checked) selected.add(j.id); else selected.delete(j.id);
            renderBulk();
          } })) : null,
        h("td", { class: "mono" }, jobLink(j.id)),
        h("td", { class: "mono" }, j.func),
        h("td", {}, link("#/queues/" + encodeURIComponent(j.queue), j.queue)),
        h("td", {}, badge(j.state), j.cancelled ? " cancelled" : ""),
        h("td", { class: "num" }, `${j.attempts}/${j.max_attempts}`),
        h("td", {}, fmt.ago(j.created_at)),
        h("td", {}, j.completed_at ? fmt.ago(j.completed_at) : j.started_at ? "started " +
          fmt.ago(j.started_at) : "")));
      const headers = [canAct() ? "" : null, "Id", "Function", "Queue", "State",
        { label: "Attempts", cls: "num" }, "Created", "Finished"].filter((x) => x !== null);
      clear(listBox).appendChild(table(headers, trs, "No jobs match."));
      clear(more);
      if (cursor) {
        more.appendChild(h("button", { type: "button", id: "load-more", onclick: async () => {
          await loadPage(true);
        } }, "Load more"));
      }
    }

    function renderBulk() {
      clear(bulk);
      if (!canAct()) return;
      const ids = [...selected];
      const run = (action, label) => h("button", { type: "button", class: action === "purge" ? "danger" : "",
        "data-action": action, disabled: !ids.length, onclick: async () => {
          if (action === "purge" && !confirm(`Delete ${ids.length} job(s)?`)) return;
          const r = await act(`${label} ${ids.length} job(s)`, () => post("jobs/" + action, { ids }));
          if (r) { selected.clear(); await refresh(); }
        } }, `${label} selected (${ids.length})`);
      append(bulk, [run("retry", "Retry"), run("cancel", "Cancel"), run("purge", "Purge")]);
    }

    async function loadPage(next) {
      const q = new URLSearchParams(query);
      q.set("limit", "50");
      if (next && cursor) q.set("cursor", cursor);
      const data = await api("jobs?" + q.toString());
      rows = next ? rows.concat(data.jobs) : data.jobs;
      cursor = data.next_cursor;
      renderRows();
    }

    async function refresh() {
      await Promise.all([loadCounts(), loadPage(false)]);
      renderBulk();
    }

    let tick = 0;
    try {
      await poll(async () => {
        // Counts change slowly and cost the most: refresh them every third poll (15 s).
        const counts = tick++ % 3 === 0;
        // Keep a long list the user paged through; refresh only the first page otherwise.
        if (rows.length > 50) { if (counts) await loadCounts(); return; }
        await Promise.all([counts ? loadCounts() : null, loadPage(false)]);
        renderBulk();
      }, 5);
    } catch (e) {
      listBox.appendChild(h("p", { class: "error-text" }, e.message));
    }
  }

  async function jobPage(main, id) {
    const box = h("div", {});
    main.appendChild(box);
    const render = async () => {
      const { job } = await api("jobs/" + encodeURIComponent(id));
      clear(box);
      const finished = job.state === "succeeded" || job.state === "failed";
      const actions = canAct() ? h("div", { class: "row", id: "job-actions" },
        finished ? h("button", { type: "button", class: "primary", id: "retry-job", onclick: async () => {
          if (await act("Retried", () => post("jobs/retry", { ids: [job.id] }))) render();
        } }, "Retry") : null,
        !finished ? h("button", { type: "button", id: "cancel-job", onclick: async () => {
          const reason = prompt("Cancel this job? Reason (optional):", "");
          if (reason === null) return;
          const body = reason ? { ids: [job.id], reason } : { ids: [job.id] };
          if (await act("Cancelled", () => post("jobs/cancel", body))) render();
        } }, "Cancel") : null,
        h("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm("Delete this job?")) return;
          if (await act("Purged", () => post("jobs/purge", { ids: [job.id] }))) location.hash = "#/jobs";
        } }, "Purge")) : null;
      const timeline = h("ol", { class: "timeline" },
        h("li", {}, "created ", fmt.time(job.created_at)),
        h("li", {}, "scheduled for ", fmt.time(job.scheduled_at)),
        job.errors.map((e) => h("li", { class: "bad" }, `attempt ${e.attempt + 1} failed`)),
        job.started_at ? h("li", {}, "last started ", fmt.time(job.started_at),
          job.taken_by ? ` on ${job.taken_by}` : "") : null,
        job.completed_at ? h("li", { class: job.state === "failed" ? "bad" : "" },
          job.state, " ", fmt.time(job.completed_at),
          job.started_at ? ` (ran ${fmt.dur((new Date(job.completed_at) - new Date(job.started_at)) / 1000)})`
            : "") : null);
      append(box, [
        h("h1", {}, "Job ", h("span", { class: "mono" }, job.id), " ", badge(job.state, job.state),
          job.cancelled ? " (cancelled)" : ""),
        actions,
        progressPanel(job.progress),
        h("div", { class: "grid2" },
          h("div", { class: "panel" }, h("dl", { class: "fields" },
            h("dt", {}, "Function"), h("dd", { class: "mono" }, job.func),
            h("dt", {}, "Queue"), h("dd", {}, link("#/queues/" + encodeURIComponent(job.queue), job.queue)),
            h("dt", {}, "Priority"), h("dd", {}, String(job.priority)),
            h("dt", {}, "Attempts"), h("dd", {}, `${job.attempts} of ${job.max_attempts}`),
            h("dt", {}, "Recoveries"), h("dd", {}, String(job.recoveries)),
            h("dt", {}, "Unique key"), h("dd", {}, job.unique_key || "—"),
            h("dt", {}, "Worker"), h("dd", {}, job.taken_by || "—"),
            job.deadline ? [h("dt", {}, "Deadline"), h("dd", { id: "job-deadline" }, fmt.time(job.deadline),
              job.meta && job.meta.expired ? " (expired: never started)" : "")] : null,
            job.cancelled ? [h("dt", {}, "Cancelled by"), h("dd", { id: "job-cancelled-by" }, job.cancelled_by || "—"),
              h("dt", {}, "Cancel reason"), h("dd", { id: "job-cancel-reason" }, job.cancel_reason || "—")] : null,
            h("dt", {}, "Limits"), h("dd", { class: "mono" }, JSON.stringify(job.limits)))),
          h("div", { class: "panel" }, h("h2", {}, "Timeline"), timeline)),
        h("h2", {}, "Arguments"), h("pre", { id: "job-kwargs" }, fmt.json(job.kwargs)),
        h("h2", {}, "Result"), h("pre", { id: "job-result" },
          job.result === null ? "—" : fmt.json(job.result)),
        h("h2", {}, "Meta"), h("pre", {}, fmt.json(job.meta)),
        h("h2", {}, `Errors (${job.errors.length})`),
        job.errors.length ? job.errors.map((e) => h("div", { class: "attempt" },
          h("strong", {}, `Attempt ${e.attempt + 1}`),
          h("pre", { class: "traceback" }, e.traceback))) : h("p", { class: "muted" }, "No errors."),
      ]);
    };
    await poll(render, 3);
  }

  // The latest progress report of a job (QueuedJob.report_progress), kept across attempts.
  function progressPanel(progress) {
    if (!progress) return null;
    const fraction = Math.min(1, Math.max(0, Number(progress.fraction) || 0));
    return h("div", { class: "panel progress-panel", id: "job-progress" },
      h("div", { class: "row" },
        h("progress", { id: "job-progress-bar", max: "1", value: String(fraction) }),
        h("strong", { id: "job-progress-percent" }, `${Math.floor(fraction * 100)}%`)),
      h("p", { id: "job-progress-message" }, progress.message || ""),
      h("p", { class: "muted" }, "reported ", fmt.time(progress.at)),
      progress.data === null || progress.data === undefined ? null
        : h("pre", { id: "job-progress-data" }, fmt.json(progress.data)));
  }

  async function workersPage(main) {
    const box = h("div", {});
    append(main, [h("h1", {}, "Workers"), box]);
    await poll(async () => {
      const data = await api("workers");
      clear(box).appendChild(table(["Worker", "Status", "Host", "Queues", { label: "Running", cls: "num" },
        "Last heartbeat", "Started", "Version"], data.workers.map((w) => h("tr", { "data-worker": w.worker_id },
        h("td", { class: "mono" }, w.worker_id, " ", w.is_leader ? badge("leader") : null),
        h("td", {}, w.alive ? badge("alive") : badge("dead")),
        h("td", {}, w.hostname ? `${w.hostname} (pid ${w.pid})` : "—"),
        h("td", {}, (w.queues || []).join(", ") || "—"),
        h("td", { class: "num" }, String(w.running)),
        h("td", {}, fmt.ago(w.last_seen)),
        h("td", {}, fmt.ago(w.started_at)),
        h("td", {}, w.version || "—"))), "No workers have reported in."));
    }, 5);
  }

  async function cronsPage(main) {
    main.appendChild(h("h1", {}, "Crons"));
    if (!config.features.cron) {
      main.appendChild(h("p", { class: "muted" }, "The Cron plugin is not installed."));
      return;
    }
    const box = h("div", {});
    main.appendChild(box);
    await poll(async () => {
      const data = await api("crons");
      clear(box).appendChild(table(["Key", "Schedule", "Time zone", "Function", "Queue", "Last run",
        "Next run", ""], data.crons.map((c) => h("tr", { "data-cron": c.unique_key },
        h("td", { class: "mono" }, c.unique_key),
        h("td", { class: "mono" }, c.cron),
        h("td", {}, c.timezone),
        h("td", { class: "mono" }, c.job.func),
        h("td", {}, c.job.queue),
        h("td", {}, fmt.ago(c.last_run)),
        h("td", {}, c.paused_at ? h("span", { class: "badge paused" }, "paused") : fmt.time(c.next_run)),
        h("td", {}, canAct() ? [h("button", { type: "button", onclick: async () => {
          const r = await act("Pushed", () => post("crons/" + encodeURIComponent(c.unique_key) + "/run"));
          if (r) location.hash = "#/jobs/" + encodeURIComponent(r.job_id);
        } }, "Run now"), " ", h("button", { type: "button", "data-action": c.paused_at ? "resume" : "pause",
          onclick: async () => {
            const action = c.paused_at ? "resume" : "pause";
            if (await act(c.paused_at ? "Resumed" : "Paused",
              () => post("crons/" + encodeURIComponent(c.unique_key) + "/" + action))) route();
          } }, c.paused_at ? "Resume" : "Pause"), " ", h("button", { type: "button", class: "danger", onclick: async () => {
          if (!confirm(`Remove the schedule ${c.unique_key}?`)) return;
          if (await act("Removed", () => post("crons/" + encodeURIComponent(c.unique_key) + "/delete"))) route();
        } }, "Remove")] : null))), "No schedules."));
    }, 10);
  }

  async function triggersPage(main) {
    main.appendChild(h("h1", {}, "Triggers"));
    if (!config.features.triggers) {
      main.appendChild(h("p", { class: "muted" }, "The Trigger plugin is not installed."));
      return;
    }
    const box = h("div", {});
    main.appendChild(box);
    const path = (t, action) => "triggers/" + encodeURIComponent(t.id) + "/" + action;
    await poll(async () => {
      const data = await api("triggers");
      clear(box).appendChild(table(["Table", "Operations", "Level", "Function", "Queue", "State",
        "Created", ""], data.triggers.map((t) => h("tr", { "data-trigger": t.id },
        h("td", { class: "mono", title: t.trigger_name }, `${t.schema_name}.${t.table_name}`),
        h("td", {}, t.operations.join(", ")),
        h("td", {}, t.level, t.when ? h("span", { class: "muted mono" }, " when ", t.when) : null),
        h("td", { class: "mono" }, t.job.func),
        h("td", {}, t.job.queue),
        h("td", {}, t.enabled ? badge("enabled", "active") : badge("disabled", "paused")),
        h("td", {}, fmt.ago(t.created_at)),
        h("td", {}, canAct() ? [h("button", { type: "button", "data-action": t.enabled ? "disable" : "enable",
          onclick: async () => {
            const action = t.enabled ? "disable" : "enable";
            if (await act(t.enabled ? "Disabled" : "Enabled", () => post(path(t, action)))) route();
          } }, t.enabled ? "Disable" : "Enable"), " ", h("button", { type: "button", class: "danger",
          "data-action": "delete", onclick: async () => {
            if (!confirm(`Remove the trigger on ${t.table_name}?`)) return;
            if (await act("Removed", () => post(path(t, "delete")))) route();
          } }, "Remove")] : null))), "No triggers."));
    }, 10);
  }

  async function workflowsPage(main) {
    main.appendChild(h("h1", {}, "Workflows"));
    if (!config.features.workflows) {
      main.appendChild(h("p", { class: "muted" }, "The WorkflowPlugin is not installed."));
      return;
    }
    const box = h("div", {});
    main.appendChild(box);
    await poll(async () => {
      const data = await api("workflows?limit=100");
      clear(box).appendChild(table(["Workflow", "Name", "State", "Steps", "Created", "Updated"],
        data.workflows.map((w) => h("tr", { "data-workflow": w.id },
          h("td", { class: "mono" }, link("#/workflows/" + encodeURIComponent(w.id), w.id.slice(0, 8) + "…")),
          h("td", {}, w.name),
          h("td", {}, badge(w.state)),
          h("td", {}, Object.entries(w.step_counts).map(([k, v]) => `${v} ${k}`).join(", "),
            ` (${w.step_total})`),
          h("td", {}, fmt.ago(w.created_at)),
          h("td", {}, fmt.ago(w.updated_at)))), "No workflows."));
    }, 5);
  }

  async function workflowPage(main, id) {
    const box = h("div", {});
    main.appendChild(box);
    await poll(async () => {
      const { workflow } = await api("workflows/" + encodeURIComponent(id));
      clear(box);
      const states = ["waiting", "pending", "running", "retrying", "succeeded", "failed"];
      append(box, [h("h1", {}, "Workflow ", workflow.name, " ", badge(workflow.state)),
        h("p", { class: "muted mono" }, workflow.id),
        legend(states.map((st) => ({ name: st, color: COLORS[st] }))),
        h("div", { id: "workflow-graph" }, dag(workflow.steps)),
        h("h2", {}, "Steps"),
        table(["Step", "Function", "Depends on", "State", "Job"], workflow.steps.map((st) =>
          h("tr", {}, h("td", { class: "mono" }, st.step_id), h("td", { class: "mono" }, st.func),
            h("td", {}, st.dependencies.join(", ") || "—"), h("td", {}, badge(st.state)),
            h("td", {}, st.job_id ? jobLink(st.job_id) : "—"))))]);
    }, 5);
  }

  const BATCH_STATES = ["pending", "running", "retrying", "succeeded", "failed"];

  async function batchesPage(main) {
    main.appendChild(h("h1", {}, "Batches"));
    if (!config.features.batches) {
      main.appendChild(h("p", { class: "muted" }, "The BatchPlugin is not installed."));
      return;
    }
    const box = h("div", {});
    main.appendChild(box);
    await poll(async () => {
      const data = await api("batches?limit=100");
      clear(box).appendChild(table(["Batch", "State", "Jobs", "Succeeded", "Failed", "Remaining",
        "Created", "Closed"],
        data.batches.map((b) => h("tr", { "data-batch": b.id },
          h("td", { class: "mono" }, link("#/batches/" + encodeURIComponent(b.id), b.id.slice(0, 8) + "…")),
          h("td", {}, badge(b.state)),
          h("td", { class: "num" }, fmt.num(b.total)),
          h("td", { class: "num" }, fmt.num(b.succeeded)),
          h("td", { class: "num" }, fmt.num(b.failed)),
          h("td", { class: "num" }, fmt.num(b.remaining)),
          h("td", {}, fmt.ago(b.created_at)),
          h("td", {}, b.finished_at ? fmt.ago(b.finished_at) : "—"))), "No batches."));
    }, 5);
  }

  async function batchPage(main, id) {
    const box = h("div", {});
    main.appendChild(box);
    await poll(async () => {
      const { batch } = await api("batches/" + encodeURIComponent(id));
      clear(box);
      const callbacks = Object.entries(batch.callbacks);
      append(box, [h("h1", {}, "Batch ", badge(batch.state)),
        h("p", { class: "muted mono" }, batch.id),
        table(["State", "Jobs"], BATCH_STATES.map((st) =>
          h("tr", {}, h("td", {}, badge(st)), h("td", { class: "num" }, fmt.num(batch.counts[st]))))),
        h("p", {}, `${fmt.num(batch.total)} jobs, created ${fmt.ago(batch.created_at)}`,
          batch.finished_at ? `, closed ${fmt.ago(batch.finished_at)}` : ""),
        h("h2", {}, "Callbacks"),
        table(["Callback", "Job"], callbacks.map(([name, job]) =>
          h("tr", {}, h("td", { class: "mono" }, name), h("td", {}, jobLink(job)))),
          batch.callbacks_pushed ? "No callback was given." : "Pushed when every job has finished.")]);
    }, 5);
  }

  async function metricsPage(main) {
    main.appendChild(h("h1", {}, "Metrics"));
    if (!config.features.metrics) {
      main.appendChild(h("p", { class: "muted" }, "The Metrics plugin is not installed."));
      return;
    }
    const index = await api("metrics");
    const p = params();
    const names = [...Object.keys(index.known), ...Object.keys(index.custom || {}).sort()];
    const metric = h("select", { name: "metric" }, names.map((n) =>
      h("option", { value: n, selected: n === (p.get("metric") || "jobs.succeeded") }, n)));
    const resolution = h("select", { name: "resolution" }, index.resolutions.map((r) =>
      h("option", { value: r, selected: r === (p.get("resolution") || "1min") }, r)));
    const ranges = { "1 hour": 1, "6 hours": 6, "1 day": 24, "7 days": 168, "30 days": 720, "1 year": 8760 };
    const range = h("select", { name: "range" }, Object.entries(ranges).map(([k, v]) =>
      h("option", { value: v, selected: String(v) === (p.get("range") || "1") }, k)));
    const queues = [...new Set(index.metrics.map((m) => m.queue).filter(Boolean))].sort();
    const queue = h("select", { name: "queue" }, h("option", { value: "" }, "all queues"),
      queues.map((q) => h("option", { value: q, selected: q === p.get("queue") }, q)));
    const go = () => {
      const next = new URLSearchParams({ metric: metric.value, resolution: resolution.value,
        range: range.value });
      if (queue.value) next.set("queue", queue.value);
      location.hash = "#/metrics?" + next.toString();
    };
    [metric, resolution, range, queue].forEach((el) => el.addEventListener("change", go));
    const box = h("div", { class: "panel", id: "metric-chart" });
    append(main, [h("div", { class: "row" }, h("label", {}, "Metric", metric),
      h("label", {}, "Resolution", resolution), h("label", {}, "Range", range),
      h("label", {}, "Queue", queue)), box]);
    const steps = { "1min": 60, "5min": 300, "1hour": 3600, "1day": 86400 };
    await poll(async () => {
      const since = new Date(Date.now() - Number(range.value) * 3600000);
      const q = new URLSearchParams({ resolution: resolution.value, since: since.toISOString() });
      if (queue.value) q.set("queue", queue.value);
      const data = await api("metrics/" + encodeURIComponent(metric.value) + "?" + q.toString());
      const kind = data.kind;
      const series = [];
      const palette = ["#2f5d8a", "#2e8540", "#c0392b", "#b7791f", "#805ad5", "#2b6cb0", "#d53f8c"];
      if (kind === "counter") {
        const sums = new Map();
        // A counter's value is count + total (custom counters may add fractions).
        for (const pt of data.points) sums.set(pt.bucket, (sums.get(pt.bucket) || 0) + pt.count + pt.total);
        series.push({ name: metric.value, color: palette[0],
          points: [...sums].map(([b, v]) => [new Date(b), v]) });
      } else if (kind === "histogram") {
        const agg = new Map();
        for (const pt of data.points) {
          const a = agg.get(pt.bucket) || { count: 0, total: 0 };
          a.count += pt.count; a.total += pt.total;
          agg.set(pt.bucket, a);
        }
        series.push({ name: metric.value in index.known ? "mean seconds" : "mean", color: palette[0],
          points: [...agg].map(([b, a]) => [new Date(b), a.count ? a.total / a.count : 0]) });
      } else {
        const byQueue = new Map();
        for (const pt of data.points) {
          if (!byQueue.has(pt.queue)) byQueue.set(pt.queue, []);
          byQueue.get(pt.queue).push([new Date(pt.bucket), pt.total]);
        }
        [...byQueue].forEach(([qn, pts], i) => series.push({ name: qn || "all", color: palette[i % 7], points: pts }));
      }
      clear(box);
      append(box, [h("p", { class: "muted" }, `${data.name} (${kind}), ${data.points.length} bucket rows`),
        legend(series), chart(series, { kind: kind === "counter" ? "bar" : "line", since, until: new Date(),
          step: steps[resolution.value] * 1000,
          unit: kind === "histogram" && metric.value in index.known ? "s" : "" })]);
    }, 15);
  }

  async function systemPage(main) {
    const [sys, functions] = await Promise.all([api("system"), api("functions")]);
    append(main, [h("h1", {}, "System"),
      h("div", { class: "panel" }, h("dl", { class: "fields" },
        h("dt", {}, "chancy"), h("dd", {}, sys.chancy_version || "—"),
        h("dt", {}, "Python"), h("dd", {}, sys.python),
        h("dt", {}, "PostgreSQL"), h("dd", {}, sys.server.server_version),
        h("dt", {}, "Database"), h("dd", {}, sys.server.database),
        h("dt", {}, "Jobs (estimate)"), h("dd", {}, fmt.num(sys.server.jobs_estimate, true)),
        h("dt", {}, "Jobs table size"), h("dd", {}, `${(sys.server.jobs_bytes / 1048576).toFixed(1)} MiB`),
        h("dt", {}, "Connections"), h("dd", {}, `${sys.server.connections} of ${sys.server.max_connections}`),
        h("dt", {}, "Schema"), h("dd", {}, Object.entries(sys.schema_versions).map(([k, v]) => `${k} ${v}`)
          .join(", ")),
        h("dt", {}, "Table prefix"), h("dd", { class: "mono" }, config.prefix),
        h("dt", {}, "Plugins"), h("dd", {}, config.plugins.map((x) => x.identifier).join(", ")))),
      h("h2", {}, "Job functions"),
      table(["Function", "Queues", { label: "Recent", cls: "num" }, { label: "Recently failed", cls: "num" },
        { label: "Succeeded (all time)", cls: "num" }, { label: "Failed (all time)", cls: "num" }],
      functions.functions.map((f) => h("tr", {},
        h("td", { class: "mono" }, link("#/jobs?func_contains=" + encodeURIComponent(f.func), f.func)),
        h("td", {}, f.queues.join(", ")),
        h("td", { class: "num" }, fmt.num(f.recent)), h("td", { class: "num" }, fmt.num(f.recent_failed)),
        h("td", { class: "num" }, fmt.num(f.succeeded || 0)), h("td", { class: "num" }, fmt.num(f.failed || 0))))),
    ]);
  }

  // -- routing ----------------------------------------------------------------------

  const PAGES = {
    overview: overviewPage, queues: queuesPage, jobs: jobsPage, workers: workersPage,
    crons: cronsPage, workflows: workflowsPage, triggers: triggersPage, metrics: metricsPage,
    batches: batchesPage, system: systemPage,
  };

  async function route() {
    stopPolling();
    const main = clear(document.getElementById("main"));
    const hash = (location.hash || "#/overview").slice(2);
    const [path] = hash.split("?");
    const parts = path.split("/").map(decodeURIComponent);
    if (parts[0] === "login" || !sessionStorage.getItem(TOKEN_KEY)) {
      loginPage(main);
      return;
    }
    try {
      if (!me) {
        me = await api("me");
        config = await api("configuration");
      }
    } catch (e) {
      if (e.status !== 401) main.appendChild(h("p", { class: "error-text" }, e.message));
      return;
    }
    document.getElementById("top").hidden = false;
    document.getElementById("who").textContent = `${me.username} (${me.role})`;
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.page === parts[0]);
      // A plugin's page is offered only while its plugin is installed.
      if (a.dataset.plugin) a.hidden = !(config.pages || []).includes(a.dataset.plugin);
    }
    try {
      if (parts[0] === "queues" && parts[1]) await queuePage(main, parts[1]);
      else if (parts[0] === "jobs" && parts[1]) await jobPage(main, parts[1]);
      else if (parts[0] === "workflows" && parts[1]) await workflowPage(main, parts[1]);
      else if (parts[0] === "batches" && parts[1]) await batchPage(main, parts[1]);
      else await (PAGES[parts[0]] || overviewPage)(main);
    } catch (e) {
      if (e.status !== 401) main.appendChild(h("p", { class: "error-text" }, e.message));
    }
  }

  window.addEventListener("hashchange", route);
  document.addEventListener("DOMContentLoaded", () => {
    document.getElementById("logout").addEventListener("click", async () => {
      // Revoke the token on the server first; forget it here whatever the answer.
      try { await post("logout"); } catch (e) { /* already invalid */ }
      sessionStorage.removeItem(TOKEN_KEY);
      me = null;
      location.hash = "#/login";
    });
    route();
  });
})();
