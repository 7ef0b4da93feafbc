/* Quota refusals as a sentence with the time they end (see accounts/ledger.py for the codes). */
"use strict";

window.PortalRefusal = (function () {
  /** "3 h 12 min", "12 min", "40 s" for a number of seconds. */
  function duration(seconds) {
    const total = Math.max(1, Math.round(seconds));
    if (total < 60) {
      return `${total} s`;
    }
    const hours = Math.floor(total / 3600);
    const minutes = Math.ceil((total % 3600) / 60);
    if (minutes === 60) {
      return `${hours + 1} h`;
    }
    return hours ? `${hours} h ${minutes} min` : `${minutes} min`;
  }

  /** The wall-clock time of an ISO 8601 moment in the site's time zone (its own offset): "00:00". */
  function siteClock(iso) {
    const match = /T(\d\d:\d\d)/.exec(iso || "");
    return match ? match[1] : "";
  }

  /**
   * The sentence for an error frame: the server's message, and for a budget that renews,
   * when it does ("Your daily budget of 50,000 tokens is used up; it resets at 00:00 (in 3 h 12 min)").
   */
  function sentence(frame, now) {
    const message = (frame.message || "").replace(/\.$/, "");
    if (frame.code === "quota_exceeded" && frame.resets_at) {
      const seconds = (Date.parse(frame.resets_at) - now) / 1000;
      return `${message}; it resets at ${siteClock(frame.resets_at)} (in ${duration(seconds)}).`;
    }
    if (frame.code === "model_not_allowed" && Array.isArray(frame.allowed)) {
      const allowed = frame.allowed.length ? frame.allowed.join(", ") : "none";
      return `${frame.message} You may use: ${allowed}.`;
    }
    return frame.message || "";
  }

  const CODES = ["quota_exceeded", "too_many_answers", "model_not_allowed", "rate_limited"];
  return { sentence: sentence, duration: duration, isRefusal: (frame) => CODES.includes(frame.code) };
})();
