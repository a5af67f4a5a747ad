// The card import page: uploads the chosen or dropped files one at a time, showing each file's
// upload progress and then what the server did with it (imported, skipped or failed, and why).
// Without this script the form posts every file at once and the page lists the results.
(function () {
  "use strict";
  var form = document.getElementById("card-import");
  if (!form || !window.FormData || !window.XMLHttpRequest) return;
  var input = document.getElementById("card-files");
  var drop = document.getElementById("drop-zone");
  var list = document.getElementById("import-results");
  var button = form.querySelector("button[type=submit]");
  var url = form.getAttribute("data-upload-url");
  var queue = [];
  var busy = false;

  function row(file) {
    var li = document.createElement("li");
    li.setAttribute("data-status", "uploading");
    var name = document.createElement("span");
    name.className = "file";
    name.textContent = file.name;
    var status = document.createElement("span");
    status.textContent = "waiting";
    var bar = document.createElement("progress");
    bar.max = file.size || 1;
    bar.value = 0;
    li.appendChild(name);
    li.appendChild(status);
    li.appendChild(bar);
    list.appendChild(li);
    return { li: li, name: name, status: status, bar: bar };
  }

  function show(view, result) {
    view.li.setAttribute("data-status", result.status);
    view.status.textContent = result.status;
    view.status.className = "status-" + result.status;
    if (view.bar.parentNode) view.bar.parentNode.removeChild(view.bar);
    if (result.url) {
      var link = document.createElement("a");
      link.href = result.url;
      link.textContent = view.name.textContent;
      view.name.textContent = "";
      view.name.appendChild(link);
    }
    var notes = [];
    if (result.reason) notes.push(result.reason);
    (result.warnings || []).forEach(function (w) { notes.push("Note: " + w); });
    notes.forEach(function (text) {
      var reason = document.createElement("span");
      reason.className = "reason";
      reason.textContent = text;
      view.li.appendChild(reason);
    });
  }

  function upload(file, view, done) {
    var data = new FormData();
    data.append("csrfmiddlewaretoken", form.elements.csrfmiddlewaretoken.value);
    data.append("files", file, file.name);
    if (form.elements.public.checked) data.append("public", "1");
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (event) {
      if (event.lengthComputable) {
        view.bar.max = event.total;
        view.bar.value = event.loaded;
        view.status.textContent = Math.round((100 * event.loaded) / event.total) + "%";
      }
    });
    xhr.addEventListener("load", function () {
      var result;
      try {
        result = JSON.parse(xhr.responseText).results[0];
      } catch (e) {
        result = { status: "failed", reason: "The server answered " + xhr.status + "." };
      }
      show(view, result);
      done();
    });
    xhr.addEventListener("error", function () {
      show(view, { status: "failed", reason: "The upload was interrupted; try this file again." });
      done();
    });
    view.status.textContent = "uploading";
    xhr.send(data);
  }

  function next() {
    if (busy) return;
    var item = queue.shift();
    if (!item) {
      button.disabled = false;
      return;
    }
    busy = true;
    button.disabled = true;
    upload(item.file, item.view, function () {
      busy = false;
      next();
    });
  }

  function add(files) {
    Array.prototype.forEach.call(files, function (file) {
      queue.push({ file: file, view: row(file) });
    });
    next();
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    if (input.files.length) add(input.files);
    input.value = "";
  });

  drop.hidden = false;
  ["dragenter", "dragover"].forEach(function (type) {
    drop.addEventListener(type, function (event) {
      event.preventDefault();
      drop.classList.add("over");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    drop.addEventListener(type, function () {
      drop.classList.remove("over");
    });
  });
  drop.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) add(event.dataTransfer.files);
  });
})();
