// agentrft dashboard: a hash-routed single page over /dashboard/api. Charts are Plotly's
// (served from the installed plotly package); every string from a run is put in the page
// through textContent, never innerHTML.
//   #/                                   jobs
//   #/jobs/ID                            charts, checkpoints, events, reward-hacking banner
//   #/jobs/ID/traces?step=&phase=&row=&cmp=   trace viewer (cmp: a second eval step beside)
"use strict";

const API = "/dashboard/api";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 3000;
let pollTimer = null;
let renderToken = 0;

// Charts: [id, title, y axis, series]; a series is [metrics key, label]; "$train_reward_mean."
// expands to every per-grader key with that prefix; "@tool_calls" is the per-step box plot.
const CHARTS = [
  ["chart-reward", "Reward (train per step, validation per eval)", "reward",
    [["train_reward_mean", "train"], ["valid_reward_mean", "validation"],
     ["$train_reward_mean.", "train · "], ["$valid_reward_mean.", "validation · "]]],
  ["chart-reward-vs-calls", "Train reward against tool calls per rollout (a point per step)", "reward",
    [["~tool_calls_per_rollout~train_reward_mean", "steps"]], "tool calls per rollout"],
  ["chart-reward-vs-reasoning", "Train reward against reasoning tokens (a point per step)", "reward",
    [["~reasoning_tokens_mean~train_reward_mean", "steps"]], "reasoning tokens per rollout"],
  ["chart-tokens", "Reasoning and completion tokens per rollout", "tokens",
    [["completion_tokens_mean", "completion"], ["reasoning_tokens_mean", "reasoning"],
     ["valid_completion_tokens_mean", "completion (validation)"],
     ["valid_reasoning_tokens_mean", "reasoning (validation)"]]],
  ["chart-tool-calls", "Tool calls per rollout (distribution per step, all and per tool; mean per tool)", "calls",
    [["@tool_calls", "all tools"], ["$tool_calls_per_rollout.", ""],
     ["valid_tool_calls_per_rollout", "validation (mean)"]]],
  ["chart-tokens-per-call", "Tokens per tool call", "tokens",
    [["tokens_per_tool_call_mean", "tokens per call"]]],
  ["chart-latency", "Tool latency (mean, s)", "seconds",
    [["tool_latency_mean", "train"], ["valid_tool_latency_mean", "validation"]]],
  ["chart-errors", "Tool errors (model-caused) and infra failures", "count",
    [["tool_errors", "tool errors"], ["tool_infra_failures", "infra failures"]]],
  ["chart-discarded", "Discarded and over-budget rollouts", "rollouts",
    [["discarded_rollouts", "discarded"], ["budget_exceeded_rollouts", "budget exceeded"]]],
  ["chart-zero-variance", "Zero-variance groups", "groups",
    [["zero_variance_groups", "zero-variance groups"]]],
  ["chart-timing", "Step timing (s)", "seconds",
    [["timing.sampling", "sampling"], ["timing.grading", "grading"],
     ["timing.training", "training"], ["timing.eval", "eval"],
     ["timing.full_iteration", "full iteration"]]],
];

// --- helpers ---------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fmt(v, digits = 3) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(digits);
  return String(v);
}

function when(ts) { return ts ? new Date(ts * 1000).toLocaleString() : "–"; }

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function getJSON(path) {
  const r = await fetch(API + path, {credentials: "same-origin"});
  let body = null;
  try { body = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) throw new HttpError(r.status, (body && body.error && body.error.message) || r.statusText);
  return body;
}

function setView(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes);
  return view;
}

function crumbs(...links) {
  document.getElementById("crumbs").replaceChildren(
    ...links.map(([href, text]) => el("a", {href, text})));
}

function stopPolling() { if (pollTimer) clearTimeout(pollTimer); pollTimer = null; }

function poll(fn, token) {
  pollTimer = setTimeout(async () => {
    if (token !== renderToken) return;
    try { if (await fn() === false) return; } catch (e) { console.warn(e); }
    if (token === renderToken) poll(fn, token);
  }, POLL_MS);
}

function showError(e) {
  if (e instanceof HttpError && e.status === 401) return showLogin();
  setView(el("p", {class: "err", text: `error: ${e.message}`}));
}

