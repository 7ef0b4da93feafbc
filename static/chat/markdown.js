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
  // (no javascript:, data:, vbscript:, file:, blob:...). "//host" and "/\host" are other sites.
  const SAFE_URL = /^(?:https?:\/\/|mailto:|#|\/(?![\/\\]))/i;
  const HAS_SCHEME = /^(?:https?|mailto):/i;

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

  /** The address if a link may have it, else null. */
  function safeHref(href) {
    const trimmed = String(href || "").trim();
    if (!SAFE_URL.test(trimmed)) {
      return null;
    }
    // What the browser makes of an address decides, not how it looks: it drops tabs and
    // newlines and reads "\" as "/", so "/<tab>/host" is another site, not a path here.
    let url;
    try {
      url = new URL(trimmed, window.location.href);
    } catch (error) {
      return null;
    }
    if (!HAS_SCHEME.test(trimmed) && url.origin !== window.location.origin) {
      return null;
    }
    return trimmed;
  }

  /** "attacker.example" for an image's address, so the reader sees where its link goes. */
  function hostOf(href) {
    try {
      const url = new URL(href, window.location.href);
      return url.origin === window.location.origin ? "" : url.host;
    } catch (error) {
      return "";
    }
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
      // Images are never loaded: a remote image's address can carry the conversation out
      // (markdown-image exfiltration). It becomes a link, naming its site, the reader may follow.
      image(token) {
        const label = `image: ${escapeHtml(token.text || "untitled")}`;
        const href = safeHref(token.href);
        if (href === null) {
          return `[${label}]`;
        }
        const host = hostOf(href);
        const site = host ? ` (${escapeHtml(host)})` : "";
        return `<a href="${escapeHtml(href)}" class="image-link">[${label}${site}]</a>`;
      },
    },
  });

  DOMPurify.addHook("afterSanitizeAttributes", function (node) {
    if (node.tagName === "A") {
      // The second layer checks each address the same way the renderer did.
      if (node.hasAttribute("href") && safeHref(node.getAttribute("href")) === null) {
        node.removeAttribute("href");
      }
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
