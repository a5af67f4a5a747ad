// The chat page's memory panel: its content is fetched the first time it is opened, so the chat
// page itself reads nothing more than before.
(function () {
  "use strict";
  const panel = document.getElementById("memory-panel");
  if (!panel) return;
  let loaded = false;
  panel.addEventListener("toggle", async function () {
    if (!panel.open || loaded) return;
    loaded = true;
    const body = panel.querySelector(".memory-panel-body");
    try {
      const response = await fetch(panel.dataset.url, { headers: { Accept: "text/html" }, credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      body.innerHTML = await response.text();
    } catch (error) {
      loaded = false;
      body.textContent = "Could not load the memory (" + error.message + "). Close and open the panel to try again.";
    }
  });
})();