function showLogin() {
  crumbs();
  setView(el("form", {class: "login", method: "post", action: "/dashboard/login"},
    el("h1", {text: "Sign in"}),
    el("p", {class: "muted", text: "This server wants an API key (one of its --api-key values)."}),
    el("input", {type: "password", name: "key", placeholder: "API key", size: 36, autofocus: true}),
    " ", el("button", {text: "sign in"})));
}

// --- jobs ------------------------------------------------------------------------------------

async function jobsView(token) {
  crumbs(["#/", "jobs"]);
  const table = el("table", {id: "jobs"});
  setView(el("h1", {text: "Jobs"}), table);
  const draw = async () => {
    const jobs = (await getJSON("/jobs")).data;
    if (token !== renderToken) return false;
    table.replaceChildren(el("tr", {}, ["job", "status", "model", "step", "train reward",
      "valid reward", "created", ""].map(h => el("th", {text: h}))));
    for (const j of jobs) {
      table.append(el("tr", {"data-job": j.id},
        el("td", {}, el("a", {href: `#/jobs/${j.id}`, text: j.id})),
        el("td", {}, el("span", {class: `status ${j.status}`, text: j.status})),
        el("td", {text: j.model}),
        el("td", {class: "num", text: j.step === null ? "–" : `${j.step}/${fmt(j.total_steps)}`}),
        el("td", {class: "num", text: fmt(j.train_reward_mean)}),
        el("td", {class: "num", text: fmt(j.valid_reward_mean)}),
        el("td", {text: when(j.created_at)}),
        el("td", {class: "err", text: j.warning ? "⚠ " + j.warning : (j.error ? j.error.message : "")})));
    }
    if (!jobs.length) table.append(el("tr", {}, el("td", {colspan: 8, class: "muted", text: "no jobs yet"})));
  };
  await draw();
  poll(draw, token);
}

// --- job page --------------------------------------------------------------------------------

function series(metrics, key) {
  const xs = [], ys = [];
  for (const m of metrics) {
    const v = m[key];
    if (typeof v === "number" && Number.isFinite(v)) { xs.push(m.step); ys.push(v); }
  }
  return [xs, ys];
}

function chartTraces(spec, data) {
  const keys = new Set(data.metrics.flatMap(m => Object.keys(m)));
  const traces = [];
  for (const [key, label] of spec) {
    if (key === "@tool_calls") {
      // the distribution over a step's rollouts: all tools shown, each tool a legend click away
      const d = data.tool_calls;
      if (!d.steps.length) continue;
      const box = (name, meta, s, extra) => ({type: "box", name, meta, x: d.steps, q1: s.q1,
        median: s.median, q3: s.q3, lowerfence: s.min, upperfence: s.max, mean: s.mean,
        hoverinfo: "x+y", ...extra});
      traces.push(box(label, "@tool_calls", d, {marker: {color: "#7f8c8d"}}));
      for (const [name, s] of Object.entries(d.per_tool)) {
        traces.push(box(`${name} (distribution)`, `@tool_calls.${name}`, s, {visible: "legendonly"}));
      }
    } else if (key.startsWith("~")) {
      // one metric against another, a point per step, coloured by step
      const [, xKey, yKey] = key.split("~");
      const ms = data.metrics.filter(m => [m[xKey], m[yKey]].every(v => typeof v === "number" && Number.isFinite(v)));
      if (!ms.length) continue;
      traces.push({type: "scatter", mode: "markers", name: label, meta: key, x: ms.map(m => m[xKey]),
        y: ms.map(m => m[yKey]), text: ms.map(m => `step ${m.step}`),
        marker: {size: 7, color: ms.map(m => m.step), colorscale: "Viridis", showscale: true,
                 colorbar: {title: {text: "step"}, thickness: 10}}});
    } else if (key.startsWith("$")) {
      const prefix = key.slice(1);
      for (const k of [...keys].filter(k => k.startsWith(prefix)).sort()) {
        const [x, y] = series(data.metrics, k);
        if (x.length) traces.push({type: "scatter", mode: "lines+markers", name: label + k.slice(prefix.length),
          meta: k, x, y, line: {dash: "dot"}, marker: {size: 4}});
      }
    } else {
      const [x, y] = series(data.metrics, key);
      if (x.length) traces.push({type: "scatter", mode: "lines+markers", name: label, meta: key, x, y,
        marker: {size: 5}});
    }
  }
  return traces;
}

