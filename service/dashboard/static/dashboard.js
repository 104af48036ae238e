// The fabric dashboard: asks for a token, keeps it in sessionStorage (this tab only), and
// reads GET /v1/dashboard with it every REFRESH_MS. Data is written as text nodes and SVG
// attributes only, never as HTML. No build step, no outside resources.
"use strict";
(function () {
  const REFRESH_MS = 3000;
  const KEY = "fabric-token";
  const $ = (id) => document.getElementById(id);
  let timer = null;
  const opened = new Set();  // failures whose traceback the user opened: kept open across refreshes

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function row(cells) {
    const tr = document.createElement("tr");
    for (const cell of cells) {
      const td = document.createElement("td");
      if (cell instanceof Node) td.appendChild(cell); else td.textContent = cell === null || cell === undefined ? "-" : String(cell);
      tr.appendChild(td);
    }
    return tr;
  }
  function when(seconds) {
    return seconds ? new Date(seconds * 1000).toLocaleTimeString() : "-";
  }
  function fill(tableId, emptyId, rows) {
    const body = $(tableId).querySelector("tbody");
    body.replaceChildren(...rows);
    $(tableId).hidden = rows.length === 0;
    $(emptyId).hidden = rows.length !== 0;
  }

  function showEndpoints(endpoints) {
    fill("endpoints", "no-endpoints", endpoints.map((e) => {
      const tr = row([e.name, el("span", e.online ? "online" : "offline", e.online ? "online" : "offline"),
                      e.managers, e.workers, e.load === null ? "-" : e.load,
                      `${e.outstanding} running, ${e.waiting} waiting`, e.hostname, e.access]);
      tr.dataset.endpointId = e.endpoint_id;
      return tr;
    }));
  }
  function progress(group) {
    const bar = el("span", null, "bar");
    const total = Math.max(group.tasks, 1);
    const done = el("span"), failed = el("span", null, "failed");
    done.style.width = `${(100 * (group.finished - group.failed)) / total}%`;
    failed.style.width = `${(100 * group.failed) / total}%`;
    bar.append(done, failed);
    const box = el("span");
    box.append(bar, ` ${group.finished}/${group.tasks}`);
    return box;
  }
  function showGroups(groups) {
    fill("groups", "no-groups", groups.map((g) => row([g.task_group_id, progress(g), g.finished - g.failed - g.cancelled,
                                                        g.failed, g.cancelled, when(g.created)])));
  }
  function showFailures(failures) {
    const items = failures.map((f) => {
      const details = el("details");
      details.open = opened.has(f.task_id);
      details.addEventListener("toggle", () => {
        if (details.open) opened.add(f.task_id); else opened.delete(f.task_id);
      });
      details.appendChild(el("summary", `${when(f.completed)} task ${f.task_id}: ${f.error || "failed"}`));
      details.appendChild(el("pre", f.traceback || "(no traceback)"));
      return details;
    });
    $("failures").replaceChildren(...items);
    $("no-failures").hidden = items.length !== 0;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function chart(id, values) {
    const width = 600, height = 160, left = 46, bottom = 20, top = 8;
    const known = values.map((v) => (v === null ? 0 : v));
    const max = Math.max(...known, 0) || 1;
    const x = (i) => left + ((width - left - 4) * i) / Math.max(values.length - 1, 1);
    const y = (v) => top + (height - top - bottom) * (1 - v / max);
    const points = known.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    $(id).replaceChildren(
      svg("line", {class: "axis", x1: left, y1: height - bottom, x2: width, y2: height - bottom}),
      svg("line", {class: "axis", x1: left, y1: top, x2: left, y2: height - bottom}),
      svg("text", {x: 2, y: top + 10}, max.toPrecision(3)),
      svg("text", {x: 2, y: height - bottom}, "0"),
      svg("text", {x: left, y: height - 4}, "-60 min"),
      svg("text", {x: width - 30, y: height - 4}, "now"),
      svg("polyline", {class: "line", points: points}));
  }

  function logout(message) {
    sessionStorage.removeItem(KEY);
    if (timer) clearTimeout(timer);
    $("board").hidden = true;
    $("login").hidden = false;
    $("logout").hidden = true;
    $("who").textContent = "";
    $("login-error").textContent = message || "";
  }

  async function refresh() {
    const token = sessionStorage.getItem(KEY);
    if (!token) return logout();
    let reply;
    try {
      reply = await fetch("/v1/dashboard", {headers: {Authorization: `Bearer ${token}`}, cache: "no-store"});
    } catch (error) {
      $("status").textContent = `cannot reach the service (${error}); retrying`;
      timer = setTimeout(refresh, REFRESH_MS);
      return;
    }
    if (reply.status === 401) return logout("That token is not valid.");
    if (!reply.ok) {
      $("status").textContent = `the service answered ${reply.status}; retrying`;
      timer = setTimeout(refresh, REFRESH_MS);
      return;
    }
    const data = await reply.json();
    $("login").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = false;
    $("who").textContent = `logged in as ${data.user}`;
    showEndpoints(data.endpoints);
    showGroups(data.task_groups);
    showFailures(data.failures);
    chart("rate-chart", data.series.tasks_per_second);
    chart("latency-chart", data.series.round_trip_seconds);
    $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.refreshed = String(Date.now());
    timer = setTimeout(refresh, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, $("token").value.trim());
      $("token").value = "";
      refresh();
    });
    $("logout").addEventListener("click", () => logout());
    if (sessionStorage.getItem(KEY)) refresh();
  });
})();
