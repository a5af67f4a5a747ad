// Gallery: search as you type (debounced, filtered on the server), without reloading the page.
(function () {
  "use strict";
  const form = document.querySelector("form[data-live-search]");
  const results = document.getElementById("gallery-results");
  if (!form || !results) return;
  let timer = null;
  let controller = null;

  async function refresh() {
    const params = new URLSearchParams(new FormData(form));
    const url = form.action.split("?")[0] + "?" + params.toString();
    if (controller) controller.abort();
    controller = new AbortController();
    try {
      const response = await fetch(url, { headers: { "X-Partial": "1" }, signal: controller.signal });
      if (!response.ok) return;
      results.innerHTML = await response.text();
      history.replaceState(null, "", url);
    } catch (e) {
      if (e.name !== "AbortError") results.insertAdjacentHTML("afterbegin", '<p class="error" role="alert">Search failed; press Filter to try again.</p>');
    }
  }

  form.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 250);
  });
})();
