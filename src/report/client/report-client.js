// The report's in-page script: draws the panels from the inlined data and runs the record browser. Plain browser
// JavaScript (no modules, no network); Chart.js is inlined before it as the global `Chart`.
(() => {
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const $ = (selector) => document.querySelector(selector);
  const el = (tag, attributes, ...children) => {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  };
  const palette = ["#2f6fdf", "#e0663a", "#2aa876", "#b84fd1", "#d4a72c", "#5b6b7c", "#e04f8a", "#3bb3c3", "#8a6d3b"];
  // Rejections use warm and neutral colours so none is mistaken for the green of "kept".
  const rejectPalette = ["#e0663a", "#b84fd1", "#d4a72c", "#e04f8a", "#5b6b7c", "#8a6d3b", "#c0392b", "#7f8c8d"];
  const chart = (canvasId, config) => {
    const canvas = document.getElementById(canvasId);
    if (!canvas || typeof Chart === "undefined") return;
    config.options = Object.assign({ animation: false, responsive: true, maintainAspectRatio: false }, config.options);
    new Chart(canvas, config);
  };

  // Funnel: generated -> kept, with rejects per named filter, per stage.
  const funnelBody = $("#funnel tbody");
  const filters = [...new Set(data.stages.flatMap((s) => Object.keys(s.byFilter)))].sort();
  for (const stage of data.stages) {
    const top = Object.entries(stage.byFilter).sort((a, b) => b[1] - a[1]);
    funnelBody.append(
      el(
        "tr",
        { "data-stage": stage.stage },
        el("td", { text: stage.stage }),
        el("td", { class: "num", "data-field": "generated", text: String(stage.kept + stage.rejected) }),
        el("td", { class: "num", "data-field": "kept", text: String(stage.kept) }),
        el("td", { class: "num", "data-field": "rejected", text: String(stage.rejected) }),
        el("td", { text: top.map(([f, n]) => `${f} ${n}`).join(", ") || "none" }),
        el("td", { class: "num", text: `${stage.usage.promptTokens} / ${stage.usage.completionTokens}` }),
      ),
    );
  }
  chart("funnel-chart", {
    type: "bar",
    data: {
      labels: data.stages.map((s) => s.stage),
      datasets: [{ label: "kept", data: data.stages.map((s) => s.kept), backgroundColor: "#2aa876" }].concat(
        filters.map((f, i) => ({
          label: `rejected: ${f}`,
          data: data.stages.map((s) => s.byFilter[f] || 0),
          backgroundColor: rejectPalette[i % rejectPalette.length],
        })),
      ),
    },
    options: { indexAxis: "y", scales: { x: { stacked: true }, y: { stacked: true } } },
  });

  // Principle usage, overall and per red-team type.
  const principles = Object.entries(data.principleUsage.overall).sort((a, b) => b[1] - a[1]);
  const usageBody = $("#principles tbody");
  for (const [id, count] of principles) {
    usageBody.append(
      el("tr", { "data-principle": id }, el("td", { text: id }), el("td", { class: "num", text: String(count) })),
    );
  }
  chart("principles-chart", {
    type: "bar",
    data: {
      labels: principles.map((p) => p[0]),
      datasets: [{ label: "citations", data: principles.map((p) => p[1]), backgroundColor: "#2f6fdf" }],
    },
  });
  const byType = data.principleUsage.byType;
  const types = Object.keys(byType).sort();
  if (types.length) {
    const ids = principles.map((p) => p[0]);
    const max = Math.max(1, ...types.flatMap((t) => Object.values(byType[t])));
    const table = el("table", { class: "heat", "data-testid": "principles-by-type" });
    table.append(el("tr", {}, el("th", { text: "question type" }), ...ids.map((id) => el("th", { text: id }))));
    for (const type of types) {
      table.append(
        el(
          "tr",
          {},
          el("td", { text: type }),
          ...ids.map((id) => {
            const n = byType[type][id] || 0;
            return el("td", {
              class: "num",
              style: `background: rgba(47,111,223,${(n / max).toFixed(2)})`,
              text: n ? String(n) : "",
            });
          }),
        ),
      );
    }
    $("#principles-by-type").append(table);
  }

  // Red-team coverage: question types x topics.
  const coverageBody = $("#red-team tbody");
  for (const row of data.redTeam) {
    const questions = row.topics.reduce((sum, t) => sum + t.questions, 0);
    coverageBody.append(
      el(
        "tr",
        { "data-type": row.questionType },
        el("td", { text: row.questionType }),
        el("td", { class: "num", "data-field": "topics", text: String(row.topics.length) }),
        el("td", { class: "num", "data-field": "questions", text: String(questions) }),
        el("td", { class: "chips", text: row.topics.map((t) => `${t.topic} (${t.questions})`).join(" · ") }),
      ),
    );
  }

  // Instruction diversity: root verbs and their direct objects.
  const verbBody = $("#diversity tbody");
  for (const verb of data.diversity.verbs) {
    verbBody.append(
      el(
        "tr",
        { "data-verb": verb.verb },
        el("td", { text: verb.verb }),
        el("td", { class: "num", text: String(verb.count) }),
        el("td", { text: verb.nouns.map((n) => `${n.noun} (${n.count})`).join(", ") }),
      ),
    );
  }
  chart("diversity-chart", {
    type: "bar",
    data: {
      labels: data.diversity.verbs.map((v) => v.verb),
      datasets: [{ label: "instructions", data: data.diversity.verbs.map((v) => v.count), backgroundColor: "#e0663a" }],
    },
  });

  // Length distributions (words).
  const binLabels = (h) => h.edges.map((e, i) => (i + 1 < h.edges.length ? `${e}-${h.edges[i + 1] - 1}` : `${e}+`));
  chart("lengths-chart", {
    type: "bar",
    data: {
      labels: binLabels(data.lengths.prompts),
      datasets: [
        { label: "prompts", data: data.lengths.prompts.counts, backgroundColor: palette[0] },
        { label: "thoughts", data: data.lengths.thoughts.counts, backgroundColor: palette[1] },
        { label: "answers", data: data.lengths.answers.counts, backgroundColor: palette[2] },
      ],
    },
    options: { scales: { x: { title: { display: true, text: "words" } } } },
  });

  // Training loss curves and evaluation scores, when present.
  if (data.lossCurves.length) {
    chart("loss-chart", {
      type: "line",
      data: {
        datasets: data.lossCurves.map((curve, i) => ({
          label: curve.name,
          data: curve.points.map((p) => ({ x: p.step, y: p.loss })),
          borderColor: palette[i % palette.length],
          pointRadius: 0,
        })),
      },
      options: { parsing: false, scales: { x: { type: "linear", title: { display: true, text: "step" } } } },
    });
  } else $("#training").classList.add("empty");
  if (data.evalCurves.length) {
    chart("held-out-chart", {
      type: "line",
      data: {
        datasets: data.evalCurves.flatMap((curve, i) =>
          [
            { label: `${curve.name}: loss`, data: curve.points.map((p) => ({ x: p.step, y: p.loss })) },
            curve.points.some((p) => p.accuracy !== undefined)
              ? {
                  label: `${curve.name}: accuracy`,
                  data: curve.points.map((p) => ({ x: p.step, y: p.accuracy })),
                  borderDash: [4, 3],
                }
              : undefined,
          ]
            .filter(Boolean)
            .map((dataset) => Object.assign(dataset, { borderColor: palette[i % palette.length], pointRadius: 2 })),
        ),
      },
      options: { parsing: false, scales: { x: { type: "linear", title: { display: true, text: "step" } } } },
    });
  } else $("#held-out").classList.add("empty");

  // PPO: reward, KL and response length per step, one line per run.
  if (data.rlCurves?.length) {
    for (const [canvas, key, title] of [
      ["rl-reward-chart", "reward", "mean reward"],
      ["rl-kl-chart", "kl", "KL to the reference (nats per response)"],
      ["rl-length-chart", "responseLength", "response length (tokens)"],
    ]) {
      chart(canvas, {
        type: "line",
        data: {
          datasets: data.rlCurves.map((curve, i) => ({
            label: curve.name,
            data: curve.points.map((p) => ({ x: p.step, y: p[key] })),
            borderColor: palette[i % palette.length],
            pointRadius: 1,
          })),
        },
        options: {
          parsing: false,
          plugins: { title: { display: true, text: title } },
          scales: { x: { type: "linear", title: { display: true, text: "PPO step" } } },
        },
      });
    }
  } else $("#rl").classList.add("empty");
  // Pair objectives: the margin (left axis) and accuracy (right axis, 0-1) per step and on the held-out pairs.
  const pairCurves = [
    ...data.lossCurves.map((curve) => ({ curve, heldOut: false })),
    ...data.evalCurves.map((curve) => ({ curve, heldOut: true })),
  ].filter(({ curve }) => curve.points.some((p) => p.margin !== undefined));
  if (pairCurves.length) {
    // One colour per training folder, whichever file (loss.jsonl or eval.jsonl) the curve comes from.
    const folders = [...new Set(pairCurves.map(({ curve }) => curve.name.replace(/[^/]*$/, "")))];
    chart("pair-training-chart", {
      type: "line",
      data: {
        datasets: pairCurves.flatMap(({ curve, heldOut }) => {
          const colour = palette[folders.indexOf(curve.name.replace(/[^/]*$/, "")) % palette.length];
          const name = `${curve.name.replace(/\/[^/]*$/, "")}${heldOut ? " (held-out)" : ""}`;
          const series = (field, axis) => ({
            label: `${name}: ${field}`,
            data: curve.points.filter((p) => p[field] !== undefined).map((p) => ({ x: p.step, y: p[field] })),
            yAxisID: axis,
            borderColor: colour,
            borderDash: field === "accuracy" ? [4, 3] : [],
            borderWidth: heldOut ? 2.5 : 1,
            pointRadius: heldOut ? 2 : 0,
          });
          return [series("margin", "y"), series("accuracy", "accuracy")];
        }),
      },
      options: {
        parsing: false,
        scales: {
          x: { type: "linear", title: { display: true, text: "step" } },
          y: { title: { display: true, text: "margin" } },
          accuracy: { position: "right", min: 0, max: 1, title: { display: true, text: "accuracy" } },
        },
      },
    });
  } else $("#pair-training").classList.add("empty");

  // SALMON: the judge's agreement and scores per principle, and the labels after aggregation.
  const salmon = data.salmon;
  const fixed = (value) => value.toFixed(3);
  const spread = (q) => `${fixed(q.p10)}, ${fixed(q.median)}, ${fixed(q.p90)}`;
  const judgmentBody = $("#salmon-judgments tbody");
  for (const row of salmon.principles) {
    judgmentBody.append(
      el(
        "tr",
        { "data-principle": row.principle },
        el("td", { text: row.principle }),
        el("td", { class: "num", text: String(row.pairs) }),
        el("td", {
          class: "num",
          "data-field": "agree",
          text: `${row.agree} (${row.pairs ? Math.round((100 * row.agree) / row.pairs) : 0}%)`,
        }),
        el("td", { class: "num", text: `${row.preference1} / ${row.preference2}` }),
        el("td", { class: "num", text: spread(row.s12) }),
        el("td", { class: "num", text: spread(row.s21) }),
      ),
    );
  }
  if (salmon.principles.length) {
    const bins = salmon.scoreBins;
    chart("salmon-scores-chart", {
      type: "line",
      data: {
        labels: bins.slice(0, -1).map((edge, i) => fixed((edge + bins[i + 1]) / 2)),
        datasets: salmon.principles.map((row, i) => ({
          label: row.principle,
          data: row.histogram,
          borderColor: palette[i % palette.length],
          pointRadius: 0,
        })),
      },
      options: { scales: { x: { title: { display: true, text: "mean of s12 and s21" } } } },
    });
  } else $("#salmon-judgments").classList.add("empty");
  const labels = salmon.labels;
  const count = (record) =>
    Object.entries(record)
      .sort((a, b) => b[1] - a[1])
      .map(([key, n]) => `${key} ${n}`)
      .join(", ") || "none";
  const labelRows = [
    ["examples", String(labels.examples)],
    ["output 1 / output 2 preferred", `${labels.preference1} / ${labels.preference2}`],
    ["decided by the dominant principle", count(labels.byDominant)],
    ["decided by a rule", count(labels.rules)],
    ["labels flipped as noise", String(labels.noiseFlips)],
    ["outputs swapped", String(labels.swaps)],
    ["principles negated", `${Math.round(100 * labels.negatedShare)}%`],
    ["principles per example", count(labels.subsetSizes)],
  ];
  const labelBody = $("#salmon-labels tbody");
  for (const [label, value] of labelRows)
    labelBody.append(el("tr", { "data-field": label }, el("th", { text: label }), el("td", { text: value })));
  if (!labels.examples) $("#salmon-labels").classList.add("empty");

  const evalBody = $("#evaluation tbody");
  for (const evaluation of data.evaluations) {
    for (const [metric, value] of Object.entries(evaluation.metrics)) {
      evalBody.append(
        el(
          "tr",
          {},
          el("td", { text: evaluation.name }),
          el("td", { text: metric }),
          // Counts (n, judgments, wins) print as integers, rates and means with four decimals.
          el("td", { class: "num", text: Number.isInteger(value) ? String(value) : value.toFixed(4) }),
        ),
      );
    }
  }
  if (!data.evaluations.length) $("#evaluation").classList.add("empty");

  // Rounds of a repeated group (I-SHEEP): figures by round, each member's kept rate and rejects, a few prompts.
  if (data.rounds.length) {
    $("#rounds").hidden = false;
    const label = (r) => (data.rounds.some((o) => o.group !== r.group) ? `${r.group} ${r.round}` : String(r.round));
    const names = [...new Set(data.rounds.flatMap((r) => Object.keys(r.figures)))].sort();
    const figureHead = $("#round-figures thead tr");
    for (const name of names) figureHead.append(el("th", { text: name }));
    for (const r of data.rounds) {
      $("#round-figures tbody").append(
        el(
          "tr",
          { "data-round": String(r.round) },
          el("td", { text: label(r) }),
          ...names.map((name) =>
            el("td", {
              class: "num",
              "data-figure": name,
              text: r.figures[name] === undefined ? "" : r.figures[name].toFixed(3),
            }),
          ),
        ),
      );
      for (const stage of r.stages) {
        const total = stage.kept + stage.rejected;
        const filters = Object.entries(stage.byFilter).sort((a, b) => b[1] - a[1]);
        $("#round-stages tbody").append(
          el(
            "tr",
            { "data-round": String(r.round), "data-stage": stage.stage },
            el("td", { text: label(r) }),
            el("td", { text: stage.folder }),
            el("td", { class: "num", text: String(total) }),
            el("td", { class: "num", "data-field": "kept", text: String(stage.kept) }),
            el("td", { class: "num", text: total ? `${((100 * stage.kept) / total).toFixed(1)}%` : "" }),
            el("td", { text: filters.map(([f, n]) => `${f} ${n}`).join(", ") || "none" }),
          ),
        );
      }
      $("#round-prompts").append(
        el("h4", { text: `Round ${label(r)}: ${r.promptCount} prompts kept` }),
        el("ul", { "data-round": String(r.round) }, ...r.prompts.map((p) => el("li", { text: p }))),
      );
    }
    // Each figure on its own axis; round 0 is the base model where a figure has a value for it ("... (base)").
    const rounds = [...new Set(data.rounds.map((r) => r.round))].sort((a, b) => a - b);
    const series = names.filter((name) => !name.endsWith(" (base)"));
    const hasBase = names.some((name) => name.endsWith(" (base)"));
    const xs = hasBase ? [0].concat(rounds) : rounds;
    const scales = { x: { title: { display: true, text: "round (0 = base model)" } } };
    chart("rounds-chart", {
      type: "line",
      data: {
        labels: xs.map(String),
        datasets: series.map((name, i) => {
          scales[`y${i}`] = { position: i % 2 ? "right" : "left", title: { display: true, text: name } };
          return {
            label: name,
            yAxisID: `y${i}`,
            borderColor: palette[i % palette.length],
            data: xs.map((x) => {
              if (x === 0) return data.rounds.find((r) => r.round === 1)?.figures[`${name} (base)`] ?? null;
              const found = data.rounds.find((r) => r.round === x);
              return found?.figures[name] ?? null;
            }),
          };
        }),
      },
      options: { scales, spanGaps: true },
    });
  }

  // Self-assessment: histograms of the scores per aspect and round, and how the two aspects agree.
  if (data.ratings.length) {
    $("#ratings").hidden = false;
    chart("ratings-chart", {
      type: "bar",
      data: {
        labels: ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10"],
        datasets: data.ratings.map((h, i) => ({
          label: `${h.aspect}${h.round === undefined ? "" : `, round ${h.round}`}`,
          data: h.counts,
          backgroundColor: palette[i % palette.length],
        })),
      },
      options: { scales: { x: { title: { display: true, text: "score" } } } },
    });
    const unreadable = (round) =>
      data.ratings.filter((h) => h.round === round).reduce((sum, h) => sum + h.unreadable, 0);
    for (const a of data.agreement) {
      $("#agreement tbody").append(
        el(
          "tr",
          { "data-round": String(a.round ?? "") },
          el("td", { text: String(a.round ?? "") }),
          el("td", { class: "num", "data-field": "pairs", text: String(a.pairs) }),
          el("td", { class: "num", text: `${(100 * a.exact).toFixed(1)}%` }),
          el("td", { class: "num", text: `${(100 * a.withinOne).toFixed(1)}%` }),
          el("td", { class: "num", text: a.correlation === undefined ? "—" : a.correlation.toFixed(3) }),
          el("td", { class: "num", text: String(unreadable(a.round)) }),
        ),
      );
    }
    if (data.agreement.length) {
      // The cross-table of both scores over all rounds.
      const [first, second] = data.agreement[0].aspects;
      const total = Array.from({ length: 10 }, (_, i) =>
        Array.from({ length: 10 }, (_, j) => data.agreement.reduce((sum, a) => sum + a.matrix[i][j], 0)),
      );
      const max = Math.max(1, ...total.flat());
      const table = el("table", { class: "heat", "data-testid": "agreement-matrix" });
      table.append(
        el(
          "tr",
          {},
          el("th", { text: `${first} ↓ / ${second} →` }),
          ...total.map((_, j) => el("th", { text: String(j + 1) })),
        ),
      );
      total.forEach((row, i) => {
        table.append(
          el(
            "tr",
            {},
            el("th", { text: String(i + 1) }),
            ...row.map((n) =>
              el("td", {
                class: "num",
                style: `background: rgba(47,111,223,${(n / max).toFixed(2)})`,
                text: n ? String(n) : "",
              }),
            ),
          ),
        );
      });
      $("#agreement-matrix").append(table);
    }
  }

  // Record browser.
  const state = { records: [], shown: 200 };
  const controls = {
    search: $("#search"),
    stage: $("#filter-stage"),
    status: $("#filter-status"),
    reason: $("#filter-reason"),
    principle: $("#filter-principle"),
    type: $("#filter-type"),
    round: $("#filter-round"),
  };
  const fill = (select, values) => {
    for (const value of values) select.append(el("option", { value, text: value }));
  };
  const matches = (r) => {
    const q = controls.search.value.trim().toLowerCase();
    if (controls.stage.value && r.stage !== controls.stage.value) return false;
    if (controls.status.value === "kept" && !r.kept) return false;
    if (controls.status.value === "rejected" && r.kept) return false;
    if (controls.reason.value && r.filter !== controls.reason.value) return false;
    if (controls.principle.value && !r.principles.includes(controls.principle.value)) return false;
    if (controls.type.value && r.questionType !== controls.type.value) return false;
    if (controls.round.value && String(r.round) !== controls.round.value) return false;
    if (q && !`${r.instruction}\n${r.input}\n${r.thoughts}\n${r.output}\n${r.id}`.toLowerCase().includes(q))
      return false;
    return true;
  };
  const showDetail = (r) => {
    const detail = $("#detail");
    detail.replaceChildren(
      el("div", {
        class: "meta",
        text: `${r.stage}${r.round === undefined ? "" : ` (round ${r.round})`} · ${r.kept ? "kept" : `rejected by ${r.filter}: ${r.reason}`} · ${r.id}`,
      }),
      el(
        "div",
        { class: "columns" },
        el(
          "section",
          { "data-testid": "detail-prompt" },
          el("h4", { text: "prompt" }),
          el("pre", { text: r.input ? `${r.instruction}\n\n${r.input}` : r.instruction }),
        ),
        el(
          "section",
          { "data-testid": "detail-thoughts" },
          el("h4", { text: r.labels?.thoughts || "internal thoughts" }),
          el("pre", { text: r.thoughts || "—" }),
          el("p", { text: r.principles.length ? `cites: ${r.principles.join(", ")}` : "" }),
        ),
        el(
          "section",
          { "data-testid": "detail-answer" },
          el("h4", { text: r.labels?.output || "answer" }),
          el("pre", { text: r.output || "—" }),
        ),
      ),
    );
    detail.hidden = false;
  };
  const render = () => {
    const found = state.records.filter(matches);
    $("#result-count").textContent = `${found.length} of ${state.records.length} records`;
    const list = $("#results");
    list.replaceChildren(
      ...found.slice(0, state.shown).map((r) => {
        const item = el(
          "li",
          { "data-id": r.id, class: r.kept ? "kept" : "rejected" },
          el("span", { class: "badge", text: r.kept ? r.stage : `${r.stage} ✗ ${r.filter}` }),
          el("span", { class: "title", text: (r.instruction || r.output || "(empty)").slice(0, 160) }),
        );
        item.addEventListener("click", () => showDetail(r));
        return item;
      }),
    );
    $("#show-more").hidden = found.length <= state.shown;
  };
  $("#show-more").addEventListener("click", () => {
    state.shown += 200;
    render();
  });
  for (const control of Object.values(controls)) {
    control.addEventListener("input", () => {
      state.shown = 200;
      render();
    });
  }

  const loadRecords = async () => {
    const encoded = document.getElementById("report-records").textContent.trim();
    const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  };
  loadRecords().then((records) => {
    state.records = records;
    fill(controls.stage, [...new Set(records.map((r) => r.stage))]);
    fill(controls.reason, [...new Set(records.filter((r) => !r.kept).map((r) => r.filter))].sort());
    fill(controls.principle, [...new Set(records.flatMap((r) => r.principles))].sort());
    fill(controls.type, [...new Set(records.map((r) => r.questionType).filter(Boolean))].sort());
    const roundValues = [...new Set(records.map((r) => r.round).filter((n) => n !== undefined))].sort((a, b) => a - b);
    for (const n of roundValues) controls.round.append(el("option", { value: String(n), text: `round ${n}` }));
    controls.round.hidden = roundValues.length === 0;
    render();
    document.body.dataset.ready = "true";
  });
})();
