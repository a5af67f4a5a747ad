// The chat page: send, follow streaming replies (and re-attach after a reload), stop, retry,
// swipe and regenerate, continue, edit in place, hide, branch, delete, impersonate, group turns,
// and load older messages. Every endpoint answers with server-rendered HTML of the message.
(function () {
  "use strict";
  const chat = document.getElementById("chat");
  if (!chat) return;
  const list = document.getElementById("messages");
  const form = document.getElementById("composer");
  const input = document.getElementById("content");
  const errorBox = document.getElementById("composer-error");
  const olderButton = document.getElementById("load-older");
  const speaker = document.getElementById("speaker");
  const csrf = form.querySelector("[name=csrfmiddlewaretoken]").value;
  const base = chat.dataset.baseUrl;
  const streams = new Map();

  function showError(text) {
    errorBox.textContent = text || "";
    errorBox.hidden = !text;
  }

  async function post(url, data) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "X-CSRFToken": csrf, "X-Requested-With": "fetch" },
        body: new URLSearchParams(data || {}),
        credentials: "same-origin",
      });
    } catch (e) {
      return { error: "Could not reach the server. Check your connection and try again." };
    }
    let payload = {};
    try { payload = await response.json(); } catch (e) { payload = {}; }
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
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 160;
  }

  function follow(article) {
    const url = article.dataset.streamUrl;
    const seq = article.dataset.seq;
    if (!url || streams.has(seq)) return;
    const raw = article.querySelector(".content .raw") || article.querySelector(".content");
    const source = new EventSource(url);
    streams.set(seq, source);
    document.body.classList.add("generating");
    // Screen readers wait while the list is busy, then read the finished reply once, not every token.
    list.setAttribute("aria-busy", "true");
    // A reasoning model's thinking streams into its own collapsed box above the reply.
    const thinking = article.querySelector("details.reasoning");
    const thought = thinking && thinking.querySelector(".reasoning-text");
    function think(text, replace) {
      if (!thought || (!text && !replace)) return;
      thought.textContent = replace ? text : thought.textContent + text;
      thinking.hidden = !thought.textContent;
    }
    source.addEventListener("snapshot", function (e) {
      const data = JSON.parse(e.data);
      raw.textContent = data.text;
      think(data.reasoning || "", true);
    });
    source.addEventListener("reasoning", function (e) {
      think(JSON.parse(e.data).text, false);
    });
    source.addEventListener("delta", function (e) {
      const stick = isNearBottom();
      raw.textContent += JSON.parse(e.data).text;
      if (stick) window.scrollTo(0, document.body.scrollHeight);
    });
    source.addEventListener("done", function (e) {
      source.close();
      streams.delete(seq);
      const current = document.getElementById("m" + seq) || article;
      replaceMessage(current, JSON.parse(e.data).html);
      if (!streams.size) {
        document.body.classList.remove("generating");
        list.removeAttribute("aria-busy");
      }
    });
  }

  function followAll(root) {
    (root || list).querySelectorAll("article[data-stream-url]").forEach(follow);
  }

  function appendAndFollow(html) {
    list.append(fragment(html));
    window.scrollTo(0, document.body.scrollHeight);
    followAll();
  }

  function newToken() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    return String(Date.now()) + Math.random().toString(16).slice(2);
  }

  // Sending. The token stays the same until a send succeeds, so a double click or a retry after a
  // dropped connection sends the message once.
  let sending = false;
  let token = newToken();
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    const content = input.value.trim();
    if (!content || sending) return;
    sending = true;
    showError("");
    document.getElementById("send").disabled = true;
    const data = { content: content, client_token: token };
    if (speaker && speaker.value) data.speaker = speaker.value;
    const result = await post(chat.dataset.sendUrl, data);
    sending = false;
    document.getElementById("send").disabled = false;
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
    appendAndFollow(result.html);
  });

  function lastOwnMessage() {
    const own = list.querySelectorAll("article.message.user:not([data-status=streaming])");
    return own.length ? own[own.length - 1] : null;
  }

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    } else if (event.key === "Escape") {
      const stop = list.querySelector("article[data-status=streaming] [data-action=stop]");
      if (stop) stop.click();
    } else if (event.key === "ArrowUp" && !input.value) {
      const mine = lastOwnMessage();
      if (mine) {
        event.preventDefault();
        startEdit(mine);
      }
    }
  });

  const impersonate = document.getElementById("impersonate");
  if (impersonate) {
    impersonate.addEventListener("click", async function () {
      impersonate.disabled = true;
      impersonate.setAttribute("aria-busy", "true");
      showError("");
      const result = await post(impersonate.dataset.url);
      impersonate.disabled = false;
      impersonate.removeAttribute("aria-busy");
      if (result.error) return showError(result.error);
      input.value = result.text;
      input.focus();
    });
  }

  const letSpeak = document.getElementById("let-speak");
  if (letSpeak) {
    letSpeak.addEventListener("click", async function () {
      const result = await post(letSpeak.dataset.url, speaker && speaker.value ? { speaker: speaker.value } : {});
      if (result.error) return showError(result.error);
      appendAndFollow(result.html);
    });
  }

  // Editing in place: the raw text comes from the server, the version guards against other tabs.
  async function startEdit(article) {
    if (article.querySelector("form.edit")) return;
    const seq = article.dataset.seq;
    const response = await fetch(base + "messages/" + seq + "/source/", { credentials: "same-origin" });
    if (!response.ok) return showError("Could not load the message to edit it.");
    const source = await response.json();
    const content = article.querySelector(".content");
    const editor = document.createElement("form");
    editor.className = "edit";
    editor.innerHTML =
      '<label class="visually-hidden" for="edit-' + seq + '">Edit message ' + seq + "</label>" +
      '<textarea id="edit-' + seq + '" rows="4"></textarea>' +
      '<div class="edit-buttons"><button type="submit" class="primary">Save</button> <button type="button" data-cancel>Cancel</button></div>' +
      '<p class="error" role="alert" hidden></p>';
    const area = editor.querySelector("textarea");
    area.value = source.content;
    content.hidden = true;
    content.after(editor);
    area.focus();
    function cancel() { editor.remove(); content.hidden = false; }
    editor.querySelector("[data-cancel]").addEventListener("click", cancel);
    area.addEventListener("keydown", function (e) {
      if (e.key === "Escape") cancel();
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) editor.requestSubmit();
    });
    editor.addEventListener("submit", async function (e) {
      e.preventDefault();
      const result = await post(base + "messages/" + seq + "/edit/", { content: area.value, version: article.dataset.version });
      if (result.error) {
        const box = editor.querySelector(".error");
        box.textContent = result.error;
        box.hidden = false;
        return;
      }
      // Only the text and the version changed: the rest of the message stays as it is.
      content.innerHTML = result.content_html;
      article.dataset.version = String(result.version);
      editor.remove();
      content.hidden = false;
    });
  }

  list.addEventListener("click", async function (event) {
    const control = event.target.closest("[data-action]");
    if (!control) return;
    const article = control.closest("article.message");
    const seq = article.dataset.seq;
    let action = control.dataset.action;
    const url = function (name) { return base + "messages/" + seq + "/" + name + "/"; };
    const menu = control.closest("details");
    if (menu) menu.open = false;
    showError("");

    if (action === "edit") return startEdit(article);
    if (action === "stop") {
      control.disabled = true;
      await post(url("stop"));
      return;
    }
    let data = {};
    if (action === "swipe") {
      const index = Number(control.dataset.index);
      const count = Number(control.dataset.count || 0);
      if (control.classList.contains("swipe-next") && index >= Math.max(count, 1)) {
        action = "regenerate";  // swiping past the last alternative writes a new one
      } else {
        data = { index: index, version: article.dataset.version };
      }
    } else if (action === "hide") {
      data = { hidden: control.dataset.hidden, version: article.dataset.version };
    } else if (action === "delete") {
      const andAfter = control.dataset.andAfter === "1";
      const question = andAfter ? "Delete this message and every message after it?" : "Delete this message?";
      if (!window.confirm(question)) return;
      data = { and_after: andAfter ? "1" : "0" };
    }
    control.disabled = true;
    const result = await post(url(action), data);
    control.disabled = false;
    if (result.error) return showError(result.error);
    if (action === "branch") {
      window.location.assign(result.url);
      return;
    }
    if (action === "delete") {
      const from = Number(result.from_seq);
      list.querySelectorAll("article.message").forEach(function (el) {
        const s = Number(el.dataset.seq);
        if (s === from || (result.and_after && s > from)) el.remove();
      });
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

  // Scrolling up near the top loads the next older page by itself; the button stays for keyboards.
  if (olderButton) {
    let armed = false;  // not during the first paint, which jumps to the bottom
    setTimeout(function () { armed = true; }, 300);
    window.addEventListener("scroll", function () {
      if (armed && window.scrollY < 400 && !olderButton.hidden && !olderButton.disabled) olderButton.click();
    }, { passive: true });
  }

  const jump = document.getElementById("jump-newest");
  if (jump) {
    window.addEventListener("scroll", function () {
      jump.hidden = isNearBottom() || document.body.scrollHeight <= window.innerHeight * 1.5;
    }, { passive: true });
    jump.addEventListener("click", function () {
      if (chat.dataset.hasNewer === "1") return window.location.assign(base);
      window.scrollTo({ top: document.body.scrollHeight, behavior: "smooth" });
      input.focus({ preventScroll: true });
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

  // The ⋯ menus: one open at a time, closed by Escape, a click elsewhere, their own action or a
  // send, and placed so they stay inside the window (a phone's left edge, the top of the page).
  function closeMenus(except) {
    list.querySelectorAll("details.more[open]").forEach(function (menu) {
      if (menu !== except) menu.open = false;
    });
  }

  function placeMenu(details) {
    const menu = details.querySelector(".menu");
    if (!menu) return;
    menu.classList.remove("align-left", "below");
    menu.style.transform = "";
    const margin = 8;
    let box = menu.getBoundingClientRect();
    if (box.left < margin) {
      menu.classList.add("align-left");
      box = menu.getBoundingClientRect();
    }
    if (box.right > window.innerWidth - margin) {
      menu.style.transform = "translateX(" + Math.round(window.innerWidth - margin - box.right) + "px)";
      box = menu.getBoundingClientRect();
    }
    if (box.left < margin) menu.style.transform = "translateX(" + Math.round(margin - box.left) + "px)";
    const header = document.querySelector(".topbar");
    const top = header && getComputedStyle(header).position === "sticky" ? header.getBoundingClientRect().bottom : 0;
    if (box.top < top + margin) menu.classList.add("below");
  }

  // Before it opens (the toggle event comes a moment later): a first guess from the button's place,
  // so the menu never shows outside the window, even for a frame.
  list.addEventListener("click", function (event) {
    const summary = event.target.closest && event.target.closest("details.more > summary");
    if (!summary || summary.parentElement.open) return;
    const menu = summary.parentElement.querySelector(".menu");
    const at = summary.getBoundingClientRect();
    menu.classList.toggle("below", at.top - (menu.children.length * 40 + 16) < 8);
    menu.classList.toggle("align-left", at.right - 220 < 8);
  }, true);

  list.addEventListener("toggle", function (event) {
    const details = event.target;
    if (!details.matches || !details.matches("details.more") || !details.open) return;
    closeMenus(details);
    placeMenu(details);
  }, true);

  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const open = list.querySelector("details.more[open]");
    if (!open) return;
    open.open = false;
    open.querySelector("summary").focus();
  });

  document.addEventListener("click", function (event) {
    const inside = event.target.closest && event.target.closest("details.more");
    // A choice in the menu (a link too, such as Show the prompt) closes it; a click elsewhere
    // closes every menu.
    const chosen = inside && event.target.closest(".menu a, .menu button");
    closeMenus(chosen ? null : inside);
  });

  form.addEventListener("submit", function () { closeMenus(null); });
  // Back from the prompt inspector (the page comes from the back-forward cache as it was left).
  window.addEventListener("pageshow", function () { closeMenus(null); });

  followAll();
  const target = chat.dataset.at && document.getElementById("m" + chat.dataset.at);
  if (target) {
    target.classList.add("target");
    target.scrollIntoView({ block: "center" });
  } else {
    window.scrollTo(0, document.body.scrollHeight);
  }
})();
