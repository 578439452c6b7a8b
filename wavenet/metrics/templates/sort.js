document.querySelectorAll("table.sortable").forEach(table => {
  table.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
    const asc = th.getAttribute("aria-sort") !== "ascending";
    table.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", asc ? "ascending" : "descending");
    const key = row => row.cells[col].dataset.sort ?? row.cells[col].textContent;
    const body = table.tBodies[0];
    const rows = [...body.rows].sort((a, b) => {
      const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
      const order = x === "" ? 1 : y === "" ? -1 : !isNaN(nx) && !isNaN(ny) ? nx - ny
        : x.localeCompare(y, undefined, {numeric: true});
      return asc || x === "" || y === "" ? order : -order;
    });
    body.append(...rows);
  }));
});
