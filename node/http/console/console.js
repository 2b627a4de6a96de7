// Rill console: a read-only view of the cluster, drawn from the node's JSON API (/api/...).
// Hand-written, no build step, no external resources. Views are chosen by the URL's hash
// (#/topics/orders, ...); every view but the message browser is fetched again every POLL_MS.

const POLL_MS = 3000;
const view = document.getElementById("view");
let timer = null;
let drawing = 0; // the number of the latest draw: an older one that finishes late is dropped

// ---- small helpers ---------------------------------------------------------------------------

/** An element with attributes (class, id, href, data-*, ...) and children (strings, nodes; null skipped). */
function el(tag, attributes = {}, ...children) {
  const node = tag === "svg" || SVG_TAGS.has(tag)
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}
const SVG_TAGS = new Set(["polyline", "circle", "line", "text", "title"]);

class ApiError extends Error {}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  let body;
  try {
    body = await response.json();
  } catch {
    body = { error: `${response.status} ${response.statusText}` };
  }
  if (!response.ok) throw new ApiError(body.error || `${response.status} ${response.statusText}`);
  return body;
}

const path = (...parts) => parts.map(encodeURIComponent).join("/");
const known = (value) => value !== null && value !== undefined;
const number = (value) => (known(value) ? value.toLocaleString("en-US") : "–");
const rate = (value) => (known(value) ? `${value.toFixed(value < 10 ? 1 : 0)}/s` : "…");
const time = (ms) => new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC");

function bytes(value) {
  if (!known(value)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < units.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${size} B` : `${size.toFixed(1)} ${units[unit]}`;
}

const badge = (text, kind = "") => el("span", { class: `badge ${kind}` }, text);
const card = (label, figure, id = null) =>
  el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "figure", id }, figure));

function table(headings, rows, attributes = {}) {
  return el("table", attributes,
    el("thead", {}, el("tr", {}, headings.map(([text, kind]) => el("th", { class: kind }, text)))),
    el("tbody", {}, rows));
}
const cell = (content, kind = null) => el("td", { class: kind }, content);
const numberCell = (content) => cell(content, "number");

// ---- cluster ---------------------------------------------------------------------------------------

async function clusterView() {
  const cluster = await api("/api/cluster");
  document.getElementById("served-by").textContent =
    `cluster ${cluster.cluster_id} · served by node ${cluster.serving_node_id}`;
  const answering = cluster.brokers.filter((broker) => broker.answers).length;
  const rows = cluster.brokers.map((broker) => {
    const status = broker.status || {};
    const health = broker.answers ? badge("answers", "ok") : badge("no answer", "bad");
    const membership = !broker.registered ? badge("not registered", "warn")
      : broker.fenced ? badge("fenced", "bad") : badge("live", "ok");
    return el("tr", { "data-node": broker.node_id },
      cell(broker.node_id === cluster.controller_id ? [String(broker.node_id), " ", badge("controller")]
        : String(broker.node_id)),
      cell(`${broker.host}:${broker.port}`), cell(health), cell(membership),
      cell(status.raft_role || "–"), numberCell(number(status.partitions)),
      numberCell(number(status.partitions_led)), numberCell(number(status.under_replicated)),
      cell((status.offline_partitions || []).join(", ") || "–"),
      numberCell(known(status.loop_lag_ms_p99) ? `${status.loop_lag_ms_p99.toFixed(1)} ms` : "–"));
  });
  return [
    el("h1", {}, "Cluster"),
    el("div", { class: "cards" },
      card("Controller", cluster.controller_id >= 0 ? `node ${cluster.controller_id}` : "none"),
      card("Brokers answering", `${answering} / ${cluster.brokers.length}`),
      card("Topics", number(cluster.topics)), card("Partitions", number(cluster.partitions)),
      card("Under-replicated", number(cluster.under_replicated)), card("Offline", number(cluster.offline))),
    el("h2", {}, "Brokers"),
    table([["Node"], ["Address"], ["Health"], ["Membership"], ["Raft role"], ["Replicas", "number"],
      ["Leads", "number"], ["Under-replicated", "number"], ["Offline replicas"], ["Loop lag p99", "number"]],
    rows, { id: "brokers-table" }),
  ];
}

// ---- topics ----------------------------------------------------------------------------------------

async function topicsView() {
  const { topics } = await api("/api/topics");
  const showInternal = localStorage.getItem("rill.showInternal") === "yes";
  const toggle = el("input", { type: "checkbox", id: "show-internal", checked: showInternal });
  toggle.addEventListener("change", () => {
    localStorage.setItem("rill.showInternal", toggle.checked ? "yes" : "no");
    draw();
  });
  const rows = topics.filter((topic) => showInternal || !topic.internal).map((topic) =>
    el("tr", { "data-topic": topic.name },
      cell(el("a", { href: `#/topics/${path(topic.name)}` }, topic.name)),
      numberCell(topic.partition_count), numberCell(topic.replication_factor),
      numberCell(topic.under_replicated ? badge(String(topic.under_replicated), "warn") : "0"),
      numberCell(topic.offline ? badge(String(topic.offline), "bad") : "0"),
      numberCell(number(topic.messages)), numberCell(bytes(topic.size_bytes)),
      numberCell(rate(topic.in_rate)), numberCell(rate(topic.out_rate))));
  return [
    el("h1", {}, "Topics"),
    el("label", {}, toggle, " show internal topics"),
    table([["Topic"], ["Partitions", "number"], ["Replication", "number"], ["Under-replicated", "number"],
      ["Offline", "number"], ["Messages", "number"], ["Size", "number"], ["In", "number"], ["Out", "number"]],
    rows.length ? rows : [el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No topics yet."))],
    { id: "topics-table" }),
    el("p", { class: "muted" }, "In: records appended per second. Out: records handed to consumers per second. " +
      "Rates appear from the second refresh on."),
  ];
}