function drawCharts(container, data) {
  const lastStep = data.metrics.reduce((a, m) => Math.max(a, m.step), 0);
  // every box first, so the grid has its final width before Plotly measures it
  for (const [id] of CHARTS) {
    if (!document.getElementById(id)) container.append(el("div", {id, class: "chart"}));
  }
  for (const [id, title, yTitle, spec, xTitle] of CHARTS) {
    const div = document.getElementById(id);
    const traces = chartTraces(spec, data);
    const layout = {title: {text: title, font: {size: 13}, x: 0.01, xanchor: "left"}, margin: {l: 50, r: 10, t: 36, b: 30},
      xaxis: xTitle ? {title: {text: xTitle}} :
        {rangemode: "tozero", hoverformat: "d", tickformat: "d", dtick: lastStep <= 10 ? 1 : undefined}, yaxis: {title: {text: yTitle}},
      legend: {orientation: "h", y: -0.12, font: {size: 10}}, showlegend: true,
      hovermode: xTitle ? "closest" : "x unified",
      annotations: traces.length ? [] : [{text: "no data yet", showarrow: false,
        xref: "paper", yref: "paper", x: 0.5, y: 0.5}]};
    Plotly.react(div, traces, layout, {displaylogo: false, responsive: true});
    div.dataset.points = JSON.stringify(traces.map(t => [t.meta, t.x.length]));
  }
}

function warningBanners(jobId, warnings) {
  return warnings.map(w => el("div", {class: "banner", "data-kind": (w.data || {}).kind || ""},
    el("b", {text: "⚠ Too good to be true? "}), w.message,
    el("ul", {}, ((w.data || {}).examples || []).map(x => el("li", {},
      el("a", {href: `#/jobs/${jobId}/traces?step=${x.step}&phase=${x.phase}&row=${x.row_index}`,
        text: `step ${x.step} ${x.phase} row ${x.row_index}`}),
      ` reward ${fmt(x.reward)}, ${x.tool_calls} tool calls, answer: `,
      el("code", {text: JSON.stringify(x.final_text)}))))));
}

const QUADRANT_COLORS = {better_fewer: "#27ae60", better_more: "#f39c12", worse_fewer: "#8e44ad",
  worse_more: "#c0392b", unchanged: "#95a5a6"};

