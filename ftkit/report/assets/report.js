// ftkit report: draws one or several run folders from the JSON that `ftkit report` embeds in this page.
// Everything is built with DOM calls and textContent (never innerHTML with data), so any text a model wrote
// shows as text.
(function () {
  "use strict";
  const DATA = JSON.parse(document.getElementById("ftkit-data").textContent);
  const RUNS = DATA.runs;
  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22"];
  const DASHES = [[], [6, 4], [2, 3], [10, 3, 2, 3]];
  // Known metrics, grouped into one chart each; whatever else a run logged is under "More curves".
  const CHARTS = [
    { title: "Loss", keys: ["loss", "eval_loss", "policy_loss", "value_loss"] },
    { title: "Learning rate", keys: ["learning_rate", "lr"] },
    { title: "Held-out accuracy", keys: ["heldout_accuracy"], byDifficulty: true },
    { title: "Reward", keys: ["reward_mean", "reward_std", "shaped_reward_mean", "format_reward", "reward_model_score"] },
    { title: "Success rate", keys: ["success_rate"] },
    { title: "KL to the reference (per token)", keys: ["kl"] },
    { title: "Entropy (nats per token)", keys: ["entropy"] },
    { title: "Clip fraction", keys: ["clip_fraction"] },
    { title: "Groups with identical rewards", keys: ["identical_groups"] },
    { title: "Response length (tokens)", keys: ["response_length"] },
    { title: "Turns per episode", keys: ["turns_mean", "heldout_mean_turns", "heldout_turns_to_solve"] },
    { title: "Tokens per second", keys: ["tokens_per_s", "rollout_tokens_per_s", "train_tokens_per_s"] },
    { title: "Next-token accuracy (training batches)", keys: ["mean_token_accuracy"] },
    { title: "Preference", keys: ["rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"] },
    { title: "Gradient norm", keys: ["grad_norm"] },
  ];
  const PAGE = 50;

  // -- small helpers -------------------------------------------------------------------------------
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null) continue;
      if (k === "text") node.textContent = v;
      else if (k === "class") node.className = v;
      else if (k === "style") node.setAttribute("style", v);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v);
    }
    for (const child of [].concat(children || [])) {
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }
  const $ = (id) => document.getElementById(id);
  const color = (i) => COLORS[i % COLORS.length];
  const swatch = (i) => el("span", { class: "swatch", style: "background:" + color(i) });
  function fmt(v) {
    if (v === null || v === undefined || v === "") return "—";
    if (typeof v === "boolean") return v ? "yes" : "no";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return v.toLocaleString("en");
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
    return a >= 100 ? v.toLocaleString("en", { maximumFractionDigits: 1 }) : String(+v.toPrecision(4));
  }
  const pct = (v) => (typeof v === "number" ? (100 * v).toFixed(1) + "%" : "—");
  function duration(s) {
    if (typeof s !== "number") return "—";
    if (s < 120) return s.toFixed(0) + " s";
    const whole = Math.round(s), m = Math.floor(whole / 60);  // rounded first: 239.6 s is 4 min 0 s, not 3 min 60 s
    return m < 120 ? m + " min " + (whole - 60 * m) + " s" : (s / 3600).toFixed(1) + " h";
  }
  const when = (t) => new Date(t * 1000).toLocaleString();
  const multi = RUNS.length > 1;
  const allDatasets = RUNS.every((r) => r.kind === "dataset");

  // -- header, summary, warnings ------------------------------------------------------------------
  function header() {
    document.title = "ftkit report: " + RUNS.map((r) => r.name).join(", ");
    const box = $("runs");
    RUNS.forEach((run, i) => {
      const st = run.status || {};
      let state;
      if (run.kind === "dataset") state = el("span", { class: "status-done", text: fmt(run.summary.rows) + " rows collected" });
      else if (st.finished) state = el("span", { class: "status-done", text: "finished at step " + fmt(st.step) });
      else state = el("span", { class: "status-live", text: "not finished: step " + fmt(st.step) +
        (st.max_steps ? " of " + fmt(st.max_steps) : "") + " (still training, or stopped before its end)" });
      box.appendChild(el("div", { class: "run-line" }, [swatch(i), el("b", { text: run.name }),
        " (" + run.kind + ", " + run.path + ") — ", state, el("span", { class: "note", text: "  data written " + when(st.updated) })]));
    });
    const live = RUNS.some((r) => r.kind !== "dataset" && !(r.status || {}).finished);
    $("reload").textContent = "Page written " + when(DATA.generated) + (live ?
      ". While a run trains, it rewrites this page at each held-out evaluation: reload it then to see the newest curves, accuracy and episodes." : ".");
  }

  const FIELDS = [["model", "model"], ["method", "method"], ["algo", "algorithm"], ["gym", "gym"], ["steps", "steps"],
    ["episodes", "episodes trained on"], ["heldout_accuracy_start", "held-out accuracy, start", pct],
    ["heldout_accuracy_end", "held-out accuracy, end", pct], ["eval_accuracy", "held-out accuracy", pct],
    ["eval_n", "held-out problems"], ["reward_mean_last10", "reward, mean of the last 10 steps"],
    ["wall_time_s", "wall time", duration], ["train_runtime_s", "training time", duration],
    ["tokens_per_s", "tokens per second"], ["rollout_tokens_per_s", "rollout tokens per second"],
    ["train_tokens_per_s", "training tokens per second"], ["train_loss", "training loss"], ["rows", "rows"],
    ["reward_mean", "mean reward"], ["solved_rate", "solved", pct], ["processes", "processes"],
    ["weights_source", "weights"]];

  function summary() {
    const rows = FIELDS.filter(([k]) => RUNS.some((r) => r.summary[k] !== undefined));
    if (!rows.length) { $("summary").appendChild(el("p", { class: "note", text: "No summary yet: summary.json is written when the run ends." })); return; }
    const head = el("tr", {}, [el("th", { text: "" })].concat(RUNS.map((r, i) => el("th", {}, [swatch(i), r.name]))));
    const body = rows.map(([k, label, f]) => el("tr", {}, [el("th", { text: label })].concat(
      RUNS.map((r) => el("td", { class: "num", text: (f || fmt)(r.summary[k]) })))));
    $("summary").appendChild(el("table", {}, [el("thead", {}, head), el("tbody", {}, body)]));
  }

  function warnings() {
    const box = $("warnings");
    let any = false;
    RUNS.forEach((run, i) => {
      for (const w of run.warnings || []) {
        any = true;
        box.appendChild(el("div", { class: "warning" }, [multi ? swatch(i) : null,
          el("b", { text: w.step === null || w.step === undefined ? "" : "step " + w.step + ": " }), w.message]));
      }
    });
    if (!any) box.appendChild(el("p", { class: "ok", text: "No warnings: none of ftkit's checks fired." }));
  }

  // -- curves --------------------------------------------------------------------------------------
  function aligned(series) {
    const xs = Array.from(new Set([].concat(...series.map((s) => s.x)))).sort((a, b) => a - b);
    const at = new Map(xs.map((x, i) => [x, i]));
    const columns = series.map((s) => {
      const col = new Array(xs.length).fill(null);
      s.x.forEach((x, i) => { col[at.get(x)] = s.y[i]; });
      return col;
    });
    return [xs].concat(columns);
  }

  function seriesFor(keys, withGroups) {
    const out = [];
    RUNS.forEach((run, ri) => {
      let names = keys.filter((k) => run.curves[k]);
      if (withGroups && !multi) names = names.concat(Object.keys(run.curves).filter((k) => k.startsWith("heldout_accuracy/")));
      names.forEach((k, ki) => {
        const c = run.curves[k];
        out.push({ label: (multi ? run.name + ": " : "") + k.replace("heldout_accuracy/", "held-out "), x: c.x, y: c.y,
          stroke: withGroups && ki > 0 ? COLORS[(ki + 2) % COLORS.length] : color(ri), dash: DASHES[ki % DASHES.length] });
      });
    });
    return out;
  }

  const charts = [];
  function chart(parent, title, series) {
    const box = el("div", { class: "chart", "data-title": title });
    parent.appendChild(box);
    const width = Math.max(300, box.clientWidth - 14);
    const opts = {
      title: title, width: width, height: 240, scales: { x: { time: false } },
      series: [{ label: "step", value: (u, v) => fmt(v) }].concat(series.map((s) => ({
        label: s.label, stroke: s.stroke, dash: s.dash, width: 1.5, spanGaps: true,
        points: { show: s.x.length <= 60, size: 5 }, value: (u, v) => fmt(v) }))),
      axes: [{ label: "step" }, { size: 64, values: (u, vals) => vals.map(fmt) }],
    };
    charts.push({ plot: new uPlot(opts, aligned(series), box), box: box });
  }

  function curves() {
    const parent = $("charts");
    const used = new Set();
    for (const spec of CHARTS) {
      spec.keys.forEach((k) => used.add(k));
      const series = seriesFor(spec.keys, spec.byDifficulty);
      if (series.length) chart(parent, spec.title, series);
    }
    const rest = Array.from(new Set([].concat(...RUNS.map((r) => Object.keys(r.curves)))))
      .filter((k) => !used.has(k) && !k.startsWith("heldout_accuracy/")).sort();
    if (!charts.length && !rest.length) {
      parent.appendChild(el("p", { class: "note", text: "No metrics logged yet." }));
      return;
    }
    if (!rest.length) return;
    const holder = el("div", { id: "more-chart" });
    const pick = el("select", { id: "more-select", onchange: () => {
      holder.textContent = "";
      if (pick.value) chart(holder, pick.value, seriesFor([pick.value], false));
    } }, [el("option", { value: "", text: "(choose a metric)" })].concat(rest.map((k) => el("option", { value: k, text: k }))));
    $("more-curves").appendChild(el("h3", {}, ["More curves: ", pick]));
    $("more-curves").appendChild(holder);
  }

  window.addEventListener("resize", () => {
    for (const c of charts) if (c.box.isConnected) c.plot.setSize({ width: Math.max(300, c.box.clientWidth - 14), height: 240 });
  });

  // -- accuracy by difficulty ----------------------------------------------------------------------
  function difficulty() {
    if (allDatasets) {
      $("sec-difficulty").querySelector("h2").textContent = "Solved rate by difficulty (every row)";
    }
    const runs = RUNS.map((r, i) => [r, i]).filter(([r]) => r.by_difficulty && r.by_difficulty.points.length);
    if (!runs.length) { $("difficulty").appendChild(el("p", { class: "note", text: "No held-out evaluation by difficulty yet." })); return; }
    const groups = Array.from(new Set([].concat(...runs.map(([r]) => r.by_difficulty.points.flatMap((p) => Object.keys(p.accuracy)))))).sort();
    const head = [el("th", { text: "difficulty" })].concat(runs.map(([r, i]) => {
      const pts = r.by_difficulty.points;
      const what = pts[0].label ? pts[0].label + " rate of every row" :
        pts.map((p) => "step " + fmt(p.step)).join(" → ");
      return el("th", {}, [swatch(i), r.name + ": " + what]);
    }));
    const body = groups.map((g) => el("tr", {}, [el("td", { class: "mono", text: g })].concat(runs.map(([r]) => {
      const pts = r.by_difficulty.points;
      const vals = pts.map((p) => p.accuracy[g]);
      const n = (r.by_difficulty.n || {})[g];
      const cell = el("td", { class: "num" });
      if (vals.length === 2 && typeof vals[0] === "number" && typeof vals[1] === "number") {
        const d = vals[1] - vals[0];
        cell.append(el("span", { class: "bar start", style: "width:" + (60 * vals[0]) + "px" }), " ", pct(vals[0]), " → ",
          el("span", { class: "bar", style: "width:" + (60 * vals[1]) + "px" }), " ", el("b", { text: pct(vals[1]) }),
          " ", el("span", { class: d >= 0 ? "up" : "down", text: (d >= 0 ? "+" : "") + (100 * d).toFixed(1) }));
      } else {
        const v = vals[vals.length - 1];
        cell.append(typeof v === "number" ? el("span", { class: "bar", style: "width:" + (60 * v) + "px" }) : "", " ", pct(v));
      }
      if (n) cell.append(el("span", { class: "note", text: " (n=" + fmt(n) + ")" }));
      return cell;
    }))));
    $("difficulty").appendChild(el("table", {}, [el("thead", {}, el("tr", {}, head)), el("tbody", {}, body)]));
    $("difficulty").appendChild(el("p", { class: "note", text: allDatasets ? "n: rows per difficulty." :
      "First and last held-out evaluation that logged its groups; n: problems per group in the final evaluation (the ones during SFT training may score fewer)." }));
  }

  // -- episodes ------------------------------------------------------------------------------------
  const ITEMS = [];
  RUNS.forEach((run, ri) => (run.items || []).forEach((it) => { it.run = ri; ITEMS.push(it); }));
  const datasetOnly = RUNS.every((r) => r.kind === "dataset" || !(r.items || []).length) && RUNS.some((r) => r.kind === "dataset");
  const STEP = datasetOnly ? "problem" : "step";
  const GROUP = datasetOnly ? "sample" : "group";
  const state = { page: 0, open: new Set() };

  function bestWorst(items) {
    const by = new Map();
    for (const it of items) {
      const key = it.run + ":" + it.step;
      if (!by.has(key)) by.set(key, []);
      by.get(key).push(it);
    }
    const marks = new Map();
    for (const list of by.values()) {
      const scored = list.filter((it) => typeof it.reward === "number");
      if (!scored.length) continue;
      let best = scored[0], worst = scored[0];
      for (const it of scored) { if (it.reward > best.reward) best = it; if (it.reward < worst.reward) worst = it; }
      marks.set(best, "best");
      if (worst !== best) marks.set(worst, "worst");
    }
    return marks;
  }
  let MARKS = null;

  function control(label, input) { return el("label", {}, [label, input]); }
  function number(id) { return el("input", { type: "number", id: id, step: "any", oninput: refilter }); }
  function select(id, options) {
    return el("select", { id: id, onchange: refilter }, options.map(([v, t]) => el("option", { value: v, text: t })));
  }

  function episodes() {
    const box = $("episodes");
    $("episodes-title").textContent = datasetOnly ? "Rows" : "Episodes";
    const notes = RUNS.filter((r) => r.items_note).map((r) => (multi ? r.name + ": " : "") + r.items_note);
    if (!ITEMS.length) { box.appendChild(el("p", { class: "note", text: "No episodes logged: RL runs write trajectories.jsonl from their first step, and other runs show the samples of their final evaluation once it has run." })); return; }
    box.appendChild(el("p", { class: "note", text: "In this page: " + notes.join("; ") + ". Click a row for the whole episode." }));
    const diffs = Array.from(new Set(ITEMS.map((it) => it.difficulty))).sort();
    const filters = [
      multi ? control("run", select("f-run", [["", "all"]].concat(RUNS.map((r, i) => [String(i), r.name])))) : null,
      control(STEP + " from", number("f-step-min")), control(STEP + " to", number("f-step-max")),
      control("reward ≥", number("f-reward-min")), control("reward ≤", number("f-reward-max")),
      control("solved", select("f-solved", [["", "any"], ["yes", "solved"], ["no", "not solved"]])),
      control("difficulty", select("f-difficulty", [["", "any"]].concat(diffs.map((d) => [d, d])))),
      control("text contains", el("input", { type: "search", id: "f-text", oninput: refilter })),
      control("show", select("f-view", [["all", "every episode"], ["bestworst", "best and worst of each " + STEP]])),
      control("order", select("f-sort", [["", "as logged"], ["reward-desc", "reward, high first"], ["reward-asc", "reward, low first"], ["step-desc", STEP + ", last first"]])),
    ];
    box.appendChild(el("div", { class: "filters" }, filters));
    box.appendChild(el("div", { class: "pager" }, [
      el("button", { id: "prev", text: "◀ previous", onclick: () => { state.page--; render(); } }),
      el("span", { id: "count" }),
      el("button", { id: "next", text: "next ▶", onclick: () => { state.page++; render(); } })]));
    const cols = (multi ? ["run"] : []).concat([STEP, GROUP, "difficulty", "reward", "solved", "turns", "prompt", "answers"]);
    box.appendChild(el("table", { id: "episode-table" }, [el("thead", {}, el("tr", {}, cols.map((c) => el("th", { text: c })))), el("tbody", {})]));
    render();
  }

  function value(id) { const node = $(id); return node ? node.value : ""; }
  function num(id) { const v = value(id); return v === "" ? null : Number(v); }

  function filtered() {
    const run = value("f-run"), solved = value("f-solved"), diff = value("f-difficulty");
    const text = value("f-text").toLowerCase(), view = value("f-view"), sort = value("f-sort");
    const smin = num("f-step-min"), smax = num("f-step-max"), rmin = num("f-reward-min"), rmax = num("f-reward-max");
    if (view === "bestworst" && !MARKS) MARKS = bestWorst(ITEMS);
    const out = ITEMS.filter((it) => {
      if (run !== "" && String(it.run) !== run) return false;
      if (smin !== null && !(it.step >= smin)) return false;
      if (smax !== null && !(it.step <= smax)) return false;
      if (rmin !== null && !(it.reward >= rmin)) return false;
      if (rmax !== null && !(it.reward <= rmax)) return false;
      if (solved && (solved === "yes") !== Boolean(it.solved)) return false;
      if (diff && it.difficulty !== diff) return false;
      if (view === "bestworst" && !MARKS.has(it)) return false;
      if (text && !haystack(it).includes(text)) return false;
      return true;
    });
    const by = { "reward-desc": (a, b) => (b.reward ?? -Infinity) - (a.reward ?? -Infinity),
      "reward-asc": (a, b) => (a.reward ?? Infinity) - (b.reward ?? Infinity), "step-desc": (a, b) => b.step - a.step }[sort];
    return by ? out.slice().sort(by) : out;
  }

  function haystack(it) {
    if (it._text === undefined) {
      it._text = [it.prompt, it.answer, it.system || ""].concat(...it.turns.map((t) => [t[0], t[1]]))
        .concat(Object.values(it.extra || {})).join("\n").toLowerCase();
    }
    return it._text;
  }

  function refilter() { state.page = 0; state.open.clear(); render(); }

  function render() {
    const rows = filtered();
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    state.page = Math.min(Math.max(0, state.page), pages - 1);
    const first = state.page * PAGE;
    const shown = rows.slice(first, first + PAGE);
    $("count").textContent = rows.length ? (first + 1) + "–" + (first + shown.length) + " of " + rows.length.toLocaleString("en") +
      " matching (" + ITEMS.length.toLocaleString("en") + " in the page), page " + (state.page + 1) + " of " + pages : "no episode matches";
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    const body = document.querySelector("#episode-table tbody");
    body.textContent = "";
    for (const it of shown) {
      body.appendChild(row(it));
      if (state.open.has(it)) body.appendChild(detail(it));
    }
  }

  function row(it) {
    const mark = MARKS && value("f-view") === "bestworst" ? MARKS.get(it) : null;
    const answers = it.turns.map((t) => t[0]).join(" | ");
    const cells = (multi ? [el("td", {}, [swatch(it.run), RUNS[it.run].name])] : []).concat([
      el("td", { class: "num" }, [fmt(it.step), mark ? el("span", { class: "badge " + mark, text: mark }) : null]),
      el("td", { class: "num", text: fmt(it.group) }), el("td", { class: "mono", text: it.difficulty }),
      el("td", { class: "num", text: fmt(it.reward) }),
      el("td", { class: it.solved ? "solved-yes" : "solved-no", text: it.solved === null || it.solved === undefined ? "—" : it.solved ? "✔" : "✘" }),
      el("td", { class: "num", text: String(it.turns.length) }),
      el("td", { class: "text mono", text: it.prompt, title: it.prompt }),
      el("td", { class: "text mono", text: answers, title: answers })]);
    return el("tr", { class: "item", onclick: () => {
      if (state.open.has(it)) state.open.delete(it); else state.open.add(it);
      render();
    } }, cells);
  }

  function detail(it) {
    const parts = [];
    if (it.system) parts.push(el("div", { class: "label", text: "system prompt" }), el("pre", { text: it.system }));
    parts.push(el("div", { class: "label", text: "prompt (the gym's first observation)" }), el("pre", { text: it.prompt }));
    it.turns.forEach((t, i) => {
      parts.push(el("div", { class: "turn" }, [
        el("div", { class: "label", text: "turn " + (i + 1) + ": the model's action" + (t[2] === null || t[2] === undefined ? "" : ", reward " + fmt(t[2])) }),
        el("pre", { text: t[0] }),
        t[1] ? el("div", { class: "label", text: "the gym's reply" }) : null, t[1] ? el("pre", { text: t[1] }) : null]));
    });
    if (it.answer) parts.push(el("div", { class: "label", text: "expected answer" }), el("pre", { text: it.answer }));
    for (const [k, v] of Object.entries(it.extra || {})) parts.push(el("div", { class: "label", text: k }), el("pre", { text: v }));
    return el("tr", { class: "detail" }, el("td", { colspan: String(multi ? 9 : 8) }, parts));
  }

  // -- dataset card, recipe, environment -----------------------------------------------------------
  function dataset() {
    const sets = RUNS.map((r, i) => [r, i]).filter(([r]) => r.dataset);
    if (!sets.length) return;
    $("sec-dataset").hidden = false;
    for (const [r, i] of sets) {
      const box = el("div", {}, [el("h3", {}, [swatch(i), r.name])]);
      const bars = r.dataset.rewards;
      if (bars.length) {
        const top = Math.max(...bars.map((b) => b.count));
        box.appendChild(el("table", { id: "reward-histogram" }, [el("thead", {}, el("tr", {}, [el("th", { text: "reward (every row)" }), el("th", { class: "num", text: "rows" }), el("th", { text: "" })])),
          el("tbody", {}, bars.map((b) => el("tr", {}, [el("td", { class: "mono", text: b.label }), el("td", { class: "num", text: fmt(b.count) }),
            el("td", {}, el("span", { class: "bar", style: "width:" + Math.round(240 * b.count / top) + "px" }))])))]));
      }
      box.appendChild(el("details", {}, [el("summary", { text: "the dataset card (README.md)" }), el("pre", { text: r.dataset.card })]));
      $("dataset").appendChild(box);
    }
  }

  // Recipe values as written (0.0005, not 5.00e-4): they are settings to copy, not measurements.
  const raw = (v) => (v === null || v === undefined ? "(unset)" : String(v));
  function keyValues(obj, show) {
    return el("table", {}, el("tbody", {}, Object.entries(obj).map(([k, v]) => el("tr", {}, [el("th", { class: "mono", text: k }), el("td", { class: "mono", text: (show || fmt)(v) })]))));
  }

  function recipe() {
    const box = $("recipe");
    if (multi) {
      box.appendChild(el("h3", { text: DATA.diff.length ? "Keys that differ between the runs" : "The runs' recipes are the same" }));
      if (DATA.diff.length) {
        box.appendChild(el("table", { id: "recipe-diff" }, [el("thead", {}, el("tr", {}, [el("th", { text: "key" })].concat(RUNS.map((r, i) => el("th", {}, [swatch(i), r.name]))))),
          el("tbody", {}, DATA.diff.map((d) => el("tr", {}, [el("td", { class: "mono", text: d.key })].concat(d.values.map((v) => el("td", { class: "mono", text: raw(v) }))))))]));
      }
    }
    RUNS.forEach((r, i) => box.appendChild(el("details", { open: multi ? null : "" }, [el("summary", {}, [swatch(i),
      (r.kind === "dataset" ? "provenance of " : "resolved recipe of ") + r.name + " (recipe.yaml, flattened)"]), keyValues(r.recipe, raw)])));
  }

  function environment() {
    const box = $("env");
    RUNS.forEach((r, i) => {
      const env = r.env || {};
      const part = el("div", {}, [el("h3", {}, [swatch(i), r.name])]);
      part.appendChild(el("div", { class: "label note", text: "the exact command" }));
      part.appendChild(el("pre", { class: "command", text: env.command || "(not recorded)" }));
      const git = env.git ? env.git.commit + (env.git.dirty ? " (with uncommitted changes)" : "") : null;
      const facts = { "git revision": git, python: env.python, platform: env.platform, GPUs: (env.cuda || []).join(", ") || (env.python ? "none" : null),
        "CPU cores": env.cpu_count, "content hash": env.content_hash, counts: env.counts ? JSON.stringify(env.counts) : null };
      part.appendChild(keyValues(Object.fromEntries(Object.entries(facts).filter(([, v]) => v !== undefined && v !== null))));
      if (env.packages) part.appendChild(el("details", {}, [el("summary", { text: "package versions" }), keyValues(env.packages)]));
      box.appendChild(part);
    });
  }

  if (allDatasets) {  // a dataset has no training curves and no warnings: hide them and their links
    for (const id of ["sec-curves", "sec-warnings"]) {
      $(id).hidden = true;
      document.querySelector('nav a[href="#' + id + '"]').hidden = true;
    }
  }
  header();
  summary();
  warnings();
  dataset();
  curves();
  difficulty();
  episodes();
  recipe();
  environment();
  // Tests and people can tell when the page has drawn, and how long it took from the start of loading.
  window.ftkitReport = { openMs: performance.now(), items: ITEMS.length, charts: charts.length };
  document.body.setAttribute("data-ready", "1");
})();
