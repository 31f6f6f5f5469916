// The query console: asks this gateway a GraphQL question with the researcher's identity
// token and permits, and shows the protected answer as tables. No framework, no other origin:
// the page's Content-Security-Policy allows this script, its style sheet and requests to the
// gateway only. Credentials live in this tab's sessionStorage and go nowhere but /graphql.
"use strict";

(function () {
  const KEYS = {
    bearer: "tessera.console.bearer",
    permits: "tessera.console.permits",
    query: "tessera.console.query",
  };
  const PERMIT_HEADER = "X-Tessera-Permit";
  // Said by the count itself (its ± sd, the countries it pools): not repeated as reasons.
  const SHOWN_BY_THE_COUNT = new Set(["NOISE", "SECURE_POOL"]);
  const MAX_CELLS_SHOWN = 500;

  const $ = (id) => document.getElementById(id);
  const bearer = $("bearer");
  const permits = $("permits");
  const query = $("query");
  const run = $("run");
  const status = $("status");
  const summary = $("summary");
  const raw = $("response");

  function element(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function setState(state) {
    document.body.dataset.state = state;
  }

  function setStatus(text, isError) {
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  // -- credentials ------------------------------------------------------------------------
  function permitTokens() {
    return permits.value.split(/[\s,]+/).filter((token) => token.length > 0);
  }

  function claims(token) {
    // Read, not verified: only to tell the researcher which permit is which.
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const padded = part + "=".repeat((4 - (part.length % 4)) % 4);
      const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (error) {
      return null;
    }
  }

  function until(seconds) {
    if (typeof seconds !== "number") return "";
    const when = new Date(seconds * 1000);
    const expired = when.getTime() < Date.now() ? " (expired)" : "";
    return `valid until ${when.toISOString().slice(0, 16).replace("T", " ")} UTC${expired}`;
  }

  function describeCredentials() {
    const list = $("permit-list");
    list.replaceChildren();
    const identity = bearer.value.trim() ? claims(bearer.value.trim()) : null;
    if (identity) {
      list.append(
        element("li", `identity: ${identity.sub || "?"} from ${identity.iss || "?"}; ${until(identity.exp)}`),
      );
    } else if (bearer.value.trim()) {
      list.append(element("li", "identity: not a JWT", "errors"));
    }
    for (const token of permitTokens()) {
      const c = claims(token);
      const approval = c && c.approval;
      if (!approval) {
        list.append(element("li", `permit ${token.slice(0, 12)}…: no approval in it`, "errors"));
        continue;
      }
      const where = (approval.jurisdictions || []).join(", ");
      list.append(
        element("li", `permit for ${where}: ${approval.request_id} from ${c.iss}; ${until(c.exp)}`),
      );
    }
  }

  function saveCredentials() {
    sessionStorage.setItem(KEYS.bearer, bearer.value.trim());
    sessionStorage.setItem(KEYS.permits, permitTokens().join("\n"));
    describeCredentials();
  }

  async function readFiles(files) {
    const texts = [];
    for (const file of files) texts.push((await file.text()).trim());
    return texts.filter((text) => text.length > 0);
  }

  async function demoCredentials() {
    // Only a gateway running as the demo has them; any other says {"demo": false} and the
    // researcher brings their own.
    try {
      const response = await fetch("console/demo-credentials.json", {
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (!response.ok) return null;
      return await response.json();
    } catch (error) {
      return null;
    }
  }

  async function loadCredentials() {
    bearer.value = sessionStorage.getItem(KEYS.bearer) || "";
    permits.value = sessionStorage.getItem(KEYS.permits) || "";
    if (!bearer.value) {
      const demo = await demoCredentials();
      if (demo && demo.demo === true && typeof demo.bearer === "string") {
        bearer.value = demo.bearer;
        permits.value = (demo.permits || []).join("\n");
        $("credentials-note").textContent =
          "Pre-filled with the demo researcher's identity token and one permit per country " +
          "(this gateway runs as the demo). Kept in this browser tab only.";
        saveCredentials();
      }
    }
    describeCredentials();
  }

  // -- the answer -------------------------------------------------------------------------
  function formatNumber(value) {
    return Number(value).toLocaleString("en-US");
  }

  function formatCount(count) {
    if (!count) return "—";
    const { value, status: state, sd } = count;
    if (value === null || value === undefined) return state === "LOW" ? "low" : "suppressed";
    if (sd !== null && sd !== undefined) {
      return `${formatNumber(value)} ±${sd >= 10 ? sd.toFixed(0) : sd.toFixed(1)}`;
    }
    return !state || state === "EXACT" ? formatNumber(value) : `${formatNumber(value)} (${state.toLowerCase()})`;
  }

  function reasonsText(reasons) {
    return (reasons || [])
      .filter((r) => !SHOWN_BY_THE_COUNT.has(r.rule))
      .map((r) => `${r.jurisdiction ? r.jurisdiction + ": " : ""}${r.rule || ""} ${r.message || ""}`.trim())
      .join("; ");
  }

  function formatSpend(privacy) {
    if (!privacy) return "";
    const f = (x) => Number(x || 0).toFixed(2);
    return `+${f(privacy.questionRho)} → ${f(privacy.spentRho)} of ${f(privacy.capRho)}`;
  }

  function table(headers, rows, numeric) {
    const t = element("table");
    const head = element("tr");
    headers.forEach((h) => head.append(element("th", h)));
    t.append(element("thead"));
    t.tHead.append(head);
    const body = element("tbody");
    for (const row of rows) {
      const tr = element("tr");
      row.forEach((cell, i) => {
        const td = element("td", cell.text !== undefined ? cell.text : cell);
        if (numeric.has(i)) td.classList.add("num");
        if (cell.className) td.classList.add(cell.className);
        tr.append(td);
      });
      body.append(tr);
    }
    t.append(body);
    return t;
  }

  // Each country's latency class (public, no token: `jurisdictions { code latency }`), shown
  // beside its node's latency: a batch hub (Spark) is waited for longer.
  const latencyClasses = {};
  async function loadLatencyClasses() {
    try {
      const response = await fetch("graphql", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ query: "{ jurisdictions { code latency } }" }),
        cache: "no-store",
      });
      const body = await response.json();
      for (const j of (body.data && body.data.jurisdictions) || []) {
        latencyClasses[j.code] = String(j.latency).toLowerCase();
      }
    } catch (error) {
      // Without them the table shows the times alone.
    }
  }

  function formatLatency(node) {
    const time = typeof node.latencyMs === "number" ? `${node.latencyMs.toFixed(0)} ms` : "";
    const latency = latencyClasses[node.jurisdiction];
    return latency ? `${time} (${latency})`.trim() : time;
  }

  function renderCohort(name, result) {
    const part = element("div", null, "cohort");
    part.append(element("h3", name));
    if ("count" in result) {
      const count = result.count || {};
      const line = element("p", null, "pooled");
      line.append("pooled count: ", element("strong", formatCount(result.count)));
      if (count.contributors && count.contributors.length) {
        line.append(`  (pooled securely: ${count.contributors.join(", ")})`);
      }
      part.append(line);
      const why = reasonsText(count.reasons);
      if (why) part.append(element("p", `why: ${why}`, "why"));
    }
    const nodes = result.byJurisdiction;
    if (Array.isArray(nodes) && nodes.length) {
      const rows = nodes.map((n) => [
        n.jurisdiction || "",
        { text: n.status || "", className: `status-${n.status}` },
        formatCount(n.count),
        formatLatency(n),
        formatSpend(n.privacy),
        reasonsText((n.count || {}).reasons) || reasonsText(n.reasons),
      ]);
      part.append(table(["country", "node", "count", "latency", "privacy ρ", "reasons"], rows, new Set([2, 3])));
    }
    for (const [key, value] of Object.entries(result)) {
      if (!value || typeof value !== "object" || !Array.isArray(value.cells)) continue;
      const cells = value.cells;
      part.append(element("h3", `${key} (${cells.length} cells)`));
      if (!cells.length) continue;
      const dims = (cells[0].dimensions || []).map((d) => d.name);
      const rows = cells
        .slice(0, MAX_CELLS_SHOWN)
        .map((c) => [...(c.dimensions || []).map((d) => d.value), formatCount(c.count)]);
      part.append(table([...dims, "count"], rows, new Set([dims.length])));
      if (cells.length > MAX_CELLS_SHOWN) {
        part.append(element("p", `… ${cells.length - MAX_CELLS_SHOWN} more cells (see the JSON)`, "note"));
      }
    }
    return part;
  }

  function render(body) {
    summary.replaceChildren();
    const errors = Array.isArray(body.errors) ? body.errors : [];
    if (errors.length) {
      const list = element("ul", null, "errors");
      for (const error of errors) {
        const code = (error.extensions || {}).code;
        list.append(element("li", `${code ? code + ": " : ""}${error.message || ""}`));
      }
      summary.append(list);
    }
    const data = body.data && typeof body.data === "object" ? body.data : {};
    let shown = false;
    for (const [name, result] of Object.entries(data)) {
      if (result && typeof result === "object" && !Array.isArray(result)) {
        summary.append(renderCohort(name, result));
        shown = true;
      }
    }
    if (!shown && !errors.length) {
      summary.append(element("p", "The answer has no cohort to tabulate: see the JSON below.", "note"));
      $("raw").open = true;
    }
  }

  async function ask() {
    saveCredentials();
    sessionStorage.setItem(KEYS.query, query.value);
    const headers = new Headers({ "Content-Type": "application/json", Accept: "application/json" });
    const token = bearer.value.trim();
    if (token) headers.set("Authorization", `Bearer ${token}`);
    // Several values of one header travel comma-separated, which the gateway reads as
    // one permit each.
    for (const permit of permitTokens()) headers.append(PERMIT_HEADER, permit);
    run.disabled = true;
    setState("asking");
    setStatus("asking…");
    const started = performance.now();
    try {
      const response = await fetch("graphql", {
        method: "POST",
        headers,
        body: JSON.stringify({ query: query.value }),
        cache: "no-store",
      });
      const text = await response.text();
      const elapsed = Math.round(performance.now() - started);
      let body;
      try {
        body = JSON.parse(text);
      } catch (error) {
        raw.textContent = text;
        summary.replaceChildren(element("p", `The gateway answered HTTP ${response.status}, not JSON.`, "errors"));
        setStatus(`HTTP ${response.status}`, true);
        setState("failed");
        return;
      }
      raw.textContent = JSON.stringify(body, null, 2);
      render(body);
      const failed = Array.isArray(body.errors) && body.errors.length > 0;
      setStatus(`answered in ${elapsed} ms (HTTP ${response.status})`, failed);
      setState(failed ? "refused" : "answered");
    } catch (error) {
      summary.replaceChildren(element("p", `The gateway could not be reached: ${error.message}`, "errors"));
      setStatus("not reached", true);
      setState("failed");
    } finally {
      run.disabled = false;
    }
  }

  // -- wiring -----------------------------------------------------------------------------
  $("endpoint").textContent = new URL("graphql", document.baseURI).href;
  query.value = sessionStorage.getItem(KEYS.query) || query.defaultValue;
  run.addEventListener("click", ask);
  $("reset").addEventListener("click", () => {
    query.value = query.defaultValue;
    sessionStorage.removeItem(KEYS.query);
  });
  query.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      ask();
    }
  });
  bearer.addEventListener("change", saveCredentials);
  permits.addEventListener("change", saveCredentials);
  $("bearer-file").addEventListener("change", async (event) => {
    const [text] = await readFiles(event.target.files);
    if (text) bearer.value = text;
    event.target.value = "";
    saveCredentials();
  });
  $("permit-files").addEventListener("change", async (event) => {
    const texts = await readFiles(event.target.files);
    permits.value = [...permitTokens(), ...texts].join("\n");
    event.target.value = "";
    saveCredentials();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEYS.bearer);
    sessionStorage.removeItem(KEYS.permits);
    bearer.value = "";
    permits.value = "";
    describeCredentials();
  });
  Promise.all([loadCredentials(), loadLatencyClasses()]).then(() => setState("ready"));
})();
