// Live updates for the console's reading pages, without a build step: every
// data-live-seconds the page is fetched again and the part below its heading
// (#live-content) replaced when it changed. The reader stays where they are: no
// reload, no scroll jump, and no update while they are in a form field or the tab
// is hidden. The "Stop updating" link ends it; without script the page reloads
// instead (a refresh meta tag inside <noscript>).
"use strict";
(function () {
  const main = document.getElementById("main");
  const content = document.getElementById("live-content");
  const status = document.getElementById("live-status");
  const seconds = Number(main && main.dataset.liveSeconds);
  if (!content || !(seconds >= 5)) return;
  let busy = false;
  async function update() {
    const active = document.activeElement;
    if (busy || document.hidden || (active && content.contains(active) && active.matches("input, select, textarea"))) return;
    busy = true;
    try {
      const answer = await fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" }, cache: "no-store" });
      // a session that ended is sent to the login page: say so rather than show that page here
      if (answer.redirected) throw new Error("the session ended; reload the page to log in again");
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const page = new DOMParser().parseFromString(await answer.text(), "text/html");
      const fresh = page.getElementById("live-content");
      if (!fresh) throw new Error("no content");
      if (fresh.innerHTML !== content.innerHTML) content.innerHTML = fresh.innerHTML;
      if (status) status.textContent = " Last updated " + new Date().toISOString().slice(11, 19) + " UTC.";
    } catch (e) {
      if (status) status.textContent = " The last update failed: " + e.message + ".";
    } finally {
      busy = false;
    }
  }
  setInterval(update, seconds * 1000);
})();
