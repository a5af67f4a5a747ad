// The lorebook editor. Keys as tags: a textarea holding one key per line becomes chips plus a box
// to type the next key; the textarea stays the form's field (hidden), so the form posts the same
// either way. Entries open in place: an entry's form is fetched when it is first opened.
(function () {
  "use strict";

  function enhance(area) {
    var box = document.createElement("div");
    box.className = "tag-input";
    var input = document.createElement("input");
    input.type = "text";
    input.setAttribute("autocomplete", "off");
    input.spellcheck = false;

    function keys() {
      return area.value.split("\n").map(function (k) { return k.trim(); }).filter(Boolean);
    }

    function render() {
      box.querySelectorAll(".tag-chip").forEach(function (chip) { chip.remove(); });
      keys().forEach(function (key, index) {
        var chip = document.createElement("span");
        chip.className = "tag-chip";
        chip.textContent = key;
        var remove = document.createElement("button");
        remove.type = "button";
        remove.textContent = "×";
        remove.setAttribute("aria-label", "Remove key " + key);
        remove.addEventListener("click", function () {
          var list = keys();
          list.splice(index, 1);
          area.value = list.join("\n");
          render();
          input.focus();
        });
        chip.appendChild(remove);
        box.insertBefore(chip, input);
      });
    }

    function commit() {
      var key = input.value.trim();
      if (!key) { return false; }
      area.value = keys().concat([key]).join("\n");
      input.value = "";
      render();
      return true;
    }

    input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" || (event.key === "," && !input.value.startsWith("/"))) {
        if (commit() || event.key === "Enter") { event.preventDefault(); }
      } else if (event.key === "Backspace" && !input.value) {
        var list = keys();
        if (list.length) {
          input.value = list.pop();
          area.value = list.join("\n");
          render();
          event.preventDefault();
        }
      }
    });
    // A key still being typed is not lost when the form is sent.
    area.form.addEventListener("submit", commit);
    input.addEventListener("blur", commit);

    box.appendChild(input);
    area.hidden = true;
    area.parentNode.insertBefore(box, area.nextSibling);
    // The field's label now names the box a key is typed in.
    input.id = area.id + "-typed";
    if (area.labels[0]) { area.labels[0].htmlFor = input.id; } else { input.setAttribute("aria-label", "Add a key"); }
    render();
  }

  function enhanceAll(root) {
    root.querySelectorAll("textarea[data-tag-input]").forEach(enhance);
  }

  function openInPlace(details) {
    var preview = details.querySelector(".entry-preview[data-editor]");
    if (!preview || !details.open || preview.dataset.loading) { return; }
    preview.dataset.loading = "1";
    fetch(preview.dataset.editor, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error(response.status); }
        return response.text();
      })
      .then(function (html) {
        var holder = document.createElement("div");
        holder.innerHTML = html;
        preview.replaceWith.apply(preview, Array.from(holder.childNodes));
        enhanceAll(details);
        var first = details.querySelector(".entry-form input:not([type=hidden]), .entry-form textarea");
        if (first) { first.focus(); }
      })
      .catch(function () { delete preview.dataset.loading; });  // the Edit link still works
  }

  enhanceAll(document);
  document.querySelectorAll(".lore-entries details").forEach(function (details) {
    details.addEventListener("toggle", function () { openInPlace(details); });
    openInPlace(details);  // one opened before this script ran
  });
})();