async function topicView(name) {
  const topic = await api(`/api/topics/${path(name)}`);
  const rows = topic.partitions.map((partition) =>
    el("tr", { "data-partition": partition.partition },
      numberCell(el("a", { href: `#/topics/${path(name)}/messages?partition=${partition.partition}` },
        String(partition.partition))),
      numberCell(partition.leader >= 0 ? partition.leader : badge("offline", "bad")),
      cell(partition.replicas.join(", ")),
      cell([partition.isr.join(", "), " ", partition.under_replicated ? badge("under-replicated", "warn") : null]),
      numberCell(number(partition.log_start_offset)), numberCell(number(partition.high_watermark)),
      numberCell(bytes(partition.size_bytes)), numberCell(rate(partition.in_rate))));
  const config = Object.entries(topic.config).map(([key, value]) => el("tr", {}, cell(key), cell(value)));
  return [
    el("h1", {}, `Topic ${name}`),
    el("p", {}, el("a", { href: `#/topics/${path(name)}/messages`, id: "browse-link" }, "Browse messages →")),
    el("div", { class: "cards" },
      card("Partitions", number(topic.partition_count)), card("Messages", number(topic.messages)),
      card("Size", bytes(topic.size_bytes)), card("In", rate(topic.in_rate)), card("Out", rate(topic.out_rate))),
    table([["Partition", "number"], ["Leader", "number"], ["Replicas"], ["ISR"], ["Log start", "number"],
      ["High watermark", "number"], ["Size", "number"], ["In", "number"]], rows,
    { id: "partitions-table" }),
    configDetails(config),
  ];
}

let configOpen = false; // the configuration stays open across refreshes once opened

function configDetails(rows) {
  const details = el("details", { open: configOpen }, el("summary", {}, `Configuration (${rows.length} settings)`),
    table([["Setting"], ["Value"]], rows));
  details.addEventListener("toggle", () => { configOpen = details.open; });
  return details;
}

// ---- message browser -------------------------------------------------------------------------------

