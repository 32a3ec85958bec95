// The per-protein table of a p2t report: sort by a column (click its header), filter (every
// word must appear in the row), page through. Data: the JSON in <script id="p2t-rows">.
(function () {
  "use strict";
  const table = document.getElementById("p2t-table");
  const data = JSON.parse(document.getElementById("p2t-rows").textContent);
  const filter = document.getElementById("p2t-filter");
  const pager = document.getElementById("p2t-pager");
  const PAGE = 50, LONG = 40;
  let rows = data.rows, sortCol = -1, sortDir = 1, page = 0;
  const domainCol = data.columns.indexOf("in_domain");  // proteins unlike the training data are marked

  function cell(v) {
    const td = document.createElement("td");
    if (v === null || v === undefined) return td;
    let text = typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(3)) : String(v);
    if (typeof v === "number") td.className = "num";
    if (text.length > LONG) { td.title = text; text = text.slice(0, LONG) + "\u2026"; }
    td.textContent = text;
    return td;
  }

  function compare(a, b) {
    const x = a[sortCol], y = b[sortCol];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * sortDir;
  }

  function render() {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = words.length ? data.rows.filter(r => {
      const text = r.map(v => v === null ? "" : String(v)).join(" ").toLowerCase();
      return words.every(w => text.includes(w));
    }) : data.rows.slice();
    if (sortCol >= 0) shown.sort(compare);
    rows = shown;
    const pages = Math.max(1, Math.ceil(rows.length / PAGE));
    page = Math.min(page, pages - 1);
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const r of rows.slice(page * PAGE, (page + 1) * PAGE)) {
      const tr = document.createElement("tr");
      r.forEach(v => tr.appendChild(cell(v)));
      if (domainCol >= 0 && r[domainCol] === false) {
        tr.className = "outside";
        tr.title = "out of domain: unlike the model's training proteins; trust its answers less";
      }
      body.appendChild(tr);
    }
    pager.querySelector(".where").textContent =
      `${rows.length} of ${data.rows.length} proteins shown; page ${page + 1} of ${pages}`;
  }

  const head = document.createElement("tr");
  data.columns.forEach((name, i) => {
    const th = document.createElement("th");
    th.textContent = name;
    th.title = (data.docs[i] || "") + " (click to sort)";
    th.addEventListener("click", () => {
      sortDir = sortCol === i ? -sortDir : 1;
      sortCol = i;
      table.querySelectorAll("th").forEach(h => h.removeAttribute("data-sort"));
      th.setAttribute("data-sort", sortDir > 0 ? "asc" : "desc");
      render();
    });
    head.appendChild(th);
  });
  table.tHead.appendChild(head);
  filter.addEventListener("input", () => { page = 0; render(); });
  pager.querySelector(".prev").addEventListener("click", () => { page = Math.max(0, page - 1); render(); });
  pager.querySelector(".next").addEventListener("click", () => { page += 1; render(); });
  render();
})();
