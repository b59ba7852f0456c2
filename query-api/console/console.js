// The operations console: plain JavaScript over the query API's GraphQL (HTTP and the
// graphql-transport-ws websocket) and the command API's REST routes. No build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  // The projections the console watches, by their names in `projectionStatus`.
  const PROJECTIONS = [
    { name: "order_status", label: "Orders" },
    { name: "return_status", label: "Returns" },
  ];
  const PROJECTION_REFRESH_MS = 5000;
  const TOKEN_KEY = "milestone.console.token";
  const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY) || "",
    commandApiUrl: "",
    // What the detail panel shows: { kind, id, subscription, lastRevision, status }.
    shown: null,
  };

  // ---- What the user is told -------------------------------------------------------------

  class ApiError extends Error {
    constructor(message, code) {
      super(message);
      this.code = code;
    }
  }

  function showAlert(message) {
    const alert = $("alert");
    alert.textContent = message;
    alert.hidden = false;
  }

  function clearAlert() {
    const alert = $("alert");
    alert.textContent = "";
    alert.hidden = true;
  }

  function announce(message) {
    $("announcer").textContent = message;
  }

  function refused(status, api) {
    if (status === 401) {
      return `${api} refused the request (401 Unauthorized): the token is missing, expired or not valid. Paste a valid token above.`;
    }
    if (status === 403) {
      return `${api} refused the request (403 Forbidden): this token's role may not do that.`;
    }
    return null;
  }

  function authorization() {
    return state.token ? { Authorization: `Bearer ${state.token}` } : {};
  }

  // ---- The APIs ----------------------------------------------------------------------------

  async function readJson(response) {
    try {
      return await response.json();
    } catch (_) {
      return null;
    }
  }

  async function graphql(query, variables = {}) {
    let response;
    try {
      response = await fetch("/graphql", {
        method: "POST",
        headers: { "content-type": "application/json", ...authorization() },
        body: JSON.stringify({ query, variables }),
      });
    } catch (_) {
      throw new ApiError("The query API cannot be reached: is it running?", "UNREACHABLE");
    }
    const body = await readJson(response);
    const denied = refused(response.status, "The query API");
    if (denied) throw new ApiError(denied, `HTTP_${response.status}`);
    const error = body && body.errors && body.errors[0];
    if (error) {
      const code = (error.extensions && error.extensions.code) || "ERROR";
      if (code === "UNAUTHENTICATED") throw new ApiError(refused(401, "The query API"), code);
      if (code === "FORBIDDEN") throw new ApiError(refused(403, "The query API"), code);
      throw new ApiError(error.message, code);
    }
    if (!response.ok || !body) {
      throw new ApiError(`The query API answered ${response.status}.`, `HTTP_${response.status}`);
    }
    return body.data;
  }

  async function command(path, payload) {
    const base = state.commandApiUrl;
    let response;
    try {
      response = await fetch(`${base}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json", ...authorization() },
        body: JSON.stringify(payload),
      });
    } catch (_) {
      throw new ApiError(
        `The command API at ${base} cannot be reached (it is down, or it does not allow this page's origin).`,
        "UNREACHABLE",
      );
    }
    const body = await readJson(response);
    const denied = refused(response.status, "The command API");
    if (denied) throw new ApiError(denied, `HTTP_${response.status}`);
    if (!response.ok) {
      const why = body && (body.detail || body.title);
      throw new ApiError(
        `The command API refused (${response.status})${why ? `: ${why}` : "."}`,
        (body && body.code) || `HTTP_${response.status}`,
      );
    }
    return body;
  }

  // ---- Live updates: one graphql-transport-ws connection, resubscribed after a reconnect ---

  const live = {
    socket: null,
    acked: false,
    nextId: 1,
    attempts: 0,
    // id -> { query, variables, onData, onError }
    subscriptions: new Map(),

    connect() {
      const url = `${location.origin.replace(/^http/, "ws")}/graphql`;
      const socket = new WebSocket(url, "graphql-transport-ws");
      this.socket = socket;
      this.acked = false;
      setConnection("connecting", "connecting…");
      socket.onopen = () => {
        const payload = state.token ? { Authorization: `Bearer ${state.token}` } : {};
        socket.send(JSON.stringify({ type: "connection_init", payload }));
      };
      socket.onmessage = (event) => {
        if (this.socket === socket) this.receive(JSON.parse(event.data));
      };
      socket.onclose = (event) => {
        if (this.socket !== socket) return;
        this.acked = false;
        if (event.code === 4401 || event.code === 4403) {
          showAlert(refused(event.code - 4000, "The live connection"));
        }
        const wait = Math.min(10000, 500 * 2 ** this.attempts);
        this.attempts += 1;
        setConnection("closed", `disconnected; retrying in ${Math.round(wait / 1000)} s`);
        setTimeout(() => {
          if (this.socket === socket) this.connect();
        }, wait);
      };
    },

    reconnect() {
      const old = this.socket;
      this.socket = null;
      if (old) old.close(1000, "token changed");
      this.attempts = 0;
      this.connect();
    },

    send(message) {
      if (this.socket && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify(message));
      }
    },

    start(id, sub) {
      this.send({ id, type: "subscribe", payload: { query: sub.query, variables: sub.variables } });
    },

    receive(message) {
      const sub = message.id && this.subscriptions.get(message.id);
      switch (message.type) {
        case "connection_ack":
          this.acked = true;
          this.attempts = 0;
          setConnection("open", "connected");
          for (const [id, s] of this.subscriptions) this.start(id, s);
          break;
        case "ping":
          this.send({ type: "pong" });
          break;
        case "next":
          if (!sub) break;
          if (message.payload.errors && message.payload.errors.length) {
            sub.onError(message.payload.errors[0]);
          }
          if (message.payload.data) sub.onData(message.payload.data);
          break;
        case "error":
          if (sub) {
            this.subscriptions.delete(message.id);
            sub.onError((message.payload && message.payload[0]) || { message: "subscription refused" });
          }
          break;
        case "complete":
          if (sub) this.subscriptions.delete(message.id);
          break;
        default:
          break;
      }
    },

    subscribe(query, variables, onData, onError) {
      const id = String(this.nextId++);
      const sub = { query, variables, onData, onError };
      this.subscriptions.set(id, sub);
      if (this.acked) this.start(id, sub);
      return id;
    },

    unsubscribe(id) {
      if (!this.subscriptions.delete(id)) return;
      if (this.acked) this.send({ id, type: "complete" });
    },
  };

  function setConnection(stateName, text) {
    const el = $("connection");
    el.dataset.state = stateName;
    el.textContent = text;
  }

  function liveError(error) {
    const code = error.extensions && error.extensions.code;
    if (code === "UNAUTHENTICATED") showAlert(refused(401, "The live connection"));
    else if (code === "FORBIDDEN") showAlert(refused(403, "The live connection"));
    else showAlert(`Live updates stopped: ${error.message}`);
  }

  // ---- Rendering helpers ---------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function when(iso) {
    if (!iso) return "—";
    return `${iso.replace("T", " ").replace(/\.\d+/, "").replace(/(Z|\+00:00)$/, "")} UTC`;
  }

  function list(values) {
    return values && values.length ? values.join(", ") : "none";
  }

  function money(minor, currency) {
    return `${(minor / 100).toFixed(2)} ${currency}`;
  }

  function facts(pairs) {
    return el(
      "dl",
      { class: "facts" },
      pairs.map(([term, value, id]) => el("div", {}, el("dt", {}, term), el("dd", { id }, value))),
    );
  }

  // ---- Finding and showing one order or return ----------------------------------------------

  const ENTRY =
    "revision eventType occurredAt position correlationId causationId summary principal { subject role client }";
  const TIMELINE = `timeline { ${ENTRY} }`;
  const ORDER_FIELDS = `id status customerId currency totalMinor lastMilestone lastMilestoneAt pendingActions
    failureReason compensationsOwed compensationsDone deadlineAt overdue escalated escalationCount
    escalationReason reminderAttempts lastReminderAt nextReminderAt correlationId revision lastPosition`;
  const RETURN_FIELDS = `orderId status currency reason refundDueMinor refundedMinor lastMilestone
    lastMilestoneAt pendingActions failureReason compensationsOwed compensationsDone deadlineAt overdue
    escalated escalationCount escalationReason reminderAttempts lastReminderAt nextReminderAt
    correlationId revision lastPosition`;

  const KINDS = {
    order: {
      noun: "order",
      query: `query ($id: ID!) { item: order(id: $id) { ${ORDER_FIELDS} ${TIMELINE} return { status } } }`,
      subscription: `subscription ($id: ID!, $after: String) { update: orderUpdated(id: $id, after: $after) {
        token item: order { ${ORDER_FIELDS} } events { ${ENTRY} } } }`,
      escalatePath: (id) => `/orders/${id}/escalate`,
      id: (item) => item.id,
    },
    return: {
      noun: "return",
      query: `query ($id: ID!) { item: return(orderId: $id) { ${RETURN_FIELDS} ${TIMELINE} } }`,
      subscription: `subscription ($id: ID!, $after: String) { update: returnUpdated(orderId: $id, after: $after) {
        token item: return { ${RETURN_FIELDS} } events { ${ENTRY} } } }`,
      escalatePath: (id) => `/returns/${id}/escalate`,
      id: (item) => item.orderId,
    },
  };

  async function find(kind, query) {
    clearAlert();
    const results = $("results");
    results.replaceChildren();
    query = query.trim();
    if (!query) {
      showAlert("Enter an order id or a customer id.");
      $("find-query").focus();
      return;
    }
    try {
      if (UUID.test(query)) {
        await show(kind, query.toLowerCase());
      } else {
        await listCustomer(kind, query);
      }
    } catch (e) {
      showAlert(e.message);
    }
  }

  async function listCustomer(kind, customerId) {
    const data = await graphql(
      `query ($customer: String!) { orders(filter: { customerId: $customer }, first: 20) {
        edges { node { id status lastMilestoneAt return { status } } } } }`,
      { customer: customerId },
    );
    const orders = data.orders.edges.map((e) => e.node);
    const results = $("results");
    if (!orders.length) {
      showAlert(`No orders of customer ${customerId}.`);
      return;
    }
    results.replaceChildren(
      el("h3", {}, `Orders of ${customerId}`),
      el(
        "ul",
        { class: "list" },
        orders.map((o) =>
          el(
            "li",
            { dataset: { id: o.id } },
            el("span", { class: "grow mono" }, o.id),
            el("span", { class: "status" }, o.status),
            o.return ? el("span", {}, `return ${o.return.status}`) : null,
            el("button", { type: "button", class: "secondary", onclick: () => show("order", o.id) }, "Open order"),
            o.return
              ? el("button", { type: "button", class: "secondary", onclick: () => show("return", o.id) }, "Open return")
              : null,
          ),
        ),
      ),
    );
    announce(`${orders.length} orders of ${customerId}.`);
    if (kind === "return" && !orders.some((o) => o.return)) {
      showAlert(`Customer ${customerId} has orders but no returns.`);
    }
  }

  async function show(kind, id) {
    const spec = KINDS[kind];
    const data = await graphql(spec.query, { id });
    if (!data.item) {
      throw new ApiError(`No ${spec.noun} with id ${id}: the projection has not seen it.`, "NOT_FOUND");
    }
    if (state.shown && state.shown.subscription) live.unsubscribe(state.shown.subscription);
    const item = data.item;
    state.shown = { kind, id, lastRevision: -1, status: item.status, subscription: null };
    $("timeline").replaceChildren();
    renderDetail(kind, item);
    appendTimeline(item.timeline, false);
    state.shown.subscription = live.subscribe(
      spec.subscription,
      { id, after: item.lastPosition },
      (update) => onUpdate(kind, id, update.update),
      liveError,
    );
    const section = $("detail");
    section.hidden = false;
    $("detail-title").focus();
    announce(`Showing ${spec.noun} ${id}, status ${item.status}.`);
  }

  function onUpdate(kind, id, update) {
    const shown = state.shown;
    if (!shown || shown.kind !== kind || shown.id !== id) return;
    const sub = live.subscriptions.get(shown.subscription);
    // Resumes after the last update seen if the connection is made again.
    if (sub) sub.variables = { id, after: update.token };
    renderDetail(kind, update.item);
    appendTimeline(update.events, true);
    if (update.item.status !== shown.status) {
      announce(`${KINDS[kind].noun} ${id} is now ${update.item.status}.`);
      shown.status = update.item.status;
    } else if (update.events.length) {
      announce(`${KINDS[kind].noun} ${id}: ${update.events.map((e) => e.eventType).join(", ")}.`);
    }
  }

  function renderDetail(kind, item) {
    const spec = KINDS[kind];
    const id = spec.id(item);
    $("detail-title").textContent = `${kind === "order" ? "Order" : "Return"} ${id}`;
    const deadline = item.deadlineAt
      ? el("span", {}, when(item.deadlineAt), item.overdue ? el("span", { class: "overdue" }, " (overdue)") : null)
      : "none";
    const pairs = [
      ["Status", el("span", { class: "status" }, item.status), "detail-status"],
      ["Pending actions", list(item.pendingActions), "detail-pending"],
      ["Deadline", deadline, "detail-deadline"],
      ["Compensations owed", list(item.compensationsOwed), "detail-owed"],
      ["Compensations done", list(item.compensationsDone), "detail-done"],
      [
        "Escalated",
        item.escalated ? `yes (${item.escalationCount}×)${item.escalationReason ? `: ${item.escalationReason}` : ""}` : "no",
        "detail-escalated",
      ],
      [
        "Reminders",
        `${item.reminderAttempts} sent; last ${when(item.lastReminderAt)}; next ${when(item.nextReminderAt)}`,
        "detail-reminders",
      ],
      ["Last milestone", `${item.lastMilestone} at ${when(item.lastMilestoneAt)}`, "detail-milestone"],
      ["Failure", item.failureReason || "none", "detail-failure"],
      ["Correlation id", el("span", { class: "mono" }, item.correlationId || "—"), "detail-correlation"],
      ["Revision", `${item.revision} (position ${item.lastPosition})`, "detail-revision"],
    ];
    if (kind === "order") {
      pairs.splice(1, 0, ["Customer", item.customerId, "detail-customer"]);
      pairs.splice(2, 0, ["Total", money(item.totalMinor, item.currency), "detail-total"]);
      if (item.return) pairs.push(["Return", item.return.status, "detail-return"]);
    } else {
      pairs.splice(1, 0, ["Reason", item.reason, "detail-reason"]);
      pairs.splice(2, 0, [
        "Refund",
        `${money(item.refundedMinor, item.currency)} of ${money(item.refundDueMinor, item.currency)}`,
        "detail-refund",
      ]);
    }
    const actions = el("p", {});
    if (item.pendingActions.length || item.compensationsOwed.length) {
      actions.append(
        el("button", { type: "button", id: "detail-escalate", onclick: (e) => escalate(kind, id, e.currentTarget) }, `Escalate this ${spec.noun}`),
      );
    }
    if (kind === "order" && state.shown && state.shown.kind === "order") {
      const hasReturn = pairs.some((p) => p[2] === "detail-return");
      if (hasReturn) {
        actions.append(" ", el("button", { type: "button", class: "secondary", onclick: () => show("return", id).catch((e) => showAlert(e.message)) }, "Open its return"));
      }
    }
    $("detail-body").replaceChildren(facts(pairs), actions);
  }

  // Who caused an event, as the command's principal names them: `shop-7 (shop) via web-shop`.
  function who(principal) {
    const client = principal.client ? ` via ${principal.client}` : "";
    return `${principal.subject} (${principal.role})${client}`;
  }

  function appendTimeline(entries, fresh) {
    const shown = state.shown;
    const ol = $("timeline");
    for (const entry of entries) {
      if (entry.revision <= shown.lastRevision) continue;
      shown.lastRevision = entry.revision;
      ol.append(
        el(
          "li",
          { class: fresh ? "new" : null, dataset: { revision: entry.revision } },
          el("div", { class: "what" }, `${entry.eventType}: ${entry.summary}`),
          el(
            "div",
            { class: "meta" },
            `${when(entry.occurredAt)} · revision ${entry.revision} · position ${entry.position} · correlation `,
            el("span", { class: "mono correlation" }, entry.correlationId || "—"),
            entry.causationId ? ` · caused by ${entry.causationId}` : "",
            entry.principal ? " · by " : "",
            entry.principal ? el("span", { class: "principal" }, who(entry.principal)) : "",
          ),
        ),
      );
    }
  }

  // ---- Actions -------------------------------------------------------------------------------

  async function escalate(kind, id, button) {
    clearAlert();
    const reason = $("escalation-reason").value.trim() || "escalated from the operations console";
    button.disabled = true;
    try {
      const outcome = await command(KINDS[kind].escalatePath(id), { reason });
      const recorded = outcome && outcome.events && outcome.events.length;
      announce(recorded ? `${KINDS[kind].noun} ${id} escalated.` : `${KINDS[kind].noun} ${id} was already escalated at this step.`);
    } catch (e) {
      showAlert(e.message);
    } finally {
      button.disabled = false;
    }
  }

  async function retry(id, button) {
    clearAlert();
    button.disabled = true;
    try {
      const data = await graphql(
        `mutation ($id: ID!) { retryParked(id: $id) { id projections eventsApplied } }`,
        { id },
      );
      const r = data.retryParked;
      announce(`${r.id}: ${r.eventsApplied} parked events applied in ${r.projections.join(", ")}; no longer parked.`);
      await refreshProjections();
    } catch (e) {
      showAlert(e.code === "NOT_PARKED" ? `${id} is not parked (any more).` : `Retry of ${id} failed: ${e.message}`);
      button.disabled = false;
    }
  }

  // ---- Stalled instances, counts, projections ------------------------------------------------

  function watchStalled() {
    const fields = "status deadlineAt pendingActions compensationsOwed escalated escalationCount";
    const lists = [
      { kind: "order", target: "stalled-orders", query: `subscription { items: stalledOrdersChanged(first: 20) { id ${fields} } }` },
      { kind: "return", target: "stalled-returns", query: `subscription { items: stalledReturnsChanged(first: 20) { orderId ${fields} } }` },
    ];
    for (const { kind, target, query } of lists) {
      live.subscribe(query, {}, (data) => renderStalled(kind, target, data.items), liveError);
    }
  }

  function renderStalled(kind, target, items) {
    const ul = $(target);
    if (!items.length) {
      ul.replaceChildren(el("li", { class: "empty" }, `No stalled ${KINDS[kind].noun}s.`));
      return;
    }
    ul.replaceChildren(
      ...items.map((item) => {
        const id = KINDS[kind].id(item);
        return el(
          "li",
          { dataset: { id } },
          el(
            "span",
            { class: "grow" },
            el("button", { type: "button", class: "secondary mono", onclick: () => show(kind, id).catch((e) => showAlert(e.message)) }, id),
            el("br"),
            el("span", { class: "status" }, item.status),
            ` due ${when(item.deadlineAt)}; waits for ${list(item.pendingActions.concat(item.compensationsOwed))}`,
          ),
          item.escalated
            ? el("span", { class: "notice escalated" }, `escalated (${item.escalationCount}×)`)
            : el(
                "button",
                { type: "button", class: "escalate", "aria-label": `Escalate ${KINDS[kind].noun} ${id}`, onclick: (e) => escalate(kind, id, e.currentTarget) },
                "Escalate",
              ),
        );
      }),
    );
  }

  function watchCounts() {
    live.subscribe(
      "subscription { counts: statusCountsChanged { status n: orders } }",
      {},
      (data) => renderCounts("order-counts", data.counts),
      liveError,
    );
    live.subscribe(
      "subscription { counts: returnStatusCountsChanged { status n: returns } }",
      {},
      (data) => renderCounts("return-counts", data.counts),
      liveError,
    );
  }

  function renderCounts(target, counts) {
    $(target).replaceChildren(
      ...counts.map((c) => el("div", { dataset: { status: c.status } }, el("dt", {}, c.status), el("dd", {}, c.n))),
    );
  }

  async function refreshProjections() {
    const query = `{ ${PROJECTIONS.map(
      (p, i) => `p${i}: projectionStatus(name: "${p.name}") { name checkpoint eventsApplied lagEvents lagSeconds
        deadLetters parkedOrders parked(first: 20) { id reason parkedAt deadLetters } }`,
    ).join(" ")} }`;
    const target = $("projection-list");
    let data;
    try {
      data = await graphql(query);
    } catch (e) {
      target.replaceChildren(el("p", { class: "error" }, `Projection status unavailable: ${e.message}`));
      return;
    }
    target.replaceChildren(
      ...PROJECTIONS.map((p, i) => {
        const s = data[`p${i}`];
        const lag = s.lagEvents === null ? "unknown (event store unreachable)" : `${s.lagEvents} events, ${Number(s.lagSeconds).toFixed(1)} s`;
        return el(
          "div",
          { class: "projection", dataset: { projection: s.name } },
          el("h3", {}, `${p.label} (${s.name})`),
          facts([
            ["Lag", lag],
            ["Events applied", s.eventsApplied],
            ["Checkpoint", el("span", { class: "mono" }, s.checkpoint || "—")],
            ["Dead letters", s.deadLetters],
            ["Parked", s.parkedOrders],
          ]),
          s.parked.length
            ? el(
                "ul",
                { class: "list parked" },
                s.parked.map((x) =>
                  el(
                    "li",
                    { dataset: { id: x.id } },
                    el(
                      "span",
                      { class: "grow" },
                      el("span", { class: "mono" }, x.id),
                      el("br"),
                      `${x.deadLetters} dead-lettered since ${when(x.parkedAt)}: ${x.reason}`,
                    ),
                    el(
                      "button",
                      { type: "button", class: "retry", "aria-label": `Retry parked ${x.id}`, onclick: (e) => retry(x.id, e.currentTarget) },
                      "Retry",
                    ),
                  ),
                ),
              )
            : null,
        );
      }),
    );
  }

  // ---- Start ---------------------------------------------------------------------------------

  async function start() {
    $("token").value = state.token;
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.token = $("token").value.trim();
      if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
      else sessionStorage.removeItem(TOKEN_KEY);
      clearAlert();
      announce(state.token ? "Token set; reconnecting." : "Token cleared; reconnecting.");
      live.reconnect();
      refreshProjections();
    });
    $("find-form").addEventListener("submit", (event) => {
      event.preventDefault();
      find($("find-kind").value, $("find-query").value);
    });
    try {
      const response = await fetch("/console/config.json");
      const config = await response.json();
      state.commandApiUrl = config.commandApiUrl;
    } catch (_) {
      showAlert("The console's settings cannot be read: is the query API running?");
    }
    live.connect();
    watchCounts();
    watchStalled();
    refreshProjections();
    setInterval(refreshProjections, PROJECTION_REFRESH_MS);
    const wanted = new URLSearchParams(location.search);
    if (wanted.get("id")) {
      $("find-kind").value = wanted.get("kind") === "return" ? "return" : "order";
      $("find-query").value = wanted.get("id");
      find($("find-kind").value, wanted.get("id"));
    }
  }

  start();
})();