function preview(shown) {
  if (shown === null) return el("span", { class: "muted" }, "null");
  const text = shown.encoding === "hex" ? hexLines(shown.data) : shown.data;
  const note = shown.truncated ? `, truncated: ${bytes(shown.size)} in all` : `, ${bytes(shown.size)}`;
  return el("div", { class: "preview" },
    el("pre", { class: shown.encoding, "data-encoding": shown.encoding }, text),
    el("div", { class: "meta" }, `${shown.encoding}${note}`));
}

/** Hex in rows of 16 bytes, bytes separated by spaces. */
function hexLines(hex) {
  const lines = [];
  for (let start = 0; start < hex.length; start += 32) {
    lines.push((hex.slice(start, start + 32).match(/../g) || []).join(" "));
  }
  return lines.join("\n");
}

async function messagesView(name, query) {
  const topic = await api(`/api/topics/${path(name)}`);
  const page = await api(`/api/topics/${path(name)}/messages?${query}`).catch((error) => error);
  const form = browseForm(name, topic, query);
  if (page instanceof Error) return [el("h1", {}, `Messages of ${name}`), form, el("div", { class: "error" }, page.message)];
  const rows = page.messages.map((message) =>
    el("tr", { class: "message", "data-offset": message.offset },
      numberCell(message.offset), cell(time(message.timestamp)), cell(preview(message.key), "key"),
      cell(preview(message.value), "value"),
      cell(Object.entries(message.headers).map(([header, value]) =>
        el("div", { class: "header" }, el("strong", {}, header), preview(value))), "headers")));
  const holds = page.high_watermark > page.log_start_offset
    ? `holds offsets ${number(page.log_start_offset)} to ${number(page.high_watermark - 1)}` : "is empty";
  return [
    el("h1", {}, `Messages of ${name}`), form,
    el("p", { class: "muted", id: "page-summary" },
      `Partition ${page.partition} ${holds}. Showing ${page.messages.length} record(s), ` +
      (page.order === "newest" ? "newest first." : "oldest first.")),
    page.error ? el("div", { class: "error" }, page.error) : null,
    pager(name, page),
    table([["Offset", "number"], ["Timestamp"], ["Key"], ["Value"], ["Headers"]],
      rows.length ? rows : [el("tr", {}, el("td", { colspan: 5, class: "muted" }, "No records here."))],
      { id: "messages-table" }),
  ];
}

function browseForm(name, topic, query) {
  const params = new URLSearchParams(query);
  const partition = el("select", { name: "partition", id: "browse-partition" },
    topic.partitions.map((p) => el("option", { value: p.partition, selected: String(p.partition) === (params.get("partition") || "0") },
      `partition ${p.partition}`)));
  const offset = el("input", { type: "number", min: 0, name: "offset", id: "browse-offset", value: params.get("offset") });
  const moment = el("input", { type: "datetime-local", step: 1, name: "time", id: "browse-time" });
  const limit = el("input", { type: "number", min: 1, max: 100, name: "limit", value: params.get("limit") || 20 });
  const form = el("form", { class: "browse" },
    el("label", {}, "Partition", partition), el("label", {}, "From offset", offset),
    el("label", {}, "or from time (local)", moment), el("label", {}, "Records (max 100)", limit),
    el("button", { type: "submit", id: "browse-go" }, "Show"),
    el("button", { type: "button", id: "browse-newest" }, "Newest"));
  const go = (values) => { location.hash = `#/topics/${path(name)}/messages?${new URLSearchParams(values)}`; };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = { partition: partition.value, limit: limit.value };
    if (offset.value !== "") values.offset = offset.value;
    else if (moment.value !== "") values.timestamp = String(new Date(moment.value).getTime());
    go(values);
  });
  form.querySelector("#browse-newest").addEventListener("click", () => go({ partition: partition.value, limit: limit.value }));
  return form;
}

function pager(name, page) {
  const offsets = page.messages.map((message) => message.offset);
  if (!offsets.length) return null;
  const first = Math.min(...offsets);
  const last = Math.max(...offsets);
  const link = (text, offset, id) => el("a", {
    id, href: `#/topics/${path(name)}/messages?${new URLSearchParams({ partition: page.partition, offset, limit: page.limit })}`,
  }, text);
  return el("div", { class: "pager" },
    first > page.log_start_offset ? link("← Older", Math.max(page.log_start_offset, first - page.limit), "page-older") : null,
    last + 1 < page.high_watermark ? link("Newer →", last + 1, "page-newer") : null);
}

