// The character editor: alternate greetings added, moved and removed in place (without this
// script those buttons post the form, which comes back with the change, unsaved), and live token
// counts per field and in total, counted by the server with the counter prompts use.
(function () {
  "use strict";
  var form = document.getElementById("character-form");
  if (!form || !window.FormData || !window.fetch) return;
  var list = document.getElementById("greeting-list");
  var tokensUrl = form.getAttribute("data-tokens-url");
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]");

  // --- greetings ---------------------------------------------------------------------------------

  function renumber() {
    var items = list.querySelectorAll("[data-greeting]");
    for (var i = 0; i < items.length; i++) {
      var label = items[i].querySelector("label");
      var area = items[i].querySelector("textarea");
      area.id = "greeting-" + i;
      label.setAttribute("for", area.id);
      label.textContent = "Greeting " + (i + 1);
      var buttons = items[i].querySelectorAll("button[data-op]");
      for (var j = 0; j < buttons.length; j++) {
        buttons[j].value = buttons[j].getAttribute("data-op") + "-" + i;
      }
    }
  }

  function newGreeting() {
    var li = document.createElement("li");
    li.className = "greeting";
    li.setAttribute("data-greeting", "");
    li.innerHTML =
      '<label></label><textarea name="alternate_greetings" rows="3"></textarea>' +
      '<p class="token-count muted" data-count-for="greeting"><span>0</span> tokens</p>' +
      '<div class="greeting-buttons">' +
      '<button type="submit" name="greeting_op" formnovalidate data-op="up">Move up</button> ' +
      '<button type="submit" name="greeting_op" formnovalidate data-op="down">Move down</button> ' +
      '<button type="submit" name="greeting_op" formnovalidate data-op="remove" class="danger">Remove</button>' +
      "</div>";
    list.appendChild(li);
    renumber();
    li.querySelector("textarea").focus();
  }

  form.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-op]");
    if (!button || !list) return;
    event.preventDefault();
    var op = button.getAttribute("data-op");
    if (op === "add") return newGreeting();
    var item = button.closest("[data-greeting]");
    if (op === "remove") {
      item.parentNode.removeChild(item);
    } else if (op === "up" && item.previousElementSibling) {
      list.insertBefore(item, item.previousElementSibling);
    } else if (op === "down" && item.nextElementSibling) {
      list.insertBefore(item.nextElementSibling, item);
    }
    renumber();
    totals();
    var again = item.querySelector("button[data-op=" + op + "]");
    if (item.parentNode && again) again.focus();
  });

  // --- token counts ------------------------------------------------------------------------------

  function countOf(el) {
    return parseInt(el.querySelector("span").textContent, 10) || 0;
  }

  function totals() {
    var all = 0;
    var permanent = 0;
    var counts = form.querySelectorAll("[data-count-for]");
    for (var i = 0; i < counts.length; i++) {
      var n = countOf(counts[i]);
      if (!counts[i].hasAttribute("data-not-sent")) all += n;
      if (counts[i].hasAttribute("data-permanent")) permanent += n;
    }
    form.querySelector("[data-total=all]").textContent = all;
    form.querySelector("[data-total=permanent]").textContent = permanent;
  }

  var timers = new WeakMap();

  function countFor(field) {
    var box = field.closest(".field, [data-greeting]");
    return box ? box.querySelector("[data-count-for]") : null;
  }

  function recount(field, target) {
    var body = new FormData();
    body.append("text", field.value);
    fetch(tokensUrl, {
      method: "POST",
      body: body,
      headers: { "X-CSRFToken": csrf.value },
      credentials: "same-origin",
    })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (!data || !target.isConnected) return;
        target.querySelector("span").textContent = data.counts.text;
        totals();
      })
      .catch(function () {});
  }

  function changed(field) {
    if (!field.matches || !field.matches("textarea, input[type=text]")) return;
    var target = countFor(field);
    if (!target) return;
    clearTimeout(timers.get(field));
    timers.set(
      field,
      setTimeout(function () {
        recount(field, target);
      }, 300)
    );
  }

  form.addEventListener("input", function (event) {
    changed(event.target);
  });
  // Text typed before this script ran (a slow line) is counted too.
  form.querySelectorAll("textarea, input[type=text]").forEach(function (field) {
    if (field.value !== field.defaultValue) changed(field);
  });
})();
