"""Writing the results into ``docs/benchmarks.md`` (tables, machine, date) and its chart.

The page's prose is written by people; the part between the two ``results`` markers is
replaced by every run, so that a run on another machine updates the figures and leaves the
explanation alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent.parent / "docs"
START, END = "<!-- results:start -->", "<!-- results:end -->"
CHART = "benchmarks.png"

COLUMNS = (
    ("mode", "mode"), ("concurrency", "streams"), ("output_tokens_per_s", "tokens/s"),
    ("ratio_to_direct", "vs direct"), ("requests_per_s", "requests/s"), ("ttft_p50_ms", "TTFT p50 ms"),
    ("ttft_p99_ms", "TTFT p99 ms"), ("ttft_added_p50_ms", "added p50 ms"), ("ttft_added_p99_ms", "added p99 ms"),
    ("itl_p50_ms", "ITL p50 ms"), ("itl_p99_ms", "ITL p99 ms"), ("frames_per_s_per_stream", "frames/s/stream"),
    ("bytes_per_token", "bytes/token"), ("web_cpu_ms_per_1k_tokens", "web CPU ms/1k tok"), ("errors", "errors"),
)  # fmt: skip
RELAY_COLUMNS = (
    ("concurrency", "streams"), ("mode", "mode"), ("output_tokens_per_s", "tokens/s"),
    ("ratio_to_direct", "vs direct"), ("frames_per_s_per_stream", "frames/s/stream"),
    ("web_cpu_ms_per_1k_tokens", "web CPU ms/1k tok"), ("web_memory_kib_per_stream", "web KiB/stream"),
    ("ttft_p50_ms", "TTFT p50 ms"), ("bytes_per_token", "bytes/token"), ("errors", "errors"),
)  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The main comparison as a Markdown table."""
    return _table(rows, COLUMNS)


def relay_table(rows: Sequence[dict[str, Any]]) -> str:
    """The relay ceiling as a Markdown table."""
    return _table(rows, RELAY_COLUMNS) if rows else "(relay ceiling not measured)"


def chart(result: dict[str, Any], path: Path) -> None:
    """Draw tokens/s per mode and concurrency, and the web's CPU per 1,000 tokens, into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    modes = list(dict.fromkeys(row["mode"] for row in rows))
    levels = list(dict.fromkeys(row["concurrency"] for row in rows))
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(modes)
    for index, mode in enumerate(modes):
        by_level = {row["concurrency"]: row for row in rows if row["mode"] == mode}
        xs = [position + index * width for position in range(len(levels))]
        left.bar(xs, [by_level[level]["output_tokens_per_s"] for level in levels], width, label=mode)
        right.bar(xs, [by_level[level]["web_cpu_ms_per_1k_tokens"] or 0 for level in levels], width, label=mode)
    for axis, title in ((left, "output tokens/s"), (right, "web process CPU ms per 1,000 tokens")):
        axis.set_xticks([position + width * (len(modes) - 1) / 2 for position in range(len(levels))])
        axis.set_xticklabels([f"{level} streams" for level in levels])
        axis.set_title(title)
        axis.legend()
    figure.suptitle(f"Portal vs direct vLLM — {result['machine']['date']}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def results_section(result: dict[str, Any]) -> str:
    """The generated part of the page: machine, settings, tables, the chart and the extras."""
    machine, settings = result["machine"], result["settings"]
    extras = "\n\n".join(
        f"`bench/{name}.py` ({value['status']}):\n\n```\n{value['output']}\n```"
        if value.get("output")
        else f"`bench/{name}.py`: {value['status']}"
        for name, value in result.get("extra", {}).items()
    )
    return "\n".join([
        START,
        f"Measured {machine['date']} on {machine['cpu']} ({machine['cores']} cores, {machine['memory_gib']} GiB), "
        f"Python {machine['python']}, vLLM {machine['vllm']}, Django {machine['django']}, Daphne {machine['daphne']}, "
        f"Channels {machine['channels']}, httpx {machine['httpx']}. "
        f"{settings['rounds']} interleaved rounds, at least {settings.get('min_answers', 1)} answers per block, "
        f"`max_tokens` {settings['max_tokens']}, temperature 0.",
        "",
        table(result["rows"]),
        "",
        f"![tokens/s and web CPU per mode and concurrency]({CHART})",
        "",
        f"Relay ceiling (stub upstream at {result['relay'][0]['upstream_rate_per_stream'] if result['relay'] else '-'} "
        f"tokens/s per stream, {settings['relay_tokens']} tokens per answer):",
        "",
        relay_table(result["relay"]),
        "",
        "Other benchmarks of this run:",
        "",
        extras or "- none",
        END,
    ])  # fmt: skip


def write(result: dict[str, Any], page: Path) -> None:
    """Replace the results part of ``page`` (create the page if missing) and draw the chart beside it."""
    chart(result, page.parent / CHART)
    section = results_section(result)
    text = page.read_text() if page.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    before, _, rest = text.partition(START)
    _, _, after = rest.partition(END)
    page.write_text(before + section + after)
