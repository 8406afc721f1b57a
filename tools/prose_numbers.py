"""Every number in a notebook's prose comes from its run, or says why it does not.

    python tools/prose_numbers.py                      # check notebooks/*.ipynb
    python tools/prose_numbers.py notebooks/04_batchnorm_only.ipynb

The rule, checked by ``tests/test_notebook_prose.py`` on the committed notebooks:

1. **Every number in a markdown cell must appear in that notebook's outputs**: the text/plain,
   stream, text/markdown and text/html outputs of its code cells, anywhere in the notebook. A
   prose number matches an output number when rounding the output to the prose's decimals gives
   the prose's number (ties either way): prose "0.9 pp" matches 0.88, 0.9 or 0.879, prose "2 %"
   does not match 1.3. Percentages and fractions are the same number: prose "12 %" matches an
   output 0.12, prose "0.01" matches "1%". Signs are ignored (prose says "fell by 0.5", the
   output prints −0.5).
2. **Unless it is marked as not about our run**, in the cell itself, with an HTML comment that
   Jupyter does not render::

       <!-- not-from-run: 0.3 (paper, Frankle & Carbin §2); 55,000, 5,000 (paper's data split) -->

   Each entry is one or more numbers (", " between them) and, in parentheses, why they are not
   run results: a quoted paper figure, a setting, a definition, arithmetic on settings. Every
   listed number must occur in the cell's checked prose: an exemption that no longer matches
   anything fails too. A number about our run is never exempted: it is rendered instead, by a
   code cell such as ``Markdown(f"... {gap:.1f} pp ...")`` that formats it from the results, so
   that re-running the notebook cannot make the prose wrong.
3. **Not checked at all** (visible in the source, and not a statement about the run): inline
   code and code blocks (settings such as ``lr=1.2e-3``), HTML comments and tags, link targets
   and URLs; section numbers of headings and ordered-list markers; references such as
   "Exercise 2", "section 4.1", "§2", "Figure 3", "Table 1", "claims 2", "lab 07"; arXiv ids
   (1803.03635v5), issue numbers (#905), years (a bare four-digit number from 1950 to 2039, so
   write run numbers of that size with a thousands separator: 2,000); names with a number in
   them (LeNet-300-100, CIFAR-10, fp16, v5, L2) and patterns such as 2:4.

What the rule cannot do: it checks that a number appears *somewhere* in the outputs, not that the
sentence attaches it to the right output, and small integers appear almost everywhere. It catches
a number that no output has (a typo, a number from an older run, a paper figure passed off as
ours) and forces every other number to declare itself; keeping run numbers right is the job of the
rendered cells.
"""

from __future__ import annotations

import html
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

# A number as prose writes it: 7, 0.879, 2,320, 1,000.5. Not part of a word or of a dotted name
# (fc1, v5, F.4, 1803.03635v5), and not the tail of a longer number.
_PROSE_NUMBER = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?![\d])")
# Outputs are read more liberally: "n=5", "216.0s", "5.493000e-06", "fc1.weight" (its 1 may
# match: that only makes matching easier).
_OUTPUT_NUMBER = re.compile(
    r"(?<![\d.])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\d])"
)

_EXEMPT_COMMENT = re.compile(r"<!--\s*not-from-run:(?P<body>.*?)-->", re.DOTALL)
_EXEMPT_ENTRY = re.compile(r"\s*(?P<numbers>[^();]+?)\s*\((?P<why>[^()]*)\)\s*")

_VENUE_OR_WORD = (
    r"exercises?|sections?|§|appendix|figures?|fig\.|tables?|claims?|labs?|notebooks?|"
    r"chapters?|equation|eq\."
)
# Spans removed before numbers are read, in this order. Each is visible in the source.
_NOT_CHECKED = [
    ("code block", re.compile(r"```.*?```", re.DOTALL)),
    ("inline code", re.compile(r"`[^`]+`")),
    ("HTML comment", re.compile(r"<!--.*?-->", re.DOTALL)),
    ("link target", re.compile(r"\]\([^)\s]*\)")),
    ("URL", re.compile(r"\b(?:https?://|www\.)\S+|\b[\w.-]+\.(?:ai|com|org|io|net)(?:/\S*)?")),
    ("HTML tag", re.compile(r"</?[a-zA-Z][^>]*>")),
    ("heading number", re.compile(r"^(#+[ \t]*)\d+(?:\.\d+)*\.?", re.MULTILINE)),
    ("list marker", re.compile(r"^[ \t]*\d+[.)][ \t]", re.MULTILINE)),
    (
        "reference",
        re.compile(
            rf"(?i)(?:\b(?:{_VENUE_OR_WORD})|§)\s*\(?\d+(?:\.\d+)*[a-z]?\)?"
            r"(?:(?:\s+(?:and|or|to)\s+|\s*–\s*)\d+(?:\.\d+)*\b)*"
        ),
    ),
    ("arXiv id", re.compile(r"\b\d{4}\.\d{4,5}(?:v\d+)?\b")),
    ("issue number", re.compile(r"#\d+")),
    ("year", re.compile(r"(?<![\w.,])(?:19[5-9]\d|20[0-3]\d)(?![\w.,]?\d)")),
    ("name", re.compile(r"\b[A-Za-z][A-Za-z0-9]*(?:-\d+)+\b")),
    ("pattern", re.compile(r"\b\d+:\d+\b")),
]


