// Assay's own front-end code: live points total in the rubric editor, and charts.
(function () {
  "use strict";

  function updatePointsTotal() {
    const total = document.getElementById("points-total");
    const inputs = document.querySelectorAll("#criteria input.points");
    if (!total || inputs.length === 0) return;  // read-only versions keep the server's total
    let sum = 0;
    inputs.forEach(function (input) {
      const value = parseFloat(input.value);
      if (!Number.isNaN(value) && value > 0) sum += value;
    });
    total.textContent = String(Math.round(sum * 100) / 100);
  }

  document.addEventListener("input", function (event) {
    if (event.target.matches && event.target.matches("#criteria input.points")) {
      updatePointsTotal();
    }
  });

  // Upload progress for forms marked data-upload-progress (htmx reports the bytes sent).
  document.addEventListener("htmx:xhr:progress", function (event) {
    const form = event.target.closest && event.target.closest("form[data-upload-progress]");
    if (!form || !event.detail.lengthComputable) return;
    const bar = form.querySelector("progress.upload-progress");
    if (!bar) return;
    bar.hidden = false;
    bar.value = Math.round((100 * event.detail.loaded) / event.detail.total);
  });

  const palette = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2"];

  function drawCharts(root) {
    if (typeof Chart === "undefined") return;
    root.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      const source = document.getElementById(canvas.dataset.source);
      if (!source || canvas.dataset.drawn) return;
      const data = JSON.parse(source.textContent);
      canvas.dataset.drawn = "1";
      if (canvas.dataset.chart === "means") {
        new Chart(canvas, {
          type: "bar",
          data: {
            labels: data.models,
            datasets: [{ label: "Mean score (clipped to [0, 1])", data: data.means,
                         backgroundColor: data.models.map(function (_, i) { return palette[i % palette.length]; }) }],
          },
          options: { indexAxis: "y", scales: { x: { min: 0, max: 1 } }, plugins: { legend: { display: false },
                     title: { display: true, text: "Mean score per model" } } },
        });
      } else if (canvas.dataset.chart === "criteria" && data.criteria) {
        new Chart(canvas, {
          type: "bar",
          data: {
            labels: data.criteria.map(function (c) { return c.label; }),
            datasets: [{ label: "Met rate", data: data.criteria.map(function (c) { return c.rate; }),
                         backgroundColor: palette[0] }],
          },
          options: { indexAxis: "y", scales: { x: { min: 0, max: 1 } }, plugins: { legend: { display: false },
                     title: { display: true, text: "Met rate per criterion (lead judge)" } } },
        });
      } else if (canvas.dataset.chart === "histogram") {
        new Chart(canvas, {
          type: "bar",
          data: {
            labels: data.bins,
            datasets: data.models.map(function (model, i) {
              return { label: model, data: data.histograms[i], backgroundColor: palette[i % palette.length] };
            }),
          },
          options: { scales: { x: { title: { display: true, text: "score (bin start)" } },
                               y: { title: { display: true, text: "responses" }, ticks: { precision: 0 } } },
                     plugins: { title: { display: true, text: "Score distribution per model" } } },
        });
      }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    if (window.htmx) htmx.onLoad(function (el) { drawCharts(el); updatePointsTotal(); });
  });
})();

// The rubric editor's keyboard: Alt+N new criterion, Enter adds it, Alt+Up/Down moves the
// criterion being edited, Alt+Right/Left moves it into / out of a group. After htmx swaps the
// list, focus returns to where the author was. Unsaved typing is sent when the tab closes.
(function () {
  "use strict";

  function editor() { return document.querySelector("[data-editor]"); }

  function csrfToken() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRFToken"]; }
    catch (e) { return ""; }
  }

  const KEYS = { ArrowUp: "up", ArrowDown: "down", ArrowRight: "in", ArrowLeft: "out" };

  document.addEventListener("keydown", function (event) {
    if (!editor()) return;
    if (event.altKey && (event.key === "n" || event.key === "N" || event.code === "KeyN")) {
      const box = document.getElementById("new-criterion-text");
      if (box) { event.preventDefault(); box.focus(); }
      return;
    }
    if (event.target.id === "new-criterion-text" && event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      if (!event.target.value.trim()) return;
      if (window.htmx) window.htmx.process(event.target.form);  // never a native submit
      event.target.form.requestSubmit();
      return;
    }
    if (event.altKey && KEYS[event.key]) {
      const row = event.target.closest && event.target.closest("li[data-criterion]");
      if (!row) return;
      const button = row.querySelector('button[data-key="' + KEYS[event.key] + '"]');
      event.preventDefault();
      if (!button || button.disabled) return;
      // A key pressed the instant a swap lands may beat htmx's wiring of the new row.
      if (window.htmx) window.htmx.process(row);
      button.click();
    }
  });

  // After settling: by then htmx has wired the new buttons, so a key pressed at once works.
  document.addEventListener("htmx:afterSettle", function () {
    const list = document.getElementById("criteria");
    if (!list || !list.dataset.focus) return;
    let target = null;
    if (list.dataset.focus === "new") {
      target = document.getElementById("new-criterion-text");
    } else {
      target = document.getElementById(list.dataset.focus + "-text");
    }
    if (target) target.focus();
    list.dataset.focus = "";
  });

  // Dirty rows: typed in, not yet answered by the server.
  document.addEventListener("input", function (event) {
    const form = event.target.closest && event.target.closest("form.crit-row");
    if (form) form.dataset.dirty = "1";
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    const form = event.detail.elt && event.detail.elt.closest && event.detail.elt.closest("form.crit-row");
    if (form && event.detail.successful) delete form.dataset.dirty;
  });
  window.addEventListener("pagehide", function () {
    document.querySelectorAll("form.crit-row[data-dirty]").forEach(function (form) {
      const data = new FormData(form);
      const revision = document.getElementById("draft-revision");
      if (revision) data.set("revision", revision.value);
      data.set("csrfmiddlewaretoken", csrfToken());
      navigator.sendBeacon(form.getAttribute("hx-post"), data);
    });
  });
})();
