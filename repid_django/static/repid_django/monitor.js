/* Live monitor of repid_django: a reconnecting WebSocket that renders each snapshot.
 * No framework; every value is written with textContent, never as HTML. */
(function () {
  "use strict";

  var root = document.getElementById("repid-monitor");
  if (!root) {
    return;
  }
  var FORBIDDEN = 4403;
  var MAX_BACKOFF = 30000;
  var interval = parseFloat(root.dataset.interval) || 1;
  var backoff = 500;
  var socket = null;
  var watchdog = null;

  function byId(id) {
    return document.getElementById(id);
  }

  function setText(id, value) {
    var node = byId(id);
    if (node) {
      node.textContent = value === null || value === undefined ? "" : String(value);
    }
    return node;
  }

  function el(tag, text, className) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    if (className) {
      node.className = className;
    }
    return node;
  }

  function link(text, href) {
    var a = el("a", text);
    a.href = href;
    return a;
  }

  function badge(text, tone) {
    return el("span", text, "repid-badge repid-" + tone);
  }

  function num(value) {
    return el("td", value, "num");
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) {
      return "-";
    }
    if (seconds < 120) {
      return Math.round(seconds) + " s ago";
    }
    if (seconds < 7200) {
      return Math.round(seconds / 60) + " min ago";
    }
    return Math.round(seconds / 3600) + " h ago";
  }

  function since(iso) {
    if (!iso) {
      return "-";
    }
    return age((Date.now() - Date.parse(iso)) / 1000);
  }

  function replaceRows(id, rows, empty, columns) {
    var body = byId(id);
    body.replaceChildren();
    if (!rows.length) {
      var tr = el("tr");
      var td = el("td", empty, "repid-muted");
      td.colSpan = columns;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (tr) {
      body.appendChild(tr);
    });
  }

  function connection(text, tone) {
    var node = setText("repid-connection", text);
    node.className = "repid-badge repid-" + tone;
  }

  function describeLimits(l) {
    var parts = [];
    if (l.concurrency) {
      parts.push(l.concurrency + " at once");
    }
    if (l.rate) {
      parts.push(l.rate + (l.rate_key ? " per " + l.rate_key : ""));
    }
    return parts.join(", ");
  }

  function limitsCell(limits) {
    var td = el("td", null, "repid-limits");
    td.dataset.col = "limits";
    if (limits === null || limits === undefined) {
      td.appendChild(el("span", "unknown", "repid-muted"));
      return td;
    }
    var lines = [];
    if (limits.queue) {
      lines.push("queue: " + describeLimits(limits.queue));
    }
    Object.keys(limits.actors || {}).forEach(function (name) {
      lines.push(name + ": " + describeLimits(limits.actors[name]));
    });
    if (!lines.length) {
      td.textContent = "-";
    }
    lines.forEach(function (line, i) {
      if (i) {
        td.appendChild(el("br"));
      }
      td.appendChild(document.createTextNode(line));
    });
    return td;
  }

  function renderQueues(snapshot) {
    var jobsUrl = root.dataset.jobsUrl;
    var deadUrl = root.dataset.deadUrl;
    var rows = (snapshot.queues || []).map(function (q) {
      var tr = el("tr", null, "repid-queue");
      tr.dataset.queue = q.name;
      var th = el("th");
      th.scope = "row";
      th.appendChild(link(q.name, jobsUrl + "?queue=" + encodeURIComponent(q.name)));
      if (q.paused) {
        th.appendChild(document.createTextNode(" "));
        th.appendChild(badge("paused", "amber")).classList.add("repid-paused");
      }
      if (!q.live) {
        th.appendChild(document.createTextNode(" "));
        th.appendChild(el("span", "(mirrored " + since(q.mirrored_at) + ")", "repid-muted"));
      }
      tr.appendChild(th);
      tr.appendChild(num(q.ready)).dataset.col = "ready";
      tr.appendChild(num(q.delayed)).dataset.col = "delayed";
      tr.appendChild(num(q.running)).dataset.col = "running";
      var dead = num("");
      dead.dataset.col = "dead";
      if (q.dead) {
        dead.appendChild(
          link(q.dead, deadUrl + "?queue=" + encodeURIComponent(q.name) + "&state=dead")
        );
      } else {
        dead.textContent = "0";
      }
      tr.appendChild(dead);
      tr.appendChild(limitsCell(q.limits));
      return tr;
    });
    replaceRows("repid-queues", rows, "No queue yet: enqueue a job or start a worker.", 6);
    var source = byId("repid-queues-source");
    source.replaceChildren(
      snapshot.stale ? badge("mirrored", "amber") : badge("live", "green")
    );
  }

  function renderWorkers(workers) {
    setText("repid-workers-alive", workers.alive);
    setText("repid-workers-dead", workers.dead);
    var rows = (workers.items || []).map(function (w) {
      var tr = el("tr");
      tr.appendChild(el("th", w.name));
      var state = el("td");
      state.appendChild(w.alive ? badge("alive", "green") : badge("dead", "red"));
      state.appendChild(document.createTextNode(" "));
      state.appendChild(el("span", w.state, "repid-muted"));
      tr.appendChild(state);
      tr.appendChild(el("td", age(w.heartbeat_age)));
      tr.appendChild(el("td", (w.queues || []).join(", ")));
      tr.appendChild(num(w.running));
      tr.appendChild(num(w.processed));
      tr.appendChild(num(w.failed));
      return tr;
    });
    replaceRows("repid-workers", rows, "No worker has reported yet.", 7);
  }

  function progressCell(progress) {
    var td = el("td", null, "repid-progress-cell");
    if (!progress) {
      td.appendChild(el("span", "-", "repid-muted"));
      return td;
    }
    td.dataset.value = String(progress.value);
    var bar = el("progress", progress.percent + "%", "repid-progress");
    bar.max = 1;
    bar.value = progress.value;
    td.appendChild(bar);
    td.appendChild(document.createTextNode(" "));
    td.appendChild(el("strong", progress.percent + "%"));
    td.appendChild(document.createTextNode(" "));
    td.appendChild(el("span", progress.text, "repid-progress-text"));
    td.appendChild(document.createTextNode(" "));
    td.appendChild(el("span", "reported " + age(progress.age), "repid-muted"));
    return td;
  }

  function renderRunning(jobs) {
    var jobsUrl = root.dataset.jobsUrl;
    setText("repid-running-count", jobs.length);
    var rows = jobs.map(function (j) {
      var tr = el("tr", null, "repid-running-job");
      tr.dataset.job = j.job_id;
      var th = el("th");
      th.appendChild(link(j.actor, jobsUrl + j.pk + "/change/"));
      tr.appendChild(th);
      tr.appendChild(el("td", j.queue));
      tr.appendChild(el("td", j.running_for === null ? "-" : Math.round(j.running_for) + " s"));
      tr.appendChild(progressCell(j.progress));
      return tr;
    });
    replaceRows("repid-running", rows, "No job is running.", 4);
  }

  function renderFailures(failures) {
    var rows = failures.map(function (f) {
      var tr = el("tr");
      tr.appendChild(el("td", since(f.at)));
      tr.appendChild(el("td", f.actor || "?"));
      tr.appendChild(el("td", f.queue));
      var what = el("td");
      what.appendChild(badge(f.reason, f.kind === "dead" ? "purple" : "red"));
      tr.appendChild(what);
      tr.appendChild(el("td", f.error, "repid-error"));
      return tr;
    });
    replaceRows("repid-failures", rows, "No failures.", 5);
  }

  function renderSchedules(schedules) {
    var base = root.dataset.schedulesUrl;
    var rows = schedules.map(function (s) {
      var tr = el("tr", null, "repid-schedule");
      tr.dataset.schedule = s.name;
      var th = el("th");
      th.appendChild(link(s.name, base + s.pk + "/change/"));
      tr.appendChild(th);
      tr.appendChild(el("td", s.actor));
      tr.appendChild(el("td", s.when));
      var next = el("td", null, "repid-next");
      if (s.enabled) {
        next.textContent = s.next_run_label || "-";
      } else {
        next.appendChild(badge("disabled", "grey"));
      }
      tr.appendChild(next);
      var last = el("td", s.last_run_label ? s.last_run_label + " · " + s.last_job_id : "not yet", "repid-last");
      tr.appendChild(last);
      return tr;
    });
    replaceRows("repid-schedules", rows, "No schedule.", 5);
  }

  function render(snapshot) {
    setText("repid-updated", new Date().toLocaleTimeString());
    setText("repid-stale", snapshot.stale ? "Broker unavailable (" + snapshot.error + "): showing mirrored counts." : "");
    if (!snapshot.queues) {
      return; // an error-only snapshot: keep the last figures on screen
    }
    setText("repid-broker", snapshot.broker);
    var t = snapshot.throughput;
    var rate = setText("repid-throughput", t.per_second.toFixed(2));
    rate.dataset.value = String(t.per_second);
    setText("repid-finished", t.finished);
    setText("repid-succeeded", t.succeeded);
    setText("repid-failed", t.failed);
    setText("repid-cancelled", t.cancelled || 0);
    renderQueues(snapshot);
    renderWorkers(snapshot.workers);
    renderRunning(snapshot.running_jobs || []);
    renderFailures(snapshot.failures || []);
    renderSchedules(snapshot.schedules || []);
    if (snapshot.history && window.repidCharts) {
      window.repidCharts.update(snapshot.history);
    }
  }

  function armWatchdog() {
    // No snapshot for several periods: the connection is dead even if no close event came.
    clearTimeout(watchdog);
    watchdog = setTimeout(function () {
      if (socket) {
        socket.close();
      }
    }, Math.max(10000, interval * 5000));
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + window.location.host + root.dataset.wsPath);
    connection("connecting", "grey");
    socket.onopen = function () {
      connection("connected", "green");
      armWatchdog();
    };
    socket.onmessage = function (event) {
      backoff = 500;
      armWatchdog();
      render(JSON.parse(event.data));
    };
    socket.onclose = function (event) {
      clearTimeout(watchdog);
      socket = null;
      if (event.code === FORBIDDEN) {
        connection("not allowed: log in as staff with the view permission", "red");
        return;
      }
      connection("reconnecting", "amber");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, MAX_BACKOFF);
    };
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ type: "refresh" }));
    }
  });

  connect();
})();
