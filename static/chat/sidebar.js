/* The conversation list: open, rename in place, delete (after a second click), filter by title. */
(function () {
  "use strict";

  function create(options) {
    const el = window.PortalThread.el;
    let conversations = [];
    let filterTimer = null;

    function render() {
      const current = options.currentId();
      options.list.replaceChildren();
      conversations.forEach(function (item) {
        const li = el("li", "conversation-item");
        li.dataset.id = item.id;
        if (current === item.id) {
          li.setAttribute("aria-current", "true");
        }
        const link = el("a", "conversation-title", item.title || "Untitled");
        link.href = `${options.page}${item.id}/`;
        link.addEventListener("click", function (event) {
          event.preventDefault();
          options.onOpen(item.id);
        });
        const rename = el("button", "icon secondary", "Rename");
        rename.type = "button";
        rename.addEventListener("click", function () { startRename(li, item); });
        const remove = el("button", "icon secondary", "Delete");
        remove.type = "button";
        remove.addEventListener("click", function () { confirmDelete(remove, item); });
        li.append(link, rename, remove);
        options.list.appendChild(li);
      });
    }

    function startRename(li, item) {
      const input = el("input", "rename-input");
      input.type = "text";
      input.value = item.title;
      input.maxLength = 200;
      input.setAttribute("aria-label", "New title");
      li.replaceChildren(input);
      input.focus();
      input.select();
      let done = false;
      function finish(save) {
        if (done) {
          return;
        }
        done = true;
        const title = input.value.trim();
        if (!save || !title || title === item.title) {
          render();
          return;
        }
        options.api(`${options.apiBase}${item.id}/rename/`, { method: "POST", body: JSON.stringify({ title: title }) })
          .then(function (result) {
            item.title = result.title;
            options.onRenamed(item);
          })
          .catch(function () { options.onError("Could not rename the conversation."); })
          .finally(render);
      }
      input.addEventListener("keydown", function (event) {
        if (event.key === "Enter") { finish(true); }
        if (event.key === "Escape") { finish(false); }
      });
      input.addEventListener("blur", function () { finish(true); });
    }

    // A second click within three seconds deletes: no modal dialog needed.
    function confirmDelete(button, item) {
      if (button.dataset.armed !== "yes") {
        button.dataset.armed = "yes";
        button.textContent = "Really delete?";
        setTimeout(function () { button.dataset.armed = ""; button.textContent = "Delete"; }, 3000);
        return;
      }
      options.api(`${options.apiBase}${item.id}/delete/`, { method: "POST" })
        .then(function () {
          conversations = conversations.filter((other) => other.id !== item.id);
          options.onDeleted(item.id);
          render();
        })
        .catch(function () { options.onError("Could not delete the conversation."); });
    }

    options.filter.addEventListener("input", function () {
      clearTimeout(filterTimer);
      filterTimer = setTimeout(function () {
        options.api(`${options.apiBase}?q=${encodeURIComponent(options.filter.value)}`).then(function (result) {
          conversations = result.conversations;
          render();
        });
      }, 200);
    });

    return {
      render: render,
      set: function (items) { conversations = items.slice(); render(); },
      add: function (item) { conversations.unshift(item); render(); },
      toTop: function (id) {
        const item = conversations.find((other) => other.id === id);
        if (item) {
          conversations = [item, ...conversations.filter((other) => other !== item)];
          render();
        }
      },
    };
  }

  window.PortalSidebar = { create: create };
})();
