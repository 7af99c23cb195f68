/* The compare page: two or more jobs side by side (spec differences, perplexity per stage,
   sparsity, time). */
"use strict";
(function () {
  const el = PS.el;
  const STAGES = [["dense", "perplexity, dense"], ["prune", "perplexity, after pruning"],
    ["train", "perplexity, after training"], ["recover", "perplexity, after recovery"]];

  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

  // [field path, values] of every spec field that differs; a part set in one spec and absent
  // in another is one row (its whole value), not one row per field inside it
  function differences(specs, prefix = "") {
    const keys = [...new Set(specs.flatMap((s) => Object.keys(s || {})))].sort();
    return keys.flatMap((k) => {
      const values = specs.map((s) => (s || {})[k]);
      if (values.every(isObject)) return differences(values, prefix + k + ".");
      const shown = values.map((v) => (v === undefined || v === null ? "—" : JSON.stringify(v)));
      return new Set(shown).size > 1 ? [[prefix + k, shown]] : [];
    });
  }

  async function load(id) {
    const job = await PS.api(`jobs/${encodeURIComponent(id)}`);
    const report = job.state === "succeeded" ?
      await PS.api(`jobs/${job.id}/artifacts/pruning_report.json`) : null;
    return { job, report };
  }

  function rows(items) {
    const out = [];
    const add = (name, values, cls) => out.push({ cls, cells: [el("b", {}, name), ...values] });
    add("state", items.map(({ job }) => PS.stateCell(job.state)));
    for (const [k, values] of differences(items.map(({ job }) => job.spec))) {
      add("spec: " + k, values.map((v) => el("span", { class: "mono" }, v)), "diff spec-diff");
    }
    const r = items.map((x) => x.report);
    for (const [stage, label] of STAGES) {
      const values = r.map((x) => (x ? PS.stageValues(x.perplexity)[stage] ?? null : null));
      if (values.some((v) => v !== null)) add(label, values, "ppl");
    }
    const held = r.map((x) => (x && x.heldout ? x.heldout.after.recover ?? x.heldout.pruned : null));
    if (held.some((v) => v !== null)) add("held-out perplexity, final", held);
    add("sparsity (pruned modules)", r.map((x) => (x ? PS.pct(x.sparsity) : "n/a")));
    add("sparsity (all decoder weights)", r.map((x) => (x ? PS.pct(x.decoder_sparsity) : "n/a")));
    add("N:M pattern", r.map((x) => (!x || x.nm_ok === null ? "—" : x.nm_ok ? "ok" : "BROKEN")));
    add("time (stages, s)", r.map((x) => (x ?
      Object.values(x.stages_s).reduce((a, b) => a + b, 0).toFixed(1) : "n/a")));
    add("wall time (s)", items.map(({ job }) => (job.started_at && job.finished_at ?
      ((new Date(job.finished_at) - new Date(job.started_at)) / 1000).toFixed(1) : "n/a")));
    add("peak RSS (MB)", r.map((x) => (x ? x.peak_rss_mb.toFixed(0) : "n/a")));
    return out;
  }

  PS.compareView = function (view, ids) {
    view.replaceChildren(el("p", {}, "Loading…"));
    PS.repeat(async () => {
      const items = await Promise.all(ids.map(load));
      const head = ["", ...items.map(({ job }) => el("a", { href: "#/job/" + job.id,
        class: "mono" }, job.id))];
      view.replaceChildren(el("h1", {}, `Compare ${items.length} jobs`),
        PS.table(head, rows(items), "compare-table"),
        el("p", {}, "Highlighted rows are the spec fields that differ."));
      return items.some(({ job }) => !PS.terminal(job.state));
    }, 2000);
  };
})();
