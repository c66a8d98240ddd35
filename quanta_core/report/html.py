"""HTML output of the project: the one jinja2 environment, and the helpers that make a page safe.

Templates live in ``quanta_core/report/templates``. Every ``{{ value }}`` is HTML-escaped (autoescape);
only values our code wraps in :class:`markupsafe.Markup` are inserted as they are, and those are
made here, in three kinds only:

* :func:`svg_markup` — an SVG chart drawn by :mod:`quanta_core.report.charts` from numbers;
* :func:`script_json` — JSON escaped so it cannot end a ``<script>`` block;
* :func:`trusted_html` — a fragment rendered by our own templates (autoescaped itself), or the
  report's own JavaScript file (allowed by its hash in the page's Content-Security-Policy).

Token text (untrusted corpus data) never goes through any of them: it reaches a page escaped by
autoescape or, in the report's JavaScript, through ``textContent`` only.
"""

from __future__ import annotations

import base64
import hashlib
import json

import jinja2
from markupsafe import Markup

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("quanta_core.report", "templates"),
    autoescape=True,  # every {{ value }} is HTML-escaped unless our code marked it Markup
    undefined=jinja2.StrictUndefined,  # a missing template variable is an error, not ""
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, **context) -> str:
    """Render ``quanta_core/report/templates/<template>`` with ``context``."""
    return ENV.get_template(template).render(**context)


def template_source(name: str) -> str:
    """The raw text of a file in ``quanta_core/report/templates`` (e.g. plain JavaScript), not rendered."""
    return ENV.loader.get_source(ENV, name)[0]


def json_for_script(value) -> str:
    """JSON that is safe inside an HTML ``<script>`` element: ``<``, ``>``, ``&`` and the
    line separators U+2028/U+2029 are written as ``\\uXXXX`` escapes, so ``</script>`` or ``<!--``
    in the data cannot end or alter the block; the value parses back unchanged."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def script_json(value) -> Markup:
    """:func:`json_for_script` marked safe for a template: nothing in it can end the block."""
    return Markup(json_for_script(value))  # escaped for <script> above; HTML-escaping would corrupt it


def script_hash(script: str) -> str:
    """The Content-Security-Policy source (``sha256-<base64>``) allowing exactly this inline script."""
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


def svg_markup(svg: str, what: str = "chart") -> Markup:
    """An SVG chart drawn by our own code from numbers, marked safe for a template.

    Refuses anything that is not a plain ``<svg>`` element (a ``ValueError`` naming ``what``), so
    a caller cannot slip other markup or a script in through a chart argument."""
    if not svg.lstrip().startswith("<svg") or "<script" in svg.lower():
        raise ValueError(f"{what} must be a plain <svg> element")
    return Markup(svg)  # our own numbers-only SVG (quanta_core.report.charts); checked above


def trusted_html(fragment: str) -> Markup:
    """An HTML fragment rendered by our own templates (so already escaped inside), or our own
    script file, marked safe."""
    return Markup(fragment)  # produced by our code: dynamics_page / learning_page sections, report.js.j2
