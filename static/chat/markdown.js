/* The one Markdown renderer of the chat, for streamed answers and history alike.
 *
 * Markdown (marked) -> HTML with raw HTML shown as text, images turned into links and only
 * http(s)/mailto/relative links kept -> DOMPurify with a short allow-list (no scripts, no
 * event handlers, no style, no images) -> code highlighted by highlight.js. Everything the
 * model writes is untrusted: these layers each refuse the payloads on their own.
 */
(function () {
  "use strict";

  // Links may point to the web, to mail, to an anchor or to this site; nothing else
  // (no javascript:, data:, vbscript:, file:, blob:...).
  const SAFE_URL = /^(?:https?:\/\/|mailto:|#|\/(?!\/))/i;

  const ALLOWED_TAGS = [
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "span", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
  ];
  const PURIFY_CONFIG = {
    ALLOWED_TAGS: ALLOWED_TAGS,
    ALLOWED_ATTR: ["href", "title", "class", "start", "align", "rel", "target"],
    ALLOWED_URI_REGEXP: SAFE_URL,
    ALLOW_DATA_ATTR: false,
    ALLOW_ARIA_ATTR: false,
  };

  function escapeHtml(text) {
    return String(text)
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;")
      .replace(/'/g, "&#39;");
  }

  function safeHref(href) {
    const trimmed = String(href || "").trim();
    return SAFE_URL.test(trimmed) ? trimmed : null;
  }

  marked.use({
    gfm: true,
    breaks: false,
    renderer: {
      // Raw HTML in an answer is shown as the text it is, never interpreted.
      html(token) {
        return escapeHtml(token.text);
      },
      link(token) {
        const label = this.parser.parseInline(token.tokens);
        const href = safeHref(token.href);
        if (href === null) {
          return label;
        }
        const title = token.title ? ` title="${escapeHtml(token.title)}"` : "";
        return `<a href="${escapeHtml(href)}"${title}>${label}</a>`;
      },
      // Images are never loaded automatically: they become a link the reader may follow.
      image(token) {
        const label = `image: ${escapeHtml(token.text || "untitled")}`;
        const href = safeHref(token.href);
        return href === null ? `[${label}]` : `<a href="${escapeHtml(href)}" class="image-link">[${label}]</a>`;
      },
    },
  });

  DOMPurify.addHook("afterSanitizeAttributes", function (node) {
    if (node.tagName === "A") {
      node.setAttribute("rel", "noopener noreferrer nofollow");
      node.setAttribute("target", "_blank");
    }
  });

  if (window.hljs) {
    hljs.configure({ ignoreUnescapedHTML: true });
  }

  function highlight(root) {
    if (!window.hljs) {
      return;
    }
    root.querySelectorAll("pre code").forEach(function (block) {
      const match = /(?:^|\s)language-([\w+#-]+)/.exec(block.className);
      if (match && hljs.getLanguage(match[1])) {
        hljs.highlightElement(block);
      }
    });
  }

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    // Plain-HTTP pages have no clipboard API: copy through a hidden selection instead.
    const area = document.createElement("textarea");
    area.value = text;
    area.className = "offscreen";
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
    return Promise.resolve();
  }

  function copyButton(label, getText) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "copy secondary";
    button.textContent = label;
    button.addEventListener("click", function () {
      copyText(getText()).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 1200);
      });
    });
    return button;
  }

  function addCodeCopyButtons(root) {
    root.querySelectorAll("pre").forEach(function (pre) {
      const code = pre.querySelector("code");
      const button = copyButton("Copy code", function () { return (code || pre).textContent; });
      pre.classList.add("has-copy");
      pre.insertBefore(button, pre.firstChild);
    });
  }

  /** Render untrusted Markdown into element (replacing what it held). */
  function renderInto(element, markdown) {
    const html = marked.parse(String(markdown || ""), { async: false });
    element.innerHTML = DOMPurify.sanitize(html, PURIFY_CONFIG);
    highlight(element);
    addCodeCopyButtons(element);
  }

  window.PortalMarkdown = { renderInto: renderInto, copyButton: copyButton, copyText: copyText };
})();
