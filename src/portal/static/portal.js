// berth portal: the only script. Two things, both optional (every page works without it):
// a table with data-refresh="N" is re-read from the server every N seconds and swapped in
// place; a <pre data-follow="URL"> is refilled from URL (plain text) every two seconds.
// Text goes in as textContent, never as markup.
"use strict";

function refreshTable(table) {
  const seconds = Number(table.dataset.refresh) || 30;
  setInterval(async () => {
    try {
      const resp = await fetch(window.location.href, { credentials: "same-origin" });
      if (!resp.ok || resp.redirected) return;
      const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
      const fresh = doc.getElementById(table.id);
      if (fresh) table.replaceChildren(...fresh.childNodes);
    } catch (_) { /* the next tick tries again */ }
  }, seconds * 1000);
}

function follow(pre) {
  setInterval(async () => {
    try {
      const resp = await fetch(pre.dataset.follow, { credentials: "same-origin" });
      if (!resp.ok || resp.redirected) return;
      const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.textContent = await resp.text();
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    } catch (_) { /* the next tick tries again */ }
  }, 2000);
}

document.querySelectorAll("table[data-refresh][id]").forEach(refreshTable);
document.querySelectorAll("pre[data-follow]").forEach(follow);
