/* The thread of a conversation: questions as plain text, answers through PortalMarkdown,
 * each answer's reasoning in its own collapsible "Thinking" panel that never mixes into it.
 */
(function () {
  "use strict";

  const STATUS_LABELS = {
    stopped: "stopped",
    interrupted: "interrupted",
    error: "failed",
  };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function formatMs(ms) {
    if (ms === null || ms === undefined) {
      return null;
    }
    return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
  }

  /** A question: shown as the plain text the person typed. */
  function questionView(message) {
    const article = el("article", "msg msg-user");
    article.dataset.id = message.id || "";
    article.dataset.role = "user";
    article.appendChild(el("div", "user-text", message.content));
    return article;
  }

  /** An answer that can grow while it streams and be finished with its numbers. */
  class AnswerView {
    constructor(message) {
      this.content = message.content || "";
      this.reasoning = message.reasoning || "";
      this.pending = false;
      this.element = el("article", "msg msg-assistant");
      this.element.dataset.id = message.id || "";
      this.element.dataset.role = "assistant";
      this.thinking = el("details", "thinking");
      this.thinkingLabel = el("summary", null, "Thinking");
      this.thinkingBody = el("div", "thinking-body markdown");
      this.thinking.append(this.thinkingLabel, this.thinkingBody);
      this.body = el("div", "answer-body markdown");
      this.footer = el("footer", "msg-meta");
      this.actions = el("div", "msg-actions");
      this.actions.appendChild(
        PortalMarkdown.copyButton("Copy answer", () => this.content)
      );
      this.element.append(this.thinking, this.body, this.footer, this.actions);
      this.setStatus(message.status || "complete");
      this.render();
      if (message.status && message.status !== "streaming") {
        this.finish(message);
      }
    }

    setStatus(status) {
      this.status = status;
      this.element.dataset.status = status;
      if (status === "streaming") {
        this.footer.textContent = "writing…";
      }
    }

    /** Replace the text so far (a re-attached answer starts from the text already written). */
    set(content, reasoning) {
      this.content = content || "";
      this.reasoning = reasoning || "";
      this.scheduleRender();
    }

    append(content, reasoning) {
      this.content += content || "";
      this.reasoning += reasoning || "";
      if (reasoning && !this.content) {
        this.thinking.open = true;
      }
      this.scheduleRender();
    }

    scheduleRender() {
      if (this.pending) {
        return;
      }
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        this.render();
      });
    }

    render() {
      this.thinking.hidden = !this.reasoning;
      if (this.reasoning) {
        PortalMarkdown.renderInto(this.thinkingBody, this.reasoning);
      }
      PortalMarkdown.renderInto(this.body, this.content);
      this.element.classList.toggle("has-answer", Boolean(this.content));
      if (this.onRender) {
        this.onRender();
      }
    }

    /** Show how the answer ended: tokens, time to first token, and any error. */
    finish(message) {
      if (message.content !== undefined && message.status !== "streaming") {
        this.content = message.content || this.content;
      }
      this.setStatus(message.status);
      this.render();
      if (this.status !== "streaming" && this.content) {
        this.thinking.open = false;
      }
      const parts = [];
      const usage = message.usage || {};
      if (usage.completion_tokens !== null && usage.completion_tokens !== undefined) {
        parts.push(`${usage.completion_tokens} tokens${usage.estimated ? " (estimated)" : ""}`);
      }
      const ttft = formatMs(message.ttft_ms);
      if (ttft) {
        parts.push(`first token ${ttft}`);
      }
      const duration = formatMs(message.duration_ms);
      if (duration) {
        parts.push(duration);
      }
      this.footer.textContent = parts.join(" · ");
      this.footer.dataset.tokens = usage.completion_tokens === undefined ? "" : String(usage.completion_tokens);
      const label = STATUS_LABELS[message.status];
      if (label) {
        const badge = el("span", `badge ${message.status === "stopped" ? "warn" : "bad"}`, label);
        this.footer.prepend(badge, " ");
      }
      if (message.error && message.error.message) {
        this.footer.appendChild(el("div", "msg-error", message.error.message));
      }
    }
  }

  window.PortalThread = { questionView: questionView, AnswerView: AnswerView, el: el };
})();