function compareSection(jobId) {
  // eval step a (baseline by default) against eval step b (the latest by default)
  const state = {a: null, b: null, key: null};
  const pick = (name) => el("select", {id: `cmp-${name}`, onchange: e => { state[name] = Number(e.target.value); state.key = null; refresh(); }});
  const selA = pick("a"), selB = pick("b");
  const chart = el("div", {id: "chart-delta", class: "chart delta"});
  const table = el("table", {id: "compare-table"}), quads = el("p", {id: "quadrants"});
  const section = el("div", {id: "compare", hidden: true},
    el("h2", {text: "Before and after: Δreward against Δtool calls, per validation row"}),
    el("div", {class: "picker"}, el("label", {}, "before (eval step)", selA), el("label", {}, "after (eval step)", selB)),
    el("div", {class: "charts"}, chart, el("div", {}, quads, table)));
  async function refresh(evalSteps) {
    const query = new URLSearchParams();
    if (state.a !== null) query.set("a", state.a);
    if (state.b !== null) query.set("b", state.b);
    const key = `${query}|${evalSteps || ""}`;
    if (key === state.key) return;
    state.key = key;
    let c;
    try { c = await getJSON(`/jobs/${jobId}/compare?${query}`); } catch (e) {
      if (e.status === 404) { section.hidden = true; return; } throw e;
    }
    section.hidden = false;
    for (const [sel, value] of [[selA, c.a], [selB, c.b]]) {
      sel.replaceChildren(...c.evals.map(s => el("option", {value: s, selected: s === value,
        text: s === 0 ? "0 (baseline)" : String(s)})));
    }
    const traces = Object.keys(QUADRANT_COLORS).map(q => {
      const rows = c.per_row.filter(r => r.quadrant === q);
      return {type: "scatter", mode: "markers", name: `${q.replace("_", " + ")}: ${c.quadrants[q]}`,
        meta: `quadrant:${q}`, x: rows.map(r => r.d_calls), y: rows.map(r => r.d_reward),
        customdata: rows.map(r => r.row_index), marker: {color: QUADRANT_COLORS[q], size: 9, opacity: 0.8},
        text: rows.map(r => `row ${r.row_index}: reward ${fmt(r.baseline_mean)} → ${fmt(r.final_mean)}, calls ${fmt(r.baseline_calls, 2)} → ${fmt(r.final_calls, 2)}`),
        hoverinfo: "text"};
    });
    await Plotly.react(chart, traces, {title: {text: `eval step ${c.a} → ${c.b}: click a point for its traces`, font: {size: 13}, x: 0.01, xanchor: "left"},
      margin: {l: 50, r: 10, t: 36, b: 40}, xaxis: {title: {text: "Δ tool calls per rollout"}, zeroline: true},
      yaxis: {title: {text: "Δ mean reward"}, zeroline: true}, legend: {orientation: "h", y: -0.2, font: {size: 10}}},
      {displaylogo: false, responsive: true});
    chart.dataset.points = JSON.stringify(traces.map(t => [t.meta, t.x.length]));
    if (!chart.dataset.clickable) {
      chart.dataset.clickable = "1";
      chart.on("plotly_click", ev => {
        const row = ev.points[0].customdata;
        location.hash = `#/jobs/${jobId}/traces?step=${state.b ?? c.b}&phase=eval&row=${row}&cmp=${state.a ?? c.a}`;
      });
    }
    quads.replaceChildren(`${c.rows_compared} rows compared · `, ...Object.keys(QUADRANT_COLORS).map(q =>
      el("span", {style: `color:${QUADRANT_COLORS[q]}`, text: `${q.replace("_", " + ")} ${c.quadrants[q]}  `})));
    const keys = ["mean_reward", "best_of_n_reward", "zero_variance_share", "tool_calls_per_rollout",
      ...c.tools.map(t => `tool_calls_per_rollout.${t}`), "repeat_bigrams", ...c.tools.map(t => `repeat_bigrams.${t}`),
      "completion_tokens_mean", "tool_latency_mean", "tool_errors_per_rollout", "discarded_rollouts"];
    table.replaceChildren(el("tr", {}, ["", `step ${c.a}`, `step ${c.b}`, "Δ"].map(h => el("th", {text: h}))),
      ...keys.map(k => el("tr", {"data-key": k}, el("td", {text: k}), el("td", {class: "num", text: fmt(c.baseline[k])}),
        el("td", {class: "num", text: fmt(c.final[k])}), el("td", {class: "num", text: fmt(c.delta[k])}))));
  }
  return {section, refresh};
}

async function jobView(token, jobId) {
  crumbs(["#/", "jobs"], [`#/jobs/${jobId}`, jobId], [`#/jobs/${jobId}/traces`, "traces"]);
  const head = el("div"), banners = el("div", {id: "banners"});
  const charts = el("div", {class: "charts", id: "charts"});
  const ckpts = el("table", {id: "checkpoints"}), events = el("div", {class: "events", id: "events"});
  const cmp = compareSection(jobId);
  setView(head, banners, el("h2", {text: "Training"}), charts, cmp.section,
    el("h2", {text: "Checkpoints"}), ckpts, el("h2", {text: "Events"}), events);
  const draw = async () => {
    const data = await getJSON(`/jobs/${jobId}`);
    if (token !== renderToken) return false;
    const j = data.job;
    const last = data.metrics.length ? data.metrics[data.metrics.length - 1].step : null;
    head.replaceChildren(el("h1", {}, `${j.id} `, el("span", {class: `status ${j.status}`, id: "job-status", text: j.status})),
      el("p", {class: "muted"}, `model ${j.model}`, j.fine_tuned_model ? ` → ${j.fine_tuned_model}` : "",
        ` · step ${fmt(last)} of ${fmt(data.total_steps)} · created ${when(j.created_at)}`,
        j.error ? el("span", {class: "err", text: ` · ${j.error.message}`}) : ""));
    banners.replaceChildren(...warningBanners(jobId, data.warnings));
    drawCharts(charts, data);
    const evalSteps = data.metrics.filter(m => typeof m.valid_reward_mean === "number").map(m => m.step).join(",");
    await cmp.refresh(evalSteps);
    ckpts.replaceChildren(el("tr", {}, ["step", "model name", "valid reward", "created", ""].map(h => el("th", {text: h}))),
      ...data.checkpoints.map(c => el("tr", {},
        el("td", {class: "num", text: c.step}), el("td", {}, el("code", {text: c.model_name})),
        el("td", {class: "num", text: fmt(c.metrics.valid_reward_mean)}), el("td", {text: when(c.created_at)}),
        el("td", {}, el("a", {href: `#/jobs/${jobId}/traces?step=${c.step}&phase=eval&cmp=0`, text: "eval traces vs baseline"})))));
    events.replaceChildren(...data.events.map(e => el("div", {class: `${e.level} ${e.type}`},
      el("span", {class: "muted", text: when(e.created_at) + " "}), e.message)));
    return !TERMINAL.has(j.status);
  };
  if (await draw() === false) return;
  poll(draw, token);
}