// ---- consumer groups ---------------------------------------------------------------------------------

async function groupsView() {
  const { groups } = await api("/api/groups");
  const rows = groups.map((group) =>
    el("tr", { "data-group": group.group_id },
      cell(el("a", { href: `#/groups/${path(group.group_id)}` }, group.group_id)),
      cell(badge(group.state, group.state === "Stable" ? "ok" : group.state === "Empty" ? "" : "warn")),
      numberCell(group.members)));
  return [
    el("h1", {}, "Consumer groups"),
    table([["Group"], ["State"], ["Members", "number"]],
      rows.length ? rows : [el("tr", {}, el("td", { colspan: 3, class: "muted" }, "No consumer groups yet."))],
      { id: "groups-table" }),
  ];
}

async function groupView(groupId) {
  const group = await api(`/api/groups/${path(groupId)}`);
  const members = group.members.map((member) =>
    el("tr", {}, cell(member.member_id), cell(member.client_id), numberCell(member.member_epoch),
      cell(member.subscribed_pattern || member.subscribed_topics.join(", ")),
      cell(member.assignment.map((tp) => `${tp.topic}-${tp.partition}`).join(", ") || "–")));
  const partitions = group.partitions.map((p) =>
    el("tr", { "data-partition": `${p.topic}-${p.partition}` }, cell(p.topic), numberCell(p.partition),
      numberCell(number(p.committed_offset)), numberCell(number(p.log_end_offset)), numberCell(number(p.lag)),
      numberCell(known(p.lag_seconds) ? `${p.lag_seconds.toFixed(1)} s` : "–")));
  return [
    el("h1", {}, `Group ${groupId}`),
    el("div", { class: "cards" },
      card("Total lag", number(group.total_lag), "total-lag"), card("State", group.state),
      group.lag_state ? card("Lag state", group.lag_state) : null,
      card("Members", number(group.members.length)), card("Epoch", number(group.group_epoch)),
      card("Assignor", group.assignor || "–")),
    el("h2", {}, "Lag over time"),
    lagChart(group.lag_history),
    el("h2", {}, "Lag per partition"),
    table([["Topic"], ["Partition", "number"], ["Committed", "number"], ["Log end", "number"], ["Lag", "number"],
      ["Lag (time)", "number"]], partitions, { id: "lag-table" }),
    el("h2", {}, "Members"),
    members.length ? table([["Member"], ["Client"], ["Epoch", "number"], ["Subscription"], ["Assignment"]], members)
      : el("p", { class: "muted" }, "No members: nobody consumes as this group now."),
  ];
}

