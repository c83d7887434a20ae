"""Math in HTML -> LaTeX in text, before main-text extraction (which would drop or mangle it).

Every way pages carry formulas is rewritten, in the parsed tree, into plain text with LaTeX delimiters
(``$…$`` inline, ``$$…$$`` display), so that the extractor keeps it like any other text:

* MathJax source scripts: ``<script type="math/tex">`` (``; mode=display``), ``math/asciimath``, ``math/mml``;
  the previews and rendered copies MathJax leaves beside them are dropped.
* ``<math>`` (MathML): the TeX of its ``<annotation encoding="application/x-tex">`` when it has one (Wikipedia,
  KaTeX), else converted to LaTeX with the XSLT stylesheets of xsltml (``mmltex.xsl``, shipped by the
  ``py-asciimath`` package) — a maintained converter, not string replacement.
* KaTeX: the ``.katex`` element becomes its TeX annotation once (not MathML text + TeX + glyphs).
* MathJax 3 ``<mjx-container>``: its assistive MathML, or its TeX source when the page left it as text.
* Images of formulas: Wikipedia's ``mwe-math-fallback-image``, WordPress ``img.latex`` / ``latex.php?latex=``,
  CodeCogs, mimeTeX / mathTeX (``…cgi?<tex>``): the TeX from the alt text or the URL.
* AsciiMath between backquotes, on pages that load MathJax's AsciiMath input, converted with ``py-asciimath``.

``$…$`` and ``\\(…\\)`` already in the text stay as they are; BBCode ``[math]…[/math]``, ``[tex]``, ``[itex]``,
``[latex]`` are turned into delimiters after extraction (``bbcode_math``).
"""

from __future__ import annotations

import html as htmlmod
import re
from functools import lru_cache
from urllib.parse import parse_qs, unquote, urlsplit

MATHML_NS = "http://www.w3.org/1998/Math/MathML"
TEX_ENCODINGS = ("application/x-tex", "tex", "latex", "text/tex", "application/x-latex")
RENDERED = {"MathJax_Preview", "MathJax", "MathJax_Display", "MathJax_SVG", "MathJax_SVG_Display",
            "MathJax_CHTML", "MJX_Assistive_MathML", "MathJax_MathML", "katex-html"}
CLASS_CANDIDATES = "//*[" + " or ".join(f"contains(@class, '{c}')" for c in sorted(RENDERED | {"katex"})) + "]"


@lru_cache(maxsize=1)
def _mathml_xslt():
    import importlib.resources

    from lxml import etree

    xsl = importlib.resources.files("py_asciimath") / "translation" / "mathml2tex" / "mmltex.xsl"
    with importlib.resources.as_file(xsl) as path:
        return etree.XSLT(etree.parse(str(path)))


@lru_cache(maxsize=1)
def _asciimath():
    import logging

    from py_asciimath.translator.translator import ASCIIMath2Tex

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.WARNING))  # it logs every call at INFO
    return ASCIIMath2Tex(log=False, inplace=True)


def mathml_to_tex(math_el) -> str | None:
    """LaTeX of a ``<math>`` element (HTML-parsed, so without its namespace), or None if it cannot convert."""
    from lxml import etree

    try:
        src = etree.tostring(math_el, encoding="unicode", with_tail=False)
        src = re.sub(r"^<math\b", f'<math xmlns="{MATHML_NS}"', re.sub(r'\sxmlns="[^"]*"', "", src, count=1))
        doc = etree.fromstring(src.encode(), etree.XMLParser(recover=True, resolve_entities=False, no_network=True))
        if doc is None:
            return None
        tex = str(_mathml_xslt()(doc)).strip()
    except Exception:  # noqa: BLE001 - malformed MathML: the caller keeps the element's text
        return None
    tex = re.sub(r"^\$+|\$+$|^\\\[|\\\]$", "", tex).strip()
    return tex or None


def asciimath_to_tex(expr: str) -> str | None:
    try:
        tex = _asciimath().translate(expr, displaystyle=False, from_file=False, pprint=False)
    except Exception:  # noqa: BLE001 - not AsciiMath after all: leave the text alone
        return None
    return tex.strip().strip("$").strip() or None


