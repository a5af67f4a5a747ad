// Gallery: search as you type (debounced, filtered on the server), and the Filter button, both
// redrawing the results in place, without reloading the page. Each redraw fires "gallery:updated"
// on the results. A Filter press whose redraw fails submits the form as a page after all.
(function () {
  "use strict";
  const form = document.querySelector("form[data-live-search]");
  const results = document.getElementById("gallery-results");
  if (!form || !results) return;
  let timer = null;
  let controller = null;

  // Resolves true once the results are redrawn, false if it failed, null if a newer one replaced it.
  async function refresh() {
    const params = new URLSearchParams(new FormData(form));
    const url = form.action.split("?")[0] + "?" + params.toString();
    if (controller) controller.abort();
    const mine = (controller = new AbortController());
    try {
      const response = await fetch(url, { headers: { "X-Partial": "1" }, signal: mine.signal });
      if (!response.ok) return false;
      const html = await response.text();
      if (mine !== controller) return null;
      results.innerHTML = html;
      history.replaceState(null, "", url);
      results.dispatchEvent(new CustomEvent("gallery:updated", { bubbles: true }));
      return true;
    } catch (e) {
      return e.name === "AbortError" ? null : false;
    }
  }

  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(async function () {
      if ((await refresh()) === false) {
        results.insertAdjacentHTML("afterbegin", '<p class="error" role="alert">Search failed; press Filter to try again.</p>');
      }
    }, 250);
  });

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    clearTimeout(timer);
    if ((await refresh()) === false) form.submit(); // as a page: its answer says what went wrong
  });
})();
