// The chat page: send, follow streaming replies (and re-attach after a reload), stop, retry,
// swipe, and load older messages. Server-rendered HTML comes back from each endpoint.
(function () {
  "use strict";
  const chat = document.getElementById("chat");
  if (!chat) return;
  const list = document.getElementById("messages");
  const form = document.getElementById("composer");
  const input = document.getElementById("content");
  const errorBox = document.getElementById("composer-error");
  const olderButton = document.getElementById("load-older");
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  const base = chat.dataset.baseUrl;
  const streams = new Map();

  function showError(text) {
    errorBox.textContent = text;
    errorBox.hidden = !text;
  }

  async function post(url, data) {
    const body = new URLSearchParams(data || {});
    const response = await fetch(url, {
      method: "POST",
      headers: { "X-CSRFToken": csrf, "X-Requested-With": "fetch" },
      body: body,
      credentials: "same-origin",
    });
    let payload = {};
    try { payload = await response.json(); } catch (e) { payload = { error: "The server sent an unexpected answer (HTTP " + response.status + ")." }; }
    if (!response.ok && !payload.error) payload.error = "The request failed (HTTP " + response.status + ").";
    return payload;
  }

  function fragment(html) {
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    return template.content;
  }

  function replaceMessage(article, html) {
    const frag = fragment(html);
    const fresh = frag.firstElementChild;
    article.replaceWith(frag);
    return fresh;
  }

  function isNearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 120;
  }

  function follow(article) {
    const url = article.dataset.streamUrl;
    const seq = article.dataset.seq;
    if (!url || streams.has(seq)) return;
    const raw = article.querySelector(".content .raw") || article.querySelector(".content");
    const source = new EventSource(url);
    streams.set(seq, source);
    document.body.classList.add("generating");
    source.addEventListener("snapshot", function (e) {
      raw.textContent = JSON.parse(e.data).text;
    });
    source.addEventListener("delta", function (e) {
      const stick = isNearBottom();
      raw.textContent += JSON.parse(e.data).text;
      if (stick) window.scrollTo(0, document.body.scrollHeight);
    });
    source.addEventListener("done", function (e) {
      source.close();
      streams.delete(seq);
      if (!streams.size) document.body.classList.remove("generating");
      const data = JSON.parse(e.data);
      const current = document.getElementById("m" + seq) || article;
      replaceMessage(current, data.html);
    });
    source.onerror = function () {
      // EventSource reconnects by itself; each reconnection starts with a snapshot.
    };
  }

  function newToken() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return String(Date.now()) + Math.random().toString(16).slice(2);
  }

  let sending = false;
  let token = newToken();
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const content = input.value.trim();
    if (!content || sending) return;
    sending = true;
    showError("");
    form.querySelector("#send").disabled = true;
    try {
      const result = await post(chat.dataset.sendUrl, { content: content, client_token: token });
      if (result.error) {
        showError(result.error);
        return;
      }
      token = newToken();
      input.value = "";
      if (chat.dataset.hasNewer === "1") {
        // Opened at an older message: the new ones belong after messages not shown yet.
        window.location.assign(base);
        return;
      }
      list.append(fragment(result.html));
      window.scrollTo(0, document.body.scrollHeight);
      list.querySelectorAll("article[data-stream-url]").forEach(follow);
    } catch (e) {
      showError("Could not reach the server. Your message is still in the box; try again.");
    } finally {
      sending = false;
      form.querySelector("#send").disabled = false;
    }
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    } else if (event.key === "Escape") {
      const streaming = list.querySelector("article[data-status=streaming] [data-action=stop]");
      if (streaming) streaming.click();
    }
  });

  list.addEventListener("click", async function (event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const article = button.closest("article.message");
    const seq = article.dataset.seq;
    const url = base + "messages/" + seq + "/" + button.dataset.action + "/";
    button.disabled = true;
    if (button.dataset.action === "stop") {
      await post(url);
      return;
    }
    const data = button.dataset.action === "swipe"
      ? { index: button.dataset.index, version: article.dataset.version }
      : {};
    const result = await post(url, data);
    if (result.error) {
      button.disabled = false;
      showError(result.error);
      return;
    }
    const fresh = replaceMessage(article, result.html);
    if (fresh && fresh.dataset.streamUrl) follow(fresh);
  });

  if (olderButton) {
    olderButton.addEventListener("click", async function () {
      olderButton.disabled = true;
      const url = chat.dataset.olderUrl + "?before=" + encodeURIComponent(chat.dataset.oldestSeq);
      try {
        const response = await fetch(url, { credentials: "same-origin" });
        const data = await response.json();
        if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
        // Keep the view where it is while content grows above it.
        const before = document.body.scrollHeight;
        list.prepend(fragment(data.html));
        window.scrollBy(0, document.body.scrollHeight - before);
        chat.dataset.oldestSeq = data.oldest_seq;
        olderButton.hidden = !data.has_older;
      } catch (e) {
        showError("Could not load older messages: " + e.message);
      } finally {
        olderButton.disabled = false;
      }
    });
  }

  // Opened at a message (?at=<seq>, from a search result): newer pages load below it.
  const newerBox = document.getElementById("newer");
  const newerButton = document.getElementById("load-newer");
  if (newerButton) {
    newerButton.addEventListener("click", async function () {
      newerButton.disabled = true;
      const url = chat.dataset.newerUrl + "?after=" + encodeURIComponent(chat.dataset.newestSeq);
      try {
        const response = await fetch(url, { credentials: "same-origin" });
        const data = await response.json();
        if (!response.ok) throw new Error(data.error || "HTTP " + response.status);
        list.append(fragment(data.html));
        list.querySelectorAll("article[data-stream-url]").forEach(follow);
        chat.dataset.newestSeq = data.newest_seq;
        chat.dataset.hasNewer = data.has_newer ? "1" : "0";
        newerBox.hidden = !data.has_newer;
      } catch (e) {
        showError("Could not load newer messages: " + e.message);
      } finally {
        newerButton.disabled = false;
      }
    });
  }

  list.querySelectorAll("article[data-stream-url]").forEach(follow);
  const target = chat.dataset.at && document.getElementById("m" + chat.dataset.at);
  if (target) {
    target.classList.add("target");
    target.scrollIntoView({ block: "center" });
  } else {
    window.scrollTo(0, document.body.scrollHeight);
  }
})();