/** Total lag over time as an SVG line: samples are [time ms, lag], oldest first. */
function lagChart(samples) {
  if (!samples.length) return el("p", { class: "muted" }, "No lag samples yet.");
  const width = 720;
  const height = 180;
  const pad = { left: 56, right: 12, top: 12, bottom: 24 };
  const start = samples[0][0];
  const span = Math.max(1, samples[samples.length - 1][0] - start);
  const top = Math.max(1, ...samples.map(([, lag]) => lag));
  const x = (t) => pad.left + ((t - start) / span) * (width - pad.left - pad.right);
  const y = (lag) => height - pad.bottom - (lag / top) * (height - pad.top - pad.bottom);
  const points = samples.map(([t, lag]) => `${x(t).toFixed(1)},${y(lag).toFixed(1)}`).join(" ");
  const minutes = (span / 60000).toFixed(1);
  return el("svg", { class: "lag-chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "data-samples": samples.length },
  el("title", {}, `Total lag, ${samples.length} samples over ${minutes} min`),
  el("line", { x1: pad.left, y1: y(0), x2: width - pad.right, y2: y(0) }),
  el("line", { x1: pad.left, y1: y(top), x2: width - pad.right, y2: y(top) }),
  el("text", { x: pad.left - 6, y: y(top) + 4, "text-anchor": "end" }, number(top)),
  el("text", { x: pad.left - 6, y: y(0) + 4, "text-anchor": "end" }, "0"),
  el("text", { x: pad.left, y: height - 6 }, samples.length > 1 ? `${minutes} min ago` : "sampling while this page is open"),
  el("text", { x: width - pad.right, y: height - 6, "text-anchor": "end" }, "now"),
  samples.length > 1 ? el("polyline", { points }) : null,
  samples.map(([t, lag]) => el("circle", { cx: x(t).toFixed(1), cy: y(lag).toFixed(1), r: 2.5 })));
}

// ---- schema registry -----------------------------------------------------------------------------

async function schemasView() {
  const { subjects } = await api("/api/schemas");
  const rows = subjects.map((subject) =>
    el("tr", { "data-subject": subject.subject },
      cell(el("a", { href: `#/schemas/${path(subject.subject)}` }, subject.subject)), cell(subject.compatibility),
      cell(subject.versions.join(", ")), numberCell(subject.latest_id)));
  return [
    el("h1", {}, "Schema registry"),
    table([["Subject"], ["Compatibility"], ["Versions"], ["Latest id", "number"]],
      rows.length ? rows : [el("tr", {}, el("td", { colspan: 4, class: "muted" }, "No subjects registered."))],
      { id: "subjects-table" }),
  ];
}

async function subjectView(subject, query) {
  const version = new URLSearchParams(query).get("version");
  const found = await api(`/api/schemas/${path(subject)}${version ? `?version=${encodeURIComponent(version)}` : ""}`);
  const versions = found.versions.map((entry) =>
    el("a", { href: `#/schemas/${path(subject)}?version=${entry.version}`,
      class: entry.version === found.selected.version ? "badge ok" : "badge" }, `v${entry.version} (id ${entry.id})`));
  return [
    el("h1", {}, `Subject ${subject}`),
    el("p", {}, `Compatibility: ${found.compatibility}. Versions: `, versions.flatMap((link) => [link, " "])),
    el("h2", {}, `Version ${found.selected.version}, schema id ${found.selected.id}`),
    el("pre", { id: "schema-text" }, found.selected.schema),
  ];
}

// ---- routing -----------------------------------------------------------------------------------------

/** The view for the URL's hash, and whether it refreshes itself. */
function routeOf(hash) {
  const [route, query = ""] = hash.replace(/^#\/?/, "").split("?");
  const parts = route.split("/").filter(Boolean).map(decodeURIComponent);
  const [section = "cluster", name, sub] = parts;
  if (section === "topics" && name && sub === "messages") return { section, draw: () => messagesView(name, query), poll: false };
  if (section === "topics" && name) return { section, draw: () => topicView(name), poll: true };
  if (section === "topics") return { section, draw: topicsView, poll: true };
  if (section === "groups" && name) return { section, draw: () => groupView(parts.slice(1).join("/")), poll: true };
  if (section === "groups") return { section, draw: groupsView, poll: true };
  if (section === "schemas" && name) return { section, draw: () => subjectView(parts.slice(1).join("/"), query), poll: true };
  if (section === "schemas") return { section, draw: schemasView, poll: true };
  return { section: "cluster", draw: clusterView, poll: true };
}

async function draw() {
  clearTimeout(timer);
  const ticket = ++drawing;
  const route = routeOf(location.hash);
  for (const link of document.querySelectorAll("header nav a")) {
    link.classList.toggle("active", link.dataset.section === route.section);
  }
  let content;
  try {
    content = await route.draw();
  } catch (error) {
    content = [el("div", { class: "error", id: "view-error" }, error instanceof ApiError ? error.message
      : `The console could not reach the node: ${error.message}`)];
  }
  if (ticket !== drawing) return;
  view.replaceChildren(...[content].flat().filter((part) => part !== null && part !== undefined));
  document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  if (route.poll) timer = setTimeout(draw, POLL_MS);
}

window.addEventListener("hashchange", draw);
draw();
