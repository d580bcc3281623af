// attncli's page: shows what Python computed (no arithmetic here). Errors are written into the page.
(function () {
  "use strict";
  var started = performance.now();
  var errors = document.getElementById("page-errors");
  function report(message) {
    errors.hidden = false;
    errors.textContent += message + "\n";
    document.body.setAttribute("data-errors", "yes");
  }
  window.addEventListener("error", function (event) { report("Error: " + event.message); });
  // how long the page took to load, from the start of navigation (measured by the browser tests)
  window.addEventListener("load", function () {
    document.body.setAttribute("data-loaded-ms", String(Math.round(performance.now())));
  });

  try {
    var data = JSON.parse(document.getElementById("page-data").textContent);
    var body = document.getElementById("arithmetic-body");
    var hint = document.getElementById("arithmetic-hint");
    var chosen = null;  // the cell clicked (hover shows others until the pointer leaves)
    var selector = document.getElementById("head");

    function parts(cell) { return cell.getAttribute("data-e").split(",").map(Number); }

    function show(cell) {
      var at = parts(cell), batch = at[0], head = at[1], query = at[2], key = at[3];
      var row = data.rows[batch + "," + head + "," + query];
      if (!row || !row.c[key]) { report("Error: no arithmetic for " + at.join(",")); return; }
      body.textContent = "";
      var title = document.createElement("p");
      title.className = "where";
      title.textContent = "query " + query + ", key " + key + " (batch " + batch + ", head " + head + ")";
      body.appendChild(title);
      var mention = new RegExp("(k|logit|capped|biased|weight|v)\\[" + key + "\\]");
      row.c[key].forEach(function (index) {
        var section = row.s[index];
        var heading = document.createElement("h3");
        heading.textContent = section[0];
        body.appendChild(heading);
        section[1].forEach(function (line) {
          var text = document.createElement("p");
          text.className = "arith-line" + (mention.test(line) ? " this-key" : "");
          text.textContent = line;
          body.appendChild(text);
        });
      });
      hint.hidden = true;
      body.setAttribute("data-shown", at.join(","));
    }

    function choose(cell) {
      if (chosen) { chosen.classList.remove("chosen"); chosen.removeAttribute("aria-pressed"); }
      chosen = cell;
      cell.classList.add("chosen");
      cell.setAttribute("aria-pressed", "true");
      show(cell);
    }

    function move(cell, rows, columns) {
      var row = cell.parentElement, index = Array.prototype.indexOf.call(row.children, cell) + columns;
      if (rows) {
        row = rows > 0 ? row.nextElementSibling : row.previousElementSibling;
        while (row && row.classList.contains("gap")) {
          row = rows > 0 ? row.nextElementSibling : row.previousElementSibling;
        }
      }
      var next = row && row.children[index];
      while (next && !next.hasAttribute("data-e") && columns) {
        next = columns > 0 ? next.nextElementSibling : next.previousElementSibling;
      }
      if (next && next.hasAttribute("data-e")) { next.focus(); }
    }

    var steps = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    document.addEventListener("click", function (event) {
      var cell = event.target.closest && event.target.closest("td[data-e]");
      if (cell) { choose(cell); }
    });
    document.addEventListener("mouseover", function (event) {
      var cell = event.target.closest && event.target.closest("td[data-e]");
      if (cell) { show(cell); }
    });
    document.addEventListener("mouseout", function (event) {
      var cell = event.target.closest && event.target.closest("td[data-e]");
      if (cell && chosen && cell !== chosen) { show(chosen); }
    });
    document.addEventListener("keydown", function (event) {
      var cell = event.target.closest && event.target.closest("td[data-e]");
      if (!cell) { return; }
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        choose(cell);
      } else if (steps[event.key]) {
        event.preventDefault();
        move(cell, steps[event.key][0], steps[event.key][1]);
      }
    });

    // the head selector: the tables of one batch item and head (the key/value head it reads)
    function select(value) {
      var all = value === "all", at = all ? [] : value.split(",").map(Number);
      document.querySelectorAll("figure.matrix").forEach(function (figure) {
        var batch = figure.getAttribute("data-batch"), head = figure.getAttribute("data-head"),
            kvHead = figure.getAttribute("data-kv-head");
        figure.hidden = !all && ((batch !== null && Number(batch) !== at[0]) ||
          (head !== null && Number(head) !== at[1]) ||
          (kvHead !== null && Number(kvHead) !== Math.floor(at[1] / data.group)));
      });
    }
    if (selector) {
      selector.addEventListener("change", function () { select(selector.value); });
    }

    // #head=B,H chooses the tables; #explain=QUERY,KEY (of the head chosen) reveals a cell's arithmetic
    var asked = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
      var split = pair.indexOf("=");
      if (split > 0) { asked[decodeURIComponent(pair.slice(0, split))] = decodeURIComponent(pair.slice(split + 1)); }
    });
    if (selector) {
      if (asked.head) { selector.value = asked.head.indexOf(",") < 0 ? "0," + asked.head : asked.head; }
      if (!selector.value) { report("Error: no such head: " + asked.head); selector.selectedIndex = 0; }
      select(selector.value);
    }
    if (asked.explain) {
      var where = selector && selector.value !== "all" ? selector.value : "0,0";
      var wanted = where + "," + asked.explain;
      var cell = document.querySelector('table[data-step="softmax"] td[data-e="' + wanted + '"]') ||
        document.querySelector('td[data-e="' + wanted + '"]');
      if (cell) {
        choose(cell);
        cell.focus({ preventScroll: true });
        cell.scrollIntoView({ block: "center", behavior: "instant" });
      } else {
        report("Error: no shown cell " + wanted);
      }
    }
    document.body.setAttribute("data-render-ms", String(Math.round(performance.now() - started)));
    document.body.setAttribute("data-ready", "yes");
  } catch (error) {
    report("Error: " + error.message);
  }
})();
