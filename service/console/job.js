/* The job page: live progress (polling), cancel and delete, then the report as tables, the
   plots, the sample generations and the artifacts with download links. */
"use strict";
(function () {
  const el = PS.el;
  const STAGES = ["dense", "prune", "train", "recover"];
  const LABEL = { dense: "dense", prune: "after pruning", train: "after training",
    recover: "after recovery" };

  PS.stageValues = (p) => (p ? { dense: p.dense, ...p.after } : {});

  function section(title, ...content) {
    return el("section", {}, el("h2", {}, title), ...content);
  }

  function summary(r) {
    const nm = r.nm_ok === null ? "not N:M" : r.nm_ok ? "ok" : "BROKEN";
    const total = Object.values(r.stages_s).reduce((a, b) => a + b, 0);
    return PS.table(null, [
      ["model", r.spec.model], ["method", `${r.spec.method} ${r.spec.sparsity}`],
      ["sparsity (pruned modules)", PS.pct(r.sparsity)],
      ["sparsity (all decoder weights)", PS.pct(r.decoder_sparsity)], ["N:M pattern", nm],
      ["architecture", `${r.architecture}, ${r.n_layers} layers, ${r.dtype}, ${r.device}`],
      ["time", total.toFixed(1) + " s (" + Object.entries(r.stages_s)
        .map(([k, v]) => `${k} ${v.toFixed(1)}s`).join(", ") + ")"],
      ["peak RSS", r.peak_rss_mb.toFixed(0) + " MB"],
    ], "summary");
  }

  function perplexity(r) {
    const rows = [["evaluation", r.perplexity], ["held-out", r.heldout]].filter(([, p]) => p);
    if (!rows.length) return el("p", {}, "Not evaluated (the spec had no evaluation).");
    const seen = STAGES.filter((s) => rows.some(([, p]) => s in PS.stageValues(p)));
    return PS.table(["data", ...seen.map((s) => LABEL[s])], rows.map(([name, p]) => [
      `${name}: ${p.dataset} (${p.windows} x ${p.seqlen})`,
      ...seen.map((s) => PS.stageValues(p)[s] ?? null)]), "perplexity");
  }

  function samples(r) {
    const s = r.samples;
    if (!s || !s.prompts.length) return el("p", {}, "No sample generations.");
    const stages = Object.keys(s.after);
    return PS.table(["prompt", ...stages.map((st) => LABEL[st] || st)], s.prompts.map((p, i) =>
      [el("b", {}, p), ...stages.map((st) => s.after[st][i])]), "samples");
  }

  function training(r) {
    if (!r.training.length) return null;
    return section("Training", PS.table(["stage", "data", "steps", "tokens", "objective",
      "first loss", "last loss", "s/step"], r.training.map((t) => [t.stage, t.split, t.steps,
      String(t.tokens), t.objective, t.loss[0] ?? null, t.loss[t.loss.length - 1] ?? null,
      t.time_per_step_s])));
  }

  function layers(r) {
    if (!r.layers.length) return null;
    return section("Sparsity per layer (OWL)", PS.table(["layer", "outlier ratio", "given",
      "achieved"], r.layers.map((l) => [String(l.index), l.outlier_ratio, PS.pct(l.sparsity),
      PS.pct(l.achieved)])));
  }

  async function plots(jobId, artifacts) {
    const box = el("div", { class: "plots", id: "plots" });
    for (const a of artifacts.filter((x) => x.path.endsWith(".png"))) {
      const blob = await PS.api(`jobs/${jobId}/artifacts/${a.path}`, { blob: true });
      box.append(el("img", { src: URL.createObjectURL(blob), alt: a.path, title: a.path }));
    }
    return box.childElementCount ? section("Plots", box) : null;
  }

  function artifactTable(jobId, artifacts) {
    return PS.table(["file", "size", "sha256", ""], artifacts.map((a) => [
      el("span", { class: "mono" }, a.path), String(a.size),
      el("span", { class: "mono", title: a.sha256 }, a.sha256.slice(0, 12)),
      el("button", { type: "button", class: "download", "data-path": a.path,
        onclick: () => PS.download(jobId, a.path).catch(PS.error) }, "Download")]), "artifacts");
  }

  async function report(jobId) {
    const artifacts = (await PS.api(`jobs/${jobId}/artifacts`)).items;
    const r = await PS.api(`jobs/${jobId}/artifacts/pruning_report.json`);
    return el("div", { id: "report" },
      section("Summary", summary(r)), section("Perplexity per stage", perplexity(r)),
      section("Sample generations", samples(r)), training(r), layers(r),
      r.warnings.length ? section("Warnings", el("ul", {}, r.warnings.map((w) => el("li", {}, w))))
        : null,
      await plots(jobId, artifacts), section("Artifacts", artifactTable(jobId, artifacts)));
  }

  function header(view, job) {
    const p = job.progress;
    const eta = p.eta_s == null ? "" : ` · ETA ${Math.round(p.eta_s)} s`;
    const steps = p.n_steps ? ` · step ${p.step}/${p.n_steps}` : p.n_layers ?
      ` · layer ${p.layer}/${p.n_layers}` : "";
    const cancel = el("button", { id: "cancel", type: "button", disabled: PS.terminal(job.state),
      onclick: () => PS.api(`jobs/${job.id}/cancel`, { method: "POST" }).then(() =>
        PS.jobView(view, job.id)).catch(PS.error) }, "Cancel");
    const del = el("button", { id: "delete", type: "button", onclick: () => {
      if (!confirm(`Delete job ${job.id} and its files?`)) return;
      PS.api(`jobs/${job.id}`, { method: "DELETE" }).then(() => { location.hash = "#/"; })
        .catch(PS.error);
    } }, "Delete");
    return el("div", { id: "job-head" },
      el("h1", {}, "Job ", el("span", { class: "mono" }, job.id)),
      el("p", {}, "State: ", el("span", { id: "job-state", class: "state-" + job.state },
        job.state), ` · ${p.stage}${steps}${eta} `, PS.bar(p.percent),
        el("span", { id: "job-percent" }, ` ${p.percent.toFixed(1)}%`)),
      p.message ? el("p", { class: "mono" }, p.message) : null,
      job.error ? el("p", { class: "error", id: "job-error" },
        `${job.error.type}: ${job.error.message}`) : null,
      el("p", { class: "actions" }, cancel, del));
  }

  PS.jobView = function (view, jobId) {
    view.replaceChildren(el("p", {}, "Loading…"));
    let shown = false;
    PS.repeat(async () => {
      const job = await PS.api(`jobs/${encodeURIComponent(jobId)}`);
      const head = header(view, job);
      if (!shown) view.replaceChildren(head, el("div", { id: "job-body" }));
      else view.querySelector("#job-head").replaceWith(head);
      shown = true;
      if (!PS.terminal(job.state)) return true;
      if (job.state === "succeeded") view.querySelector("#job-body").replaceWith(await report(job.id));
      return false;
    }, 1000);
  };
})();