def _classes(el) -> set[str]:
    return set((el.get("class") or "").split())


def _replace(el, text: str) -> None:
    """Replace ``el`` by ``text`` (keeping its tail) in the tree."""
    parent = el.getparent()
    if parent is None:
        return
    tail = el.tail or ""
    prev = el.getprevious()
    if prev is not None:
        prev.tail = (prev.tail or "") + text + tail
    else:
        parent.text = (parent.text or "") + text + tail
    parent.remove(el)


def _wrap(tex: str, display: bool) -> str:
    tex = tex.strip()
    return f"\n$${tex}$$\n" if display else f"${tex}$"


def _annotation_tex(el) -> str | None:
    for ann in el.iter("annotation", "{%s}annotation" % MATHML_NS):
        if (ann.get("encoding") or "").lower() in TEX_ENCODINGS and (ann.text or "").strip():
            return ann.text.strip()
    return None


def _tex_from_image(img) -> str | None:
    src = img.get("src") or img.get("data-src") or ""
    alt = (img.get("alt") or "").strip()
    cls = _classes(img)
    low = src.lower()
    if cls & {"latex", "tex", "mwe-math-fallback-image-inline", "mwe-math-fallback-image-display"} or \
            any(c.startswith("mwe-math-fallback") for c in cls):
        return alt or None
    if "latex.php" in low or "codecogs.com" in low or "mimetex" in low or "mathtex" in low or \
            "/latex.cgi" in low or "chart.apis.google.com/chart?cht=tx" in low:
        query = urlsplit(src).query
        params = parse_qs(query, keep_blank_values=True)
        for key in ("latex", "chl", "tex"):
            if params.get(key):
                return params[key][0].strip() or None
        if alt:  # CodeCogs and friends: the alt text is the TeX as typed
            return re.sub(r"<br\s*/?>", " ", alt).strip()
        tex = unquote(query).replace("&space;", " ")
        tex = re.sub(r"^\\(dpi|bg_\w+|fn_\w+|large|small|huge|inline)\{?[^}\s]*\}?\s*", "", tex)
        return re.sub(r"<br\s*/?>", " ", tex).strip() or None
    return None


def mark_math(tree) -> int:
    """Rewrite every formula of a parsed HTML tree (``lxml.html``) into delimited LaTeX text; return how many."""
    n = 0
    asciimath = False
    for script in list(tree.iter("script")):
        kind = (script.get("type") or "").lower().replace(" ", "")
        src = script.get("src") or ""
        body = script.text or ""
        # MathJax 2 configs with AsciiMath input are named AM_... (AM_CHTML, TeX-MML-AM_CHTML, AM_HTMLorMML)
        if "AM_" in src or "asciimath" in src.lower() or "asciimath" in kind or \
                ("MathJax" in body and "asciimath" in body.lower()):
            asciimath = True
        if not kind.startswith("math/"):
            continue
        display = "mode=display" in kind
        if kind.startswith("math/tex"):
            tex = body.strip()
        elif kind.startswith("math/asciimath"):
            tex = asciimath_to_tex(body.strip())
        elif kind.startswith("math/mml"):
            from lxml import html as lhtml

            try:
                frag = lhtml.fragment_fromstring(body.strip())
                tex = _annotation_tex(frag) or mathml_to_tex(frag)
            except Exception:  # noqa: BLE001 - not MathML after all
                tex = None
        else:
            tex = None
        if tex:
            _replace(script, _wrap(tex, display))
            n += 1
    # rendered copies MathJax left beside its sources, and KaTeX's glyphs (its TeX annotation is used instead);
    # XPath finds the candidates in C (iterating every element from Python costs a third of the pre-pass)
    for el in tree.xpath(CLASS_CANDIDATES):
        cls = _classes(el)
        if cls & {"katex"} and el.getparent() is not None:
            tex = _annotation_tex(el)
            if tex:
                display = any("katex-display" in _classes(a) for a in el.iterancestors())
                _replace(el, _wrap(tex, display))
                n += 1
                continue
        if cls & RENDERED and el.getparent() is not None and el.tag != "script":
            _replace(el, "")
    for el in list(tree.iter("mjx-container")):
        if el.getparent() is None:
            continue
        display = el.get("display") == "true" or el.get("display") == "block"
        math = next(el.iter("math"), None)
        tex = (_annotation_tex(math) or mathml_to_tex(math)) if math is not None else el.text_content().strip()
        if tex:
            _replace(el, _wrap(tex, display))
            n += 1
    for math in list(tree.iter("math")):
        if math.getparent() is None:
            continue
        display = math.get("display") == "block" or math.get("mode") == "display"
        tex = _annotation_tex(math) or mathml_to_tex(math)
        if tex:
            holder = math
            for anc in math.iterancestors():  # Wikipedia wraps MathML + a fallback image in one element
                if "mwe-math-element" in _classes(anc):
                    holder = anc
                    break
            if holder is not math and any("display" in c for img in holder.iter("img") for c in _classes(img)):
                display = True
            _replace(holder, _wrap(tex, display))
            n += 1
    for img in list(tree.iter("img")):
        if img.getparent() is None:
            continue
        tex = _tex_from_image(img)
        if tex:
            display = any("display" in c for c in _classes(img))
            _replace(img, _wrap(htmlmod.unescape(tex), display))
            n += 1
    if asciimath:
        n += _mark_asciimath_text(tree)
    return n