@dataclass(frozen=True)
class ProseNumber:
    """A number read from prose: its text as written, its value and how many decimals it has."""

    text: str
    value: float
    decimals: int
    context: str

    @property
    def key(self) -> str:
        """The number without thousands separators: how exemptions name it."""
        return self.text.replace(",", "")


@dataclass(frozen=True)
class Problem:
    """One failure: which cell, which number, what is wrong and how to fix it."""

    notebook: str
    cell: int
    number: str
    kind: str  # "not in outputs", "stale exemption", "bad exemption"
    detail: str

    def __str__(self) -> str:
        return f"{self.notebook} cell {self.cell}: {self.kind}: {self.number!r}: {self.detail}"


def _value(text: str) -> tuple[float, int]:
    plain = text.replace(",", "")
    mantissa = re.split(r"[eE]", plain)[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return float(plain), decimals


def _blank(text: str, pattern: re.Pattern) -> str:
    """Replace each match by spaces (kept, the first group: a heading's #), so offsets survive."""

    def spaces(m: re.Match) -> str:
        kept = m.group(1) if m.re.groups and m.group(1) else ""
        return kept + re.sub(r"[^\n]", " ", m.group(0)[len(kept) :])

    return pattern.sub(spaces, text)


def checked_text(source: str) -> str:
    """The markdown with every span that is not checked blanked out (same length, same lines)."""
    text = source
    for _, pattern in _NOT_CHECKED:
        text = _blank(text, pattern)
    return text


def prose_numbers(source: str) -> list[ProseNumber]:
    """Every checked number in one markdown cell, in order."""
    text = checked_text(source)
    found = []
    for m in _PROSE_NUMBER.finditer(text):
        value, decimals = _value(m.group(0))
        lo, hi = max(0, m.start() - 40), min(len(source), m.end() + 40)
        context = " ".join(source[lo:hi].split())
        found.append(ProseNumber(m.group(0), value, decimals, context))
    return found


def exemptions(source: str) -> tuple[dict[str, str], list[str]]:
    """The numbers a cell's ``not-from-run`` comments exempt (key → reason), and any entries
    that could not be read."""
    listed: dict[str, str] = {}
    errors: list[str] = []
    for comment in _EXEMPT_COMMENT.finditer(source):
        for entry in comment.group("body").split(";"):
            if not entry.strip():
                continue
            m = _EXEMPT_ENTRY.fullmatch(entry)
            if not m or not m.group("why").strip():
                errors.append(
                    f"cannot read {entry.strip()!r}: write NUMBER (why), e.g. "
                    "'0.3 (paper, Frankle & Carbin §2)'"
                )
                continue
            for number in re.split(r",\s+", m.group("numbers").strip()):
                if not re.fullmatch(r"\d[\d,]*(?:\.\d+)?", number):
                    errors.append(f"{number!r} in {entry.strip()!r} is not a number")
                    continue
                listed[number.replace(",", "")] = m.group("why").strip()
    return listed, errors


def _output_texts(nb) -> list[str]:
    texts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                texts.append(out.get("text", ""))
            elif out.get("output_type") in ("execute_result", "display_data"):
                data = out.get("data", {})
                for mime in ("text/plain", "text/markdown"):
                    if mime in data:
                        texts.append(_joined(data[mime]))
                if "text/html" in data:
                    texts.append(html.unescape(re.sub(r"<[^>]+>", " ", _joined(data["text/html"]))))
    return texts


def _joined(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def output_numbers(nb) -> set[float]:
    """Every number printed by the notebook's code cells (absolute values)."""
    numbers = set()
    for text in _output_texts(nb):
        for m in _OUTPUT_NUMBER.finditer(text):
            numbers.add(abs(_value(m.group(0))[0]))
    return numbers


def matches(number: ProseNumber, outputs: set[float]) -> bool:
    """True if some output, as it is or as a percentage or fraction of it, rounds to the number
    at the number's decimals."""
    half = 0.5 * 10.0 ** (-number.decimals) * (1 + 1e-9)
    return any(
        abs(number.value - scale * o) <= half for o in outputs for scale in (1.0, 100.0, 0.01)
    )


_STALE = (
    "listed in <!-- not-from-run: ... --> but not in this cell's prose (numbers in inline code, "
    "headings and references are not checked anyway): remove it from the comment"
)
_MISSING = (
    "No output of this notebook rounds to it. If it is about our run, render it from the results "
    'in a code cell (IPython.display.Markdown(f"...")); if it is a paper\'s figure or a setting, '
    "add it to the cell's <!-- not-from-run: N (why) --> comment."
)


def check(nb, name: str = "notebook") -> list[Problem]:
    """Every problem in one notebook (an ``nbformat`` node): see the module docstring."""
    outputs = output_numbers(nb)
    problems = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        listed, errors = exemptions(cell.source)
        problems += [Problem(name, index, "", "bad exemption", e) for e in errors]
        found = prose_numbers(cell.source)
        stale = set(listed) - {n.key for n in found}
        problems += [Problem(name, index, key, "stale exemption", _STALE) for key in sorted(stale)]
        for number in found:
            if number.key not in listed and not matches(number, outputs):
                detail = f"...{number.context}... {_MISSING}"
                problems.append(Problem(name, index, number.text, "not in outputs", detail))
    return problems


def check_file(path: str | Path) -> list[Problem]:
    path = Path(path)
    return check(nbformat.read(path, as_version=4), path.name)


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[1]
    paths = [Path(p) for p in argv] or sorted((root / "notebooks").glob("[0-9]*.ipynb"))
    problems = [p for path in paths for p in check_file(path)]
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s) in {len(paths)} notebook(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
