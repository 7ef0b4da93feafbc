/* The chat page: sidebar, thread, composer and settings, over the /ws/chat/ socket
 * (protocol: docs/websocket.md). Initial data comes from the #chat-config JSON block.
 */
(function () {
  "use strict";

  const root = document.getElementById("chat");
  const config = JSON.parse(document.getElementById("chat-config").textContent);
  const { el, questionView, AnswerView } = window.PortalThread;
  const $ = (id) => document.getElementById(id);

  const ui = {
    list: $("conversation-list"), filter: $("filter"), title: $("chat-title"), thread: $("thread"),
    notice: $("notice"), prompt: $("prompt"), send: $("send"), stop: $("stop"), status: $("engine-status"),
    connection: $("connection"), editing: $("editing"), settings: $("settings"), model: $("set-model"),
    system: $("set-system"), temperature: $("set-temperature"), topP: $("set-top-p"),
    maxTokens: $("set-max-tokens"), effort: $("set-effort"), effortRow: $("effort-row"),
  };

  const state = {
    current: null, // {id, title, settings}
    models: config.models,
    answer: null, // the AnswerView being written
    answerId: null,
    editing: false,
    lastSent: null, // the text of a question not yet confirmed by a start frame
    socket: null,
    retry: 0,
    queued: [], // frames sent while the socket was still connecting: they go out once it opens
  };

  // --- helpers --------------------------------------------------------------------------

  function api(path, options) {
    const headers = { "X-CSRFToken": root.dataset.csrf, "Content-Type": "application/json" };
    return fetch(path, Object.assign({ credentials: "same-origin", headers: headers }, options || {})).then(
      function (response) {
        if (!response.ok) {
          throw new Error(`HTTP ${response.status}`);
        }
        return response.json();
      }
    );
  }

  function showNotice(text, kind) {
    ui.notice.textContent = text || "";
    ui.notice.dataset.kind = kind || "info";
    ui.notice.hidden = !text;
  }

  function busy(on) {
    ui.send.hidden = on;
    ui.stop.hidden = !on;
    root.dataset.streaming = on ? "yes" : "no";
  }

  function scrollDown() {
    const nearBottom = ui.thread.scrollHeight - ui.thread.scrollTop - ui.thread.clientHeight < 120;
    if (nearBottom || root.dataset.streaming === "yes") {
      ui.thread.scrollTop = ui.thread.scrollHeight;
    }
  }

  // --- sidebar ------------------------------------------------------------------------

  const sidebar = PortalSidebar.create({
    list: ui.list,
    filter: ui.filter,
    page: root.dataset.page,
    apiBase: root.dataset.api,
    api: api,
    currentId: () => (state.current ? state.current.id : null),
    onOpen: (id) => openConversation(id, true),
    onRenamed: function (item) {
      if (state.current && state.current.id === item.id) {
        ui.title.textContent = item.title;
      }
    },
    onDeleted: function (id) {
      if (state.current && state.current.id === id) {
        newConversation(true);
      }
    },
    onError: (text) => showNotice(text, "error"),
  });

  // --- thread ---------------------------------------------------------------------------

  function addAnswer(message) {
    const view = new AnswerView(message);
    view.onRender = scrollDown;
    const regenerate = el("button", "secondary regenerate", "Regenerate");
    regenerate.type = "button";
    regenerate.addEventListener("click", regenerateLast);
    view.actions.appendChild(regenerate);
    ui.thread.appendChild(view.element);
    return view;
  }

  function addQuestion(message) {
    const view = questionView(message);
    const edit = el("button", "secondary edit", "Edit");
    edit.type = "button";
    edit.addEventListener("click", function () { startEdit(view); });
    view.appendChild(edit);
    ui.thread.appendChild(view);
    markLastQuestion();
    return view;
  }

  function renderThread(conversation) {
    ui.thread.replaceChildren();
    state.answer = null;
    state.answerId = null;
    (conversation ? conversation.messages : []).forEach(function (message) {
      if (message.role === "user") {
        addQuestion(message);
      } else {
        const view = addAnswer(message);
        if (message.status === "streaming") {
          state.answer = view;
          state.answerId = message.id;
        }
      }
    });
    markLastQuestion();
    ui.thread.scrollTop = ui.thread.scrollHeight;
  }

  function lastOf(role) {
    const items = ui.thread.querySelectorAll(`.msg[data-role="${role}"]`);
    return items.length ? items[items.length - 1] : null;
  }

  // Only the last question can be edited and resent.
  function markLastQuestion() {
    ui.thread.querySelectorAll(".last-question").forEach((node) => node.classList.remove("last-question"));
    const last = lastOf("user");
    if (last) {
      last.classList.add("last-question");
    }
  }

  // --- conversations --------------------------------------------------------------------

  function applySettings(settings) {
    settings = settings || {};
    ui.model.value = settings.model || "";
    ui.system.value = settings.system || "";
    ui.temperature.value = settings.temperature ?? "";
    ui.topP.value = settings.top_p ?? "";
    ui.maxTokens.value = settings.max_tokens ?? "";
    ui.effort.value = settings.reasoning_effort || "";
    updateModelStatus();
  }

  function setCurrent(conversation, push) {
    state.current = conversation ? { id: conversation.id, title: conversation.title } : null;
    ui.title.textContent = conversation ? conversation.title : "New chat";
    const url = conversation ? `${root.dataset.page}${conversation.id}/` : root.dataset.page;
    if (push && location.pathname !== url) {
      history.pushState({ conversation: conversation ? conversation.id : null }, "", url);
    }
    sidebar.render();
  }

  function openConversation(id, push) {
    return api(`${root.dataset.api}${id}/`).then(function (result) {
      setCurrent(result.conversation, push);
      applySettings(result.conversation.settings);
      renderThread(result.conversation);
      cancelEdit();
      busy(Boolean(state.answer));
      attach();
      root.classList.remove("sidebar-open");
    }).catch(function () { showNotice("Could not open the conversation.", "error"); });
  }

  function newConversation(push) {
    setCurrent(null, push);
    applySettings({});
    renderThread(null);
    cancelEdit();
    busy(false);
    attach();
    ui.prompt.focus();
  }

  window.addEventListener("popstate", function () {
    const match = /\/(\d+)\/$/.exec(location.pathname);
    if (match) { openConversation(Number(match[1]), false); } else { newConversation(false); }
  });

  // --- settings and engine state --------------------------------------------------------

  function renderModels() {
    const chosen = ui.model.value;
    ui.model.replaceChildren(el("option", null, "Any ready model"));
    ui.model.firstChild.value = "";
    state.models.forEach(function (model) {
      const option = el("option", null, `${model.model} — ${model.message}`);
      option.value = model.model;
      ui.model.appendChild(option);
    });
    ui.model.value = chosen;
    updateModelStatus();
  }

  function selectedModel() {
    const name = ui.model.value;
    return state.models.find((model) => model.model === name) ||
      state.models.find((model) => model.state === "ready") || state.models[0] || null;
  }

  function updateModelStatus() {
    const model = selectedModel();
    ui.effortRow.hidden = !(model && model.reasoning);
    if (!model) {
      ui.status.textContent = "no engine configured";
      ui.status.className = "badge bad";
      return;
    }
    ui.status.textContent = `${model.model}: ${model.message}`;
    ui.status.className = `badge ${model.state === "ready" ? "ok" : model.state === "loading" || model.state === "starting" ? "warn" : "bad"}`;
    ui.status.dataset.state = model.state;
  }

  // /ws/status/ pushes the model choices whenever an engine's state changes.
  function watchEngines() {
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${root.dataset.statusPath}`);
    socket.addEventListener("message", function (event) {
      const frame = JSON.parse(event.data);
      if (frame.type === "engines" && Array.isArray(frame.models)) {
        state.models = frame.models;
        renderModels();
      }
    });
    socket.addEventListener("close", function () { setTimeout(watchEngines, 5000); });
  }

  ui.model.addEventListener("change", updateModelStatus);

  function numberOrNull(input) {
    return input.value === "" ? null : Number(input.value);
  }

  function params() {
    return {
      model: ui.model.value || null,
      system: ui.system.value,
      temperature: numberOrNull(ui.temperature),
      top_p: numberOrNull(ui.topP),
      max_tokens: ui.maxTokens.value === "" ? null : parseInt(ui.maxTokens.value, 10),
      reasoning_effort: ui.effort.value || null,
    };
  }

  // --- the socket -----------------------------------------------------------------------

  function connect() {
    const socket = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${root.dataset.wsPath}`);
    state.socket = socket;
    socket.addEventListener("open", function () {
      state.retry = 0;
      ui.connection.hidden = true;
      attach();
      state.queued.splice(0).forEach(function (frame) { socket.send(JSON.stringify(frame)); });
    });
    socket.addEventListener("message", function (event) { onFrame(JSON.parse(event.data)); });
    socket.addEventListener("close", function (event) {
      state.socket = null;
      if (event.code === 4401 || event.code === 4403) {
        state.queued = [];
      }
      if (event.code === 4401) {
        location.reload(); // logged out or disabled: the page sends to the login form
        return;
      }
      if (event.code === 4403) {
        showNotice("Chat is for members.", "error");
        return;
      }
      ui.connection.hidden = false;
      state.retry = Math.min(state.retry + 1, 5);
      setTimeout(connect, 500 * 2 ** state.retry);
    });
  }

  function sendFrame(frame) {
    if (state.socket && state.socket.readyState === WebSocket.CONNECTING) {
      // Typed before the page's socket finished opening (a fast typist, a slow handshake):
      // hold the frame and send it the moment the socket opens instead of refusing it.
      state.queued.push(frame);
      return true;
    }
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) {
      showNotice("Not connected — reconnecting…", "error");
      return false;
    }
    state.socket.send(JSON.stringify(frame));
    return true;
  }

  function attach() {
    if (state.socket && state.socket.readyState === WebSocket.OPEN) {
      sendFrame({ type: "chat.attach", conversation: state.current ? state.current.id : null });
    }
  }

  function onFrame(frame) {
    switch (frame.type) {
      case "start": return onStart(frame);
      case "delta":
        if (state.answer && frame.answer === state.answerId) {
          state.answer.append(frame.content, frame.reasoning);
        }
        return;
      case "done": return onDone(frame);
      case "error": return onError(frame);
      case "attached":
        if (!frame.answer && state.answer && state.current) {
          // The answer finished while this page was away: load how it ended.
          openConversation(state.current.id, false);
        }
        return;
    }
  }

  function onStart(frame) {
    // What the portal's checks changed in the question (e.g. masked personal data), or nothing.
    showNotice((frame.notices || []).join(" "), "info");
    if (!state.current || state.current.id !== frame.conversation) {
      if (frame.created) {
        sidebar.add({ id: frame.conversation, title: frame.title });
      }
      setCurrent({ id: frame.conversation, title: frame.title }, true);
    }
    let view = state.answerId === frame.answer ? state.answer : null;
    if (!view) {
      const known = ui.thread.querySelector(`.msg-user[data-id="${frame.question.id}"]`);
      if (known) {
        // Regenerate or edit: the question stays (maybe edited) and what followed it goes.
        known.querySelector(".user-text").textContent = frame.question.content;
        while (known.nextSibling) { known.nextSibling.remove(); }
      } else {
        const pending = ui.thread.querySelector(".msg-user[data-pending]") || addQuestion(frame.question);
        pending.dataset.id = frame.question.id;
        delete pending.dataset.pending;
      }
      view = addAnswer({ id: frame.answer, status: "streaming" });
    }
    view.setStatus("streaming");
    if (frame.resumed) {
      view.set(frame.content, frame.reasoning);
    }
    state.answer = view;
    state.answerId = frame.answer;
    state.lastSent = null;
    busy(true);
    scrollDown();
  }

  function onDone(frame) {
    if (state.answer && frame.answer === state.answerId) {
      state.answer.finish(frame);
    }
    state.answer = null;
    state.answerId = null;
    busy(false);
    sidebar.toTop(frame.conversation);
  }

  function onError(frame) {
    if (frame.answer) {
      return; // the done frame that follows shows it on the answer
    }
    const pending = ui.thread.querySelector(".msg-user[data-pending]");
    if (pending) {
      pending.remove();
    }
    if (state.lastSent !== null && !ui.prompt.value) {
      // Nothing was saved: the question goes back into the composer.
      ui.prompt.value = state.lastSent;
    }
    state.lastSent = null;
    busy(Boolean(state.answer));
    if (frame.code === "engine_unavailable") {
      showNotice(`The model is not ready: ${frame.message}. Your message was not sent; try again when it is ready.`, "warn");
      refreshModels();
    } else if (window.PortalRefusal.isRefusal(frame)) {
      showNotice(window.PortalRefusal.sentence(frame, Date.now()), "warn");
    } else {
      showNotice(frame.message, "error");
    }
  }

  // --- composing ------------------------------------------------------------------------

  function submit() {
    const content = ui.prompt.value;
    if (!content.trim() || root.dataset.streaming === "yes") {
      return;
    }
    const editing = Boolean(state.editing && state.current);
    const frame = {
      type: editing ? "chat.edit" : "chat.send",
      conversation: state.current ? state.current.id : null,
      content: content,
      params: params(),
    };
    if (!sendFrame(frame)) {
      return;
    }
    if (!editing) {
      addQuestion({ content: content }).dataset.pending = "yes";
    }
    state.lastSent = content;
    ui.prompt.value = "";
    cancelEdit();
    busy(true);
    scrollDown();
  }

  function regenerateLast() {
    if (!state.current || root.dataset.streaming === "yes") {
      return;
    }
    if (sendFrame({ type: "chat.regenerate", conversation: state.current.id, params: params() })) {
      busy(true);
    }
  }

  function startEdit(view) {
    if (view !== lastOf("user") || root.dataset.streaming === "yes") {
      showNotice("Only the last question can be edited.", "info");
      return;
    }
    state.editing = true;
    ui.prompt.value = view.querySelector(".user-text").textContent;
    ui.editing.hidden = false;
    ui.prompt.focus();
  }

  function cancelEdit() {
    state.editing = false;
    ui.editing.hidden = true;
  }

  $("composer").addEventListener("submit", function (event) {
    event.preventDefault();
    submit();
  });
  ui.prompt.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    } else if (event.key === "Escape" && state.editing) {
      cancelEdit();
      ui.prompt.value = "";
    }
  });
  ui.stop.addEventListener("click", function () {
    sendFrame({ type: "chat.stop", conversation: state.current ? state.current.id : null });
  });
  $("new-chat").addEventListener("click", function () { newConversation(true); });
  $("toggle-settings").addEventListener("click", function () {
    ui.settings.hidden = !ui.settings.hidden;
  });
  $("toggle-sidebar").addEventListener("click", function () {
    root.classList.toggle("sidebar-open");
  });
  $("cancel-edit").addEventListener("click", function () { cancelEdit(); ui.prompt.value = ""; });

  // --- plugins' composer actions (chat.composer_actions, docs/plugins.md) -------------------

  // What a plugin's module gets: the composer's text and a place to tell the user something.
  const composer = {
    element: $("composer"),
    csrfToken: root.dataset.csrf,
    getText: () => ui.prompt.value,
    setText: function (text) { ui.prompt.value = text; ui.prompt.focus(); },
    insertText: function (text) {
      const start = ui.prompt.selectionStart ?? ui.prompt.value.length;
      const end = ui.prompt.selectionEnd ?? start;
      ui.prompt.setRangeText(text, start, end, "end");
      ui.prompt.focus();
    },
    focus: () => ui.prompt.focus(),
    notify: (text, kind) => showNotice(text, kind),
  };

  JSON.parse($("composer-actions").textContent).forEach(function (action) {
    $(action.id).addEventListener("click", function () {
      // A module from /static/: the CSP (script-src 'self') allows it, and nothing inline runs.
      import(action.module).then(function (module) {
        return module.run(composer, action);
      }).catch(function (error) {
        console.error(error);
        showNotice(`${action.label} failed to start.`, "error");
      });
    });
  });

  // --- start ----------------------------------------------------------------------------

  // "Signed in" and similar messages would cover the chat: let them fade away.
  document.querySelectorAll(".chat-main > .messages").forEach(function (messages) {
    setTimeout(function () { messages.classList.add("fade"); }, 3000);
    setTimeout(function () { messages.remove(); }, 3700);
  });

  ui.prompt.maxLength = config.limits.max_message_chars;
  ui.system.maxLength = config.limits.max_system_chars;
  ui.maxTokens.max = config.limits.max_tokens;
  ui.maxTokens.placeholder = `${config.limits.max_tokens_default} (max ${config.limits.max_tokens})`;
  sidebar.set(config.conversations);
  renderModels();
  if (config.conversation) {
    setCurrent(config.conversation, false);
    applySettings(config.conversation.settings);
    renderThread(config.conversation);
    busy(Boolean(state.answer));
  } else {
    newConversation(false);
  }
  connect();
  watchEngines();
})();