// --- trace viewer ----------------------------------------------------------------------------

function grader(r) {
  const g = r.grader || {};
  const meta = g.metadata || {};
  const errors = Object.entries(meta.errors || {}).filter(([, v]) => v).map(([k]) => k);
  const subs = Object.entries(g.sub_rewards || {});
  return el("p", {}, `reward ${fmt(r.reward)}`,
    r.shaped_reward !== null && r.shaped_reward !== undefined ? ` (shaped ${fmt(r.shaped_reward)})` : "",
    meta.name ? ` · grader ${meta.name} (${meta.type || "?"})` : "",
    subs.length ? " · sub-scores: " + subs.map(([k, v]) => `${k} ${fmt(v)}`).join(", ") : "",
    errors.length ? el("span", {class: "err", text: " · errors: " + errors.join(", ")}) : "");
}

function messageView(m) {
  const role = m.role || "?";
  let content = m.content;
  if (Array.isArray(content)) content = content.map(p => (p && p.text) || "").join(" ");
  const calls = (m.tool_calls || []).map(c => `${(c.function || {}).name}(${(c.function || {}).arguments})`);
  const open = role === "assistant" || role === "tool";
  return el("details", {class: `msg ${role}`, open},
    el("summary", {text: role + (m.tool_call_id ? ` (${m.tool_call_id})` : "")}),
    content ? el("pre", {text: String(content)}) : "",
    calls.length ? el("pre", {text: "tool calls: " + calls.join("\n")}) : "");
}

function rolloutView(r) {
  const calls = r.tool_calls || [];
  return el("div", {class: "rollout", "data-trace": r.trace_id},
    el("h3", {}, el("code", {text: r.trace_id}), ` · ${r.status}`,
      r.discard_reason ? el("span", {class: "err", text: ` (${r.discard_reason})`}) : "",
      ` · ${r.turns} turns · ${r.completion_tokens} completion tokens`,
      r.reasoning_tokens ? ` · ${r.reasoning_tokens} reasoning` : ""),
    grader(r),
    el("p", {}, el("b", {text: "Final answer"})), el("pre", {class: "final", text: r.final_text || ""}),
    el("p", {}, el("b", {text: `Tool calls (${calls.length})`})),
    calls.length ? el("table", {class: "toolcalls"},
      el("tr", {}, ["turn", "tool", "arguments", "output", "latency", ""].map(h => el("th", {text: h}))),
      ...calls.map(c => el("tr", {class: "toolcall"},
        el("td", {class: "num", text: c.turn}), el("td", {class: "tool-name", text: c.name}),
        el("td", {}, el("pre", {text: c.arguments})), el("td", {}, el("pre", {text: c.output})),
        el("td", {class: "num", text: `${fmt(c.latency_s, 3)} s`}),
        el("td", {class: "err", text: c.is_error ? `error${c.status_code ? " " + c.status_code : ""}` : ""})))) :
      el("p", {class: "muted", text: "no tool calls"}),
    el("details", {}, el("summary", {text: `Messages (${(r.messages || []).length})`}),
      ...(r.messages || []).map(messageView)));
}

