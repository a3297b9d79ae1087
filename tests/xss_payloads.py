"""Script-injection payloads for every field a person or an import can fill.

Each payload, were it ever to run or become markup, says so: it calls `alert(N)` and the
element it would create carries `data-xss="N"`. Tests plant them (tests/test_xss.py) and look
for a dialog, a console error or CSP violation, a marked element, or the raw string in a page.
"""

from __future__ import annotations

# (number, payload). Numbers are the alert argument and the data-xss marker.
PAYLOADS: list[tuple[int, str]] = [
    (1, "<script data-xss=1>alert(1)</script>"),
    (2, "<img src=x onerror=alert(2) data-xss=2>"),
    (3, "<svg onload=alert(3) data-xss=3>"),
    (4, "<svg data-xss=4><script>alert(4)</script></svg>"),
    (5, "[click me](javascript:alert(5))"),
    (6, '<a href="javascript:alert(6)" data-xss=6>link</a>'),
    (7, '<iframe data-xss=7 srcdoc="<script>parent.alert(7)</script>"></iframe>'),
    (8, "<img src=x onerror=alert(8) data-xss=8//"),
    (9, '"><script data-xss=9>alert(9)</script>'),
    (10, "'-alert(10)-'"),
    (11, "{{7*7}}{% now 'Y' %}${7*7}#{7*7}<b data-xss=11>alert(11)</b>"),
    (12, '![pic" onerror="alert(12)" data-xss="12](x)'),
    (13, "<details open ontoggle=alert(13) data-xss=13>"),
    (14, '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxNCk8L3NjcmlwdD4=" data-xss=14>d</a>'),
    (
        15,
        "&lt;img src=x onerror=alert(15) data-xss=15&gt;&#60;script&#62;alert(15)&#60;/script&#62;",
    ),
    (16, "</textarea><script data-xss=16>alert(16)</script>"),
    (17, "</title><script data-xss=17>alert(17)</script>"),
    (18, "</script><script data-xss=18>alert(18)</script>"),
    (19, "<math><mtext><table><mglyph><style><img src=x onerror=alert(19) data-xss=19>"),
    (20, '<form action="javascript:alert(20)" data-xss=20><button>go</button></form>'),
    (21, "<input autofocus onfocus=alert(21) data-xss=21>"),
    (22, '<object data="javascript:alert(22)" data-xss=22></object>'),
    (23, '<base href="//evil.example/" data-xss=23 title=alert(23)>'),
    (24, '<meta http-equiv="refresh" content="0;url=javascript:alert(24)" data-xss=24>'),
    (25, '<div hx-get="/logout/" hx-trigger="load" hx-on:htmx:load="alert(25)" data-xss=25>'),
    (26, "<javascript:alert(26)>"),
    (27, "[x](data:text/html,<script>alert(27)</script>) ![y](javascript:alert(27))"),
    (28, '<a href="&#106;avascript:alert(28)" data-xss=28>entity</a>'),
    (29, "<style data-xss=29>body{background:url(javascript:alert(29))}</style>"),
    (30, '<div style="position:fixed;inset:0" data-xss=30 title=alert(30)>overlay</div>'),
    (31, '<noscript><p title="</noscript><img src=x onerror=alert(31) data-xss=31>">'),
    (32, "javascript:alert(32)"),
    (33, '<svg><a xlink:href="javascript:alert(33)" data-xss=33><text>t</text></a></svg>'),
    (34, "<img src=x onerror=&#97;lert(34) data-xss=34>"),
    (35, "` onmouseover=alert(35) data-xss=35 x=`"),
]

ALL = "\n".join(p for _, p in PAYLOADS)


def short(n: int) -> str:
    """One payload, for fields too short for all of them."""
    return dict(PAYLOADS)[n]


def pick(field: str, limit: int) -> str:
    """As many payloads as fit in `limit` characters, starting at a place chosen by the
    field's name, so short fields between them still carry different payloads."""
    start = sum(map(ord, field)) % len(PAYLOADS)
    out = ""
    for i in range(len(PAYLOADS)):
        payload = PAYLOADS[(start + i) % len(PAYLOADS)][1]
        candidate = f"{out} {payload}" if out else payload
        if len(candidate) <= limit:
            out = candidate
    return out


# Raw strings whose presence in a page means markup got through unescaped: those with a "<".
# Quotes and backticks are harmless in text, and every attribute we write is double-quoted
# and escaped (an attribute broken out of would show up as a marked element instead).
RAW_MARKUP = [p for _, p in PAYLOADS if "<" in p]