#: AsciiMath between backquotes; ``\``` is a literal backquote (MathJax's escape), never a delimiter.
BACKQUOTED = re.compile(r"(?<!\\)`((?:[^`\\]|\\.){1,500}?)(?<!\\)`", re.S)


def _mark_asciimath_text(tree) -> int:
    """On a page that loads MathJax's AsciiMath input, `…` in text is AsciiMath: convert it to $TeX$."""
    n = 0

    def convert(text: str) -> str:
        nonlocal n

        def one(m):
            nonlocal n
            tex = asciimath_to_tex(m.group(1))
            if tex is None:
                return m.group(0)
            n += 1
            return f"${tex}$"

        return BACKQUOTED.sub(one, text)

    for el in tree.xpath("//*[contains(text(), '`')] | //*[contains(following-sibling::text()[1], '`')]"):
        if isinstance(el.tag, str) and el.tag not in ("script", "style", "code", "pre") and el.text and "`" in el.text:
            el.text = convert(el.text)
        if el.tail and "`" in el.tail:
            el.tail = convert(el.tail)
    return n


#: The reference of ``bbcode_math`` (same output in linear time; the pattern rescans to the end from every
#: unclosed ``[math]``: quadratic); kept for the equivalence test, never run on a page.
BBCODE = re.compile(r"\[(math|tex|latex|itex)\](.+?)\[/\1\]", re.S | re.I)
_BB_TAGS = ("math", "tex", "latex", "itex")


def bbcode_math(text: str) -> str:
    """Forum markup: ``[math]…[/math]``/``[tex]`` (display), ``[itex]``/``[latex]`` (inline) -> delimiters.

    One pass: each opener ends at the first closer of its tag after at least one character; an opener with no
    closer means no later opener of that tag has one (it is not searched again)."""
    if "[" not in text:
        return text
    low = text.lower()
    out, pos, i, dead = [], 0, 0, set()
    while True:
        i = low.find("[", i)
        if i < 0:
            break
        tag = next((t for t in _BB_TAGS if t not in dead and low.startswith(t + "]", i + 1)), None)
        if tag is None:
            i += 1
            continue
        body_start = i + len(tag) + 2
        close = low.find(f"[/{tag}]", body_start + 1)
        if close < 0:
            dead.add(tag)
            i += 1
            continue
        body = text[body_start:close].strip()
        out.append(text[pos:i])
        out.append(f"${body}$" if tag in ("itex", "latex") else f"$${body}$$")
        pos = i = close + len(tag) + 3
    out.append(text[pos:])
    return "".join(out)