async function tracesView(token, jobId, params) {
  crumbs(["#/", "jobs"], [`#/jobs/${jobId}`, jobId], [`#/jobs/${jobId}/traces`, "traces"]);
  const steps = (await getJSON(`/jobs/${jobId}/steps`)).data;
  if (token !== renderToken) return;
  if (!steps.length) { setView(el("p", {class: "muted", text: "no rollouts recorded yet"})); return; }
  const key = s => `${s.phase}:${s.step}`;
  let cur = steps.find(s => String(s.step) === params.get("step") && s.phase === (params.get("phase") || "train"))
    || steps.find(s => s.phase === "eval") || steps[0];
  const go = (changes) => {
    const p = new URLSearchParams({step: cur.step, phase: cur.phase, ...Object.fromEntries(params)});
    for (const [k, v] of Object.entries(changes)) { if (v === null) p.delete(k); else p.set(k, v); }
    location.hash = `#/jobs/${jobId}/traces?${p}`;
  };
  const stepSel = el("select", {id: "step-select", onchange: e => {
    const [phase, step] = e.target.value.split(":"); go({phase, step, row: null});
  }}, steps.map(s => el("option", {value: key(s), selected: key(s) === key(cur),
    text: `${s.phase === "eval" ? (s.step === 0 ? "baseline eval" : "eval") : "train"} step ${s.step} (${s.rollouts} rollouts)`})));
  const rows = (await getJSON(`/jobs/${jobId}/rows?step=${cur.step}&phase=${cur.phase}`)).data;
  if (token !== renderToken) return;
  const row = rows.find(r => String(r.row_index) === params.get("row")) || rows[0];
  const rowSel = el("select", {id: "row-select", onchange: e => go({row: e.target.value})},
    rows.map(r => el("option", {value: r.row_index, selected: r === row,
      text: `row ${r.row_index} · mean ${fmt(r.mean_reward)} · ${r.question}`})));
  const evals = steps.filter(s => s.phase === "eval" && s.step !== cur.step);
  const cmp = cur.phase === "eval" ? evals.find(s => String(s.step) === params.get("cmp")) : undefined;
  const cmpSel = cur.phase === "eval" ? el("label", {}, "side by side with",
    el("select", {id: "cmp-select", onchange: e => go({cmp: e.target.value || null})},
      el("option", {value: "", text: "(nothing)"}),
      evals.map(s => el("option", {value: s.step, selected: cmp && s.step === cmp.step,
        text: s.step === 0 ? "baseline (step 0)" : `checkpoint step ${s.step}`})))) : "";
  const sides = el("div", {class: cmp ? "sides two" : "sides", id: "sides"});
  setView(el("h1", {text: "Traces"}),
    el("div", {class: "picker"}, el("label", {}, "step", stepSel), el("label", {}, "row", rowSel), cmpSel),
    row ? el("p", {}, el("b", {text: "Question: "}), row.question) : "", sides);
  const column = async (s) => {
    const t = await getJSON(`/jobs/${jobId}/trace?step=${s.step}&phase=${s.phase}&row=${row.row_index}`);
    const title = s.phase === "eval" ? (s.step === 0 ? "baseline (step 0)" : `eval at step ${s.step}`) : `train step ${s.step}`;
    return el("div", {class: "side", "data-step": s.step},
      el("h2", {text: `${title} · row ${row.row_index} · ${t.rollouts.length} rollouts`}),
      ...t.rollouts.map(rolloutView));
  };
  if (!row) return;
  const cols = await Promise.all([column(cur), ...(cmp ? [column(cmp)] : [])]);
  if (token !== renderToken) return;
  sides.replaceChildren(...cols);
  document.body.dataset.traceLoaded = "1";
}

// --- router ----------------------------------------------------------------------------------

async function route() {
  stopPolling();
  const token = ++renderToken;
  delete document.body.dataset.traceLoaded;
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  try {
    const session = await getJSON("/session");
    document.getElementById("logout").hidden = !session.auth_required;
    if (parts[0] === "jobs" && parts[1] && parts[2] === "traces") {
      await tracesView(token, decodeURIComponent(parts[1]), new URLSearchParams(query || ""));
    } else if (parts[0] === "jobs" && parts[1]) {
      await jobView(token, decodeURIComponent(parts[1]));
    } else {
      await jobsView(token);
    }
  } catch (e) {
    if (token === renderToken) showError(e);
  }
}

window.addEventListener("hashchange", route);
route();
